/* Bounded output for slow readers (server.h, "Output bounds"): a connection
 * over conn_out_bytes_max is no longer read; over the shared budget the
 * connection with the most queued bytes is dropped, the others go on. */
#include "test.h"

#include "httptest.h"
#include "util/outbudget.h"

#define BIG_RESP_BYTES (3u * 1024u * 1024u + 17u) /* fx_answer's /big */

/* A client that does not read: a small receive window keeps the responses
 * in the server. */
static void cl_connect_slow(struct client *c, uint16_t port)
{
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 4096;
    setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    struct timeval tv = {.tv_sec = 10};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(c->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    c->cap = 8u * 1024u * 1024u;
    c->buf = malloc(c->cap);
}

/* 1 if the connection ends (EOF or reset) after whatever was in flight; 0
 * on a receive timeout. */
static int cl_ended(struct client *c)
{
    for (;;) {
        c->len = 0; /* discard */
        ssize_t n = cl_fill(c);
        if (n == 0) return 1;
        if (n < 0) return errno == ECONNRESET;
    }
}

static void send_gets(struct client *c, const char *path, int n)
{
    char one[64];
    snprintf(one, sizeof(one), "GET %s HTTP/1.1\r\n\r\n", path);
    for (int i = 0; i < n; i++)
        ASSERT_EQ(cl_sends(c, one), 0);
}

static int out_paused(struct fx *f, void *arg)
{
    (void)arg;
    struct http_server_stats s;
    http_server_stats(f->srv, &s);
    return s.out_paused >= 1;
}

static void get_handled(struct fx *f, void *arg)
{
    *(int *)arg = f->handled;
}

TEST(connection_over_its_output_bound_stops_being_read_until_it_drains)
{
    struct http_server_config cfg;
    http_server_config_default(&cfg);
    cfg.conn_out_bytes_max = 1u << 20; /* below one /big response */
    struct fx *f = fx_start(&cfg, FX_ECHO);
    struct client c;
    cl_connect_slow(&c, f->port);
    send_gets(&c, "/big", 10); /* all ten fit in the ring (pipeline_max 16) */
    fx_wait(f, out_paused, NULL);
    int handled = 0;
    fx_run(f, get_handled, &handled);
    /* The first response is over the bound: nothing after it was parsed. */
    ASSERT_EQ(handled, 1);
    struct http_server_stats s = fx_stats(f);
    ASSERT_GE(s.out_bytes, 1);
    ASSERT_LE(s.out_bytes, BIG_RESP_BYTES + 200);
    /* Reading drains it; every response arrives, in order. */
    for (int i = 0; i < 10; i++) {
        struct resp r;
        ASSERT_EQ(cl_read(&c, &r), 0);
        ASSERT_EQ(r.status, 200);
        ASSERT_EQ(r.body_len, BIG_RESP_BYTES);
        free(r.body);
    }
    cl_close(&c);
    s = fx_stop(f);
    ASSERT_EQ(s.requests, 10);
    ASSERT_EQ(s.out_bytes, 0);
    ASSERT_EQ(s.slow_dropped, 0);
}

struct budget_view {
    struct st_outbudget *b;
    uint64_t used, dropped;
};

static void read_budget(struct fx *f, void *arg)
{
    (void)f;
    struct budget_view *v = arg;
    v->used = v->b->used_bytes;
    v->dropped = v->b->dropped;
}

static int dropped_at_least(struct fx *f, void *arg)
{
    struct http_server_stats s;
    http_server_stats(f->srv, &s);
    return s.slow_dropped >= *(uint64_t *)arg;
}

static int all_handled(struct fx *f, void *arg)
{
    return f->handled >= *(int *)arg;
}

/* Answers every held request for path (in arrival order) and forgets it. */
static void answer_path(struct fx *f, void *arg)
{
    const char *path = arg;
    int k = 0;
    for (int i = 0; i < f->n_held; i++) {
        if (strcmp(f->held[i]->path, path) == 0)
            fx_answer(f, f->held[i]);
        else
            f->held[k++] = f->held[i];
    }
    f->n_held = k;
}

TEST(over_the_global_bound_the_reader_stalled_longest_is_dropped_not_the_biggest)
{
    struct st_outbudget budget;
    st_outbudget_init(&budget, 8u << 20);
    struct http_server_config cfg;
    http_server_config_default(&cfg);
    cfg.conn_out_bytes_max = 0; /* only the global bound here */
    cfg.out_budget = &budget;
    struct fx *f = fx_start(&cfg, FX_HOLD);
    /* stalled: one /big (3 MiB) queued behind a request still with the
     * handler, so nothing of it can go out */
    struct client stalled, reader, hog;
    cl_connect_slow(&stalled, f->port);
    ASSERT_EQ(cl_sends(&stalled, "GET /first HTTP/1.1\r\n\r\nGET /big HTTP/1.1\r\n\r\n"), 0);
    int want = 2;
    fx_wait(f, all_handled, &want);
    fx_run(f, answer_path, "/big");
    /* reader: asks for two /big (6 MiB, more than stalled holds) and reads
     * them; answering both takes the total to 9 MiB */
    ASSERT_EQ(cl_connect(&reader, f->port), 0);
    send_gets(&reader, "/big", 2);
    want = 4;
    fx_wait(f, all_handled, &want);
    fx_run(f, answer_path, "/big");
    struct budget_view v = {.b = &budget};
    fx_run(f, read_budget, &v);
    ASSERT_EQ(v.dropped, 1);
    ASSERT_LE(v.used, 8u << 20);     /* the reader's, minus what already went out */
    ASSERT_TRUE(cl_ended(&stalled)); /* closed by the server */
    cl_close(&stalled);
    for (int i = 0; i < 2; i++) {
        struct resp r;
        ASSERT_EQ(cl_read(&reader, &r), 0);
        ASSERT_EQ(r.status, 200);
        ASSERT_EQ(r.body_len, BIG_RESP_BYTES);
        free(r.body);
    }
    cl_close(&reader);
    /* hog: pipelines /big and never reads; it alone takes the total over */
    fx_set_mode(f, FX_ECHO, 0);
    cl_connect_slow(&hog, f->port);
    send_gets(&hog, "/big", 8);
    uint64_t two = 2;
    fx_wait(f, dropped_at_least, &two);
    ASSERT_TRUE(cl_ended(&hog));
    cl_close(&hog);
    struct http_server_stats s = fx_stop(f);
    ASSERT_EQ(s.slow_dropped, 2);
    ASSERT_EQ(s.out_bytes, 0);
    ASSERT_EQ(budget.used_bytes, 0);
    ASSERT_EQ(budget.dropped, 2);
    ASSERT_EQ(budget.n_users, 0); /* unregistered on close */
    ASSERT_GE(budget.peak_bytes, (8u << 20) + 1);
}

static int stalled_closed(struct fx *f, void *arg)
{
    struct http_server_stats s;
    http_server_stats(f->srv, &s);
    (void)arg;
    return s.stalled_closed >= 1;
}

TEST(connection_that_takes_none_of_its_responses_for_the_idle_timeout_is_closed)
{
    struct http_server_config cfg;
    http_server_config_default(&cfg);
    /* The reader below must never look idle while it reads 32 MiB: under a
     * sanitizer (ST_SANITIZED=1; ThreadSanitizer runs 5-15x slower) a pause
     * between its reads can exceed 300 ms. */
    const char *san = getenv("ST_SANITIZED");
    cfg.idle_timeout_ms = san && strcmp(san, "1") == 0 ? 3000 : 300;
    struct fx *f = fx_start(&cfg, FX_ECHO);
    struct client stalled, reader;
    cl_connect_slow(&stalled, f->port);
    send_gets(&stalled, "/big", 2);
    /* A reader of a large response meanwhile is not closed: it takes bytes. */
    ASSERT_EQ(cl_connect(&reader, f->port), 0);
    ASSERT_EQ(cl_sends(&reader, "GET /huge HTTP/1.1\r\n\r\n"), 0);
    struct resp r;
    reader.cap = 40u * 1024u * 1024u;
    reader.buf = realloc(reader.buf, reader.cap);
    ASSERT_EQ(cl_read(&reader, &r), 0);
    ASSERT_EQ(r.body_len, 32u * 1024u * 1024u);
    free(r.body);
    cl_close(&reader); /* (idle now: the idle timeout may close it too) */
    fx_wait(f, stalled_closed, NULL);
    ASSERT_TRUE(cl_ended(&stalled));
    cl_close(&stalled);
    struct http_server_stats s = fx_stop(f);
    ASSERT_EQ(s.stalled_closed, 1); /* the stalled one only */
    ASSERT_EQ(s.out_bytes, 0);
}

TEST_MAIN()
