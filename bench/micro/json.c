/* JSON on the request path: util/json.h against jansson and yajl.
 *
 *   build/bench/micro/json_bench [iterations]
 *
 * Two operations, each the way the API does it:
 *  - write: the answer to a conditional PUT that failed (412:
 *    {"error":..,"code":..,"version":N}) and the redirect answer of a
 *    follower ({"error":..,"code":"not_leader","leader":N,"leader_http":..}),
 *    into a buffer reused across responses;
 *  - read: a join request body {"id":N,"raft":"h:p","http":"h:p"}: validate,
 *    then fetch the three members.
 * Prints ns per operation and heap allocations per operation (counted
 * through each library's allocator hooks; for util/json.h, growths of the
 * reused buffer). Figures are from one machine: compare them side by side. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/json.h"

#ifdef HAVE_JANSSON
#include <jansson.h>
#endif
#ifdef HAVE_YAJL
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>
#endif

static volatile uint64_t sink;

#if defined(HAVE_JANSSON) || defined(HAVE_YAJL)
/* Heap allocations made through the other libraries' allocator hooks. */
static uint64_t allocs;

static void *count_malloc(size_t n)
{
    allocs++;
    return malloc(n);
}
#endif

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static const char join_body[] = "{\"id\":4,\"raft\":\"10.0.0.4:9004\",\"http\":\"10.0.0.4:8004\"}";

static void report(const char *lib, const char *op, uint64_t ns, uint64_t n, uint64_t a)
{
    printf("%-10s %-6s %8.1f ns/op %6.2f allocs/op\n", lib, op, (double)ns / (double)n,
           (double)a / (double)n);
}

/* ---- util/json.h ---- */

static void ours_write(struct st_membuf *b, uint64_t i)
{
    struct st_json w;
    st_membuf_reset(b);
    st_json_init(&w, b);
    st_json_object_begin(&w);
    st_json_key(&w, "error");
    if (i & 1) {
        st_json_cstr(&w, "precondition failed");
        st_json_key(&w, "code");
        st_json_cstr(&w, "precondition_failed");
        st_json_key(&w, "version");
        st_json_uint(&w, 1000000 + i);
    } else {
        st_json_cstr(&w, "not the leader");
        st_json_key(&w, "code");
        st_json_cstr(&w, "not_leader");
        st_json_key(&w, "leader");
        st_json_uint(&w, 3);
        st_json_key(&w, "leader_http");
        st_json_cstr(&w, "10.0.0.3:8003");
    }
    st_json_object_end(&w);
    sink += b->len + (uint64_t)st_json_finish(&w);
}

static void ours_read(void)
{
    struct st_jsonr_span doc = {join_body, sizeof(join_body) - 1}, v;
    uint64_t id = 0;
    char raft[64], http[64];
    if (st_jsonr_validate(join_body, sizeof(join_body) - 1) != 0) abort();
    if (!st_jsonr_get(doc, "id", &v) || st_jsonr_uint(v, &id) != 0) abort();
    if (!st_jsonr_get(doc, "raft", &v) || st_jsonr_string(v, raft, sizeof raft) != 0) abort();
    if (!st_jsonr_get(doc, "http", &v) || st_jsonr_string(v, http, sizeof http) != 0) abort();
    sink += id + (uint64_t)raft[0] + (uint64_t)http[0];
}

static void bench_ours(uint64_t n)
{
    struct st_membuf b;
    st_membuf_init(&b);
    ours_write(&b, 0); /* warm: the buffer reaches its working size */
    uint64_t grows = 0, cap = b.cap;
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        ours_write(&b, i);
        if (b.cap != cap) grows++, cap = b.cap;
    }
    report("stcache", "write", now_ns() - t0, n, grows);
    t0 = now_ns();
    for (uint64_t i = 0; i < n; i++)
        ours_read();
    report("stcache", "read", now_ns() - t0, n, 0);
    st_membuf_free(&b);
}

