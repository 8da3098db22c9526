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

static int one_dropped(struct fx *f, void *arg)
{
    struct http_server_stats s;
    http_server_stats(f->srv, &s);
    (void)arg;
    return s.slow_dropped >= 1;
}

static int all_handled(struct fx *f, void *arg)
{
    return f->handled >= *(int *)arg;
}

TEST(over_the_global_bound_the_connection_with_most_queued_bytes_is_dropped)
{
    struct st_outbudget budget;
    st_outbudget_init(&budget, 8u << 20);
    struct http_server_config cfg;
    http_server_config_default(&cfg);
    cfg.conn_out_bytes_max = 0; /* only the global bound here */
    cfg.out_budget = &budget;
    struct fx *f = fx_start(&cfg, FX_ECHO);
    /* small: one /big queued (about 3 MiB, within the bound) */
    struct client small, hog, normal;
    cl_connect_slow(&small, f->port);
    send_gets(&small, "/big", 1);
    int want = 1;
    fx_wait(f, all_handled, &want);
    /* hog: pipelines /big until the total passes 8 MiB: it holds the most */
    cl_connect_slow(&hog, f->port);
    send_gets(&hog, "/big", 8);
    fx_wait(f, one_dropped, NULL);
    struct budget_view v = {.b = &budget};
    fx_run(f, read_budget, &v);
    ASSERT_EQ(v.dropped, 1);
    ASSERT_LE(v.used, 8u << 20);
    ASSERT_TRUE(cl_ended(&hog)); /* closed by the server */
    cl_close(&hog);
    /* A normal client is served meanwhile, small still gets its response. */
    ASSERT_EQ(cl_connect(&normal, f->port), 0);
    ASSERT_EQ(cl_sends(&normal, "GET /big HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\n\r\n"), 0);
    struct resp r;
    ASSERT_EQ(cl_read(&normal, &r), 0);
    ASSERT_EQ(r.body_len, BIG_RESP_BYTES);
    free(r.body);
    ASSERT_EQ(cl_read(&normal, &r), 0);
    ASSERT_EQ(r.status, 200);
    free(r.body);
    ASSERT_EQ(cl_read(&small, &r), 0);
    ASSERT_EQ(r.body_len, BIG_RESP_BYTES);
    free(r.body);
    cl_close(&normal);
    cl_close(&small);
    struct http_server_stats s = fx_stop(f);
    ASSERT_EQ(s.slow_dropped, 1);
    ASSERT_EQ(s.out_bytes, 0);
    ASSERT_EQ(budget.used_bytes, 0);
    ASSERT_EQ(budget.n_users, 0); /* unregistered on close */
    ASSERT_GE(budget.peak_bytes, (8u << 20) + 1);
}

TEST_MAIN()