#ifdef HAVE_JANSSON
static void bench_jansson(uint64_t n)
{
    json_set_alloc_funcs(count_malloc, free);
    char out[256];
    allocs = 0;
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        json_t *o = json_object();
        if (i & 1) {
            json_object_set_new(o, "error", json_string("precondition failed"));
            json_object_set_new(o, "code", json_string("precondition_failed"));
            json_object_set_new(o, "version", json_integer((json_int_t)1000000 + (json_int_t)i));
        } else {
            json_object_set_new(o, "error", json_string("not the leader"));
            json_object_set_new(o, "code", json_string("not_leader"));
            json_object_set_new(o, "leader", json_integer(3));
            json_object_set_new(o, "leader_http", json_string("10.0.0.3:8003"));
        }
        sink += json_dumpb(o, out, sizeof out, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(o);
    }
    report("jansson", "write", now_ns() - t0, n, allocs);
    allocs = 0;
    t0 = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        json_error_t err;
        json_t *doc = json_loadb(join_body, sizeof(join_body) - 1, 0, &err);
        if (!doc) abort();
        sink += (uint64_t)json_integer_value(json_object_get(doc, "id"));
        sink += (uint64_t)json_string_value(json_object_get(doc, "raft"))[0];
        sink += (uint64_t)json_string_value(json_object_get(doc, "http"))[0];
        json_decref(doc);
    }
    report("jansson", "read", now_ns() - t0, n, allocs);
}
#endif

#ifdef HAVE_YAJL
static void *yajl_count_malloc(void *ctx, size_t n)
{
    (void)ctx;
    return count_malloc(n);
}
static void *yajl_count_realloc(void *ctx, void *p, size_t n)
{
    (void)ctx;
    allocs++;
    return realloc(p, n);
}
static void yajl_count_free(void *ctx, void *p)
{
    (void)ctx;
    free(p);
}

static void yajl_str(yajl_gen g, const char *s)
{
    yajl_gen_string(g, (const unsigned char *)s, strlen(s));
}

static void bench_yajl(uint64_t n)
{
    yajl_alloc_funcs af = {yajl_count_malloc, yajl_count_realloc, yajl_count_free, NULL};
    yajl_gen g = yajl_gen_alloc(&af); /* one generator, reset per response */
    allocs = 0;
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        yajl_gen_clear(g);
        yajl_gen_reset(g, NULL);
        yajl_gen_map_open(g);
        yajl_str(g, "error");
        if (i & 1) {
            yajl_str(g, "precondition failed");
            yajl_str(g, "code");
            yajl_str(g, "precondition_failed");
            yajl_str(g, "version");
            yajl_gen_integer(g, 1000000LL + (long long)i);
        } else {
            yajl_str(g, "not the leader");
            yajl_str(g, "code");
            yajl_str(g, "not_leader");
            yajl_str(g, "leader");
            yajl_gen_integer(g, 3);
            yajl_str(g, "leader_http");
            yajl_str(g, "10.0.0.3:8003");
        }
        yajl_gen_map_close(g);
        const unsigned char *buf;
        size_t len;
        yajl_gen_get_buf(g, &buf, &len);
        sink += len;
    }
    report("yajl", "write", now_ns() - t0, n, allocs);
    yajl_gen_free(g);
    /* yajl_tree_parse takes no allocator: count nothing, time only. */
    static const char *id_path[] = {"id", NULL}, *raft_path[] = {"raft", NULL},
                      *http_path[] = {"http", NULL};
    t0 = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        char err[64];
        yajl_val doc = yajl_tree_parse(join_body, err, sizeof err);
        if (!doc) abort();
        sink += (uint64_t)YAJL_GET_INTEGER(yajl_tree_get(doc, id_path, yajl_t_number));
        const char *raft = YAJL_GET_STRING(yajl_tree_get(doc, raft_path, yajl_t_string));
        const char *http = YAJL_GET_STRING(yajl_tree_get(doc, http_path, yajl_t_string));
        if (!raft || !http) abort();
        sink += (uint64_t)raft[0] + (uint64_t)http[0];
        yajl_tree_free(doc);
    }
    report("yajl", "read", now_ns() - t0, n, 0);
    printf("%-10s %-6s (allocations of yajl_tree_parse not countable: no allocator hook)\n", "yajl",
           "read");
}
#endif

int main(int argc, char **argv)
{
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 2000000;
    printf("%" PRIu64 " operations each\n", n);
    bench_ours(n);
#ifdef HAVE_JANSSON
    bench_jansson(n);
#endif
#ifdef HAVE_YAJL
    bench_yajl(n);
#endif
    return sink == 42 ? 1 : 0;
}
