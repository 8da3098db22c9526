/* Randomly mutated requests (seeded, reproducible) against a live server:
 * every answer is a well-formed response, a 4xx is the connection's last,
 * nothing crashes or leaks (ASan), and the server keeps serving. */
#include "test.h"

#include "httptest.h"
#include "util/assert.h"
#include "util/rng.h"

static const char *const templates[] = {
    "GET /keys/abc?x=1 HTTP/1.1\r\nHost: h\r\nIf-None-Match: \"3\"\r\n\r\n",
    "PUT /keys/k%20y HTTP/1.1\r\nContent-Length: 5\r\nIf-Match: \"9\"\r\n\r\nhello",
    "DELETE /keys/z HTTP/1.1\r\nConnection: close\r\n\r\n",
    "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "GET /a HTTP/1.0\r\n\r\n",
    "GET /h HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n", /* (no HEAD: the client cannot frame it) */
};

static size_t mutate(struct st_rng *rng, char *buf, size_t len, size_t cap)
{
    int n = 1 + (int)st_rng_below(rng, 4);
    for (int i = 0; i < n && len > 0; i++) {
        size_t at = (size_t)st_rng_below(rng, len);
        switch (st_rng_below(rng, 6)) {
        case 0: /* flip a bit */
            buf[at] = (char)((unsigned char)buf[at] ^ (1u << st_rng_below(rng, 8)));
            break;
        case 1: /* random byte */
            buf[at] = (char)st_rng_below(rng, 256);
            break;
        case 2: /* delete */
            memmove(buf + at, buf + at + 1, len - at - 1);
            len--;
            break;
        case 3: /* insert */
            if (len < cap) {
                memmove(buf + at + 1, buf + at, len - at);
                buf[at] = "\r\n:%0 a\x00\xff"[st_rng_below(rng, 9)];
                len++;
            }
            break;
        case 4: /* truncate */
            len = at;
            break;
        case 5: /* duplicate a tail */
            if (len + (len - at) <= cap) {
                memcpy(buf + len, buf + at, len - at);
                len += len - at;
            }
            break;
        }
    }
    return len;
}

TEST(mutated_requests_get_well_formed_answers_and_never_hurt_the_server)
{
    struct http_server_config cfg;
    http_server_config_default(&cfg);
    cfg.idle_timeout_ms = 200; /* a request left incomplete ends by timeout */
    cfg.head_bytes_max = 512;
    cfg.body_bytes_max = 4096;
    struct fx *f = fx_start(&cfg, FX_DEFER);
    struct st_rng rng;
    st_rng_init(&rng, 20261123);
    int statuses[600] = {0};
    for (int iter = 0; iter < 400; iter++) {
        char buf[2048];
        const char *t = templates[st_rng_below(&rng, ST_ARRAY_LEN(templates))];
        size_t len = strlen(t);
        memcpy(buf, t, len);
        len = mutate(&rng, buf, len, sizeof(buf));
        struct client c;
        ASSERT_EQ(cl_connect(&c, f->port), 0);
        if (len > 0) (void)cl_send(&c, buf, len); /* the server may already have closed */
        shutdown(c.fd, SHUT_WR);
        int answered = 0, last_was_error = 0;
        struct resp r;
        while (cl_read(&c, &r) == 0) {
            ASSERT_FALSE(last_was_error); /* nothing follows a 4xx */
            ASSERT_TRUE(r.status == 200 || r.status == 100 || (r.status >= 400 && r.status < 500));
            ASSERT_TRUE(strstr(r.headers, "\r\n\r\n") != NULL);
            if (r.status >= 400) {
                last_was_error = 1;
                ASSERT_TRUE(r.conn_close);
                ASSERT_EQ(strncmp(r.body, "{\"error\":\"", 10), 0);
            }
            if (r.status < 600) statuses[r.status]++;
            free(r.body);
            answered++;
        }
        if (c.len != 0)
            fprintf(stderr, "iter %d sent [%.*s] left [%.*s]\n", iter, (int)len, buf, (int)c.len,
                    c.buf);
        ASSERT_EQ(c.len, 0); /* no partial garbage after the last response */
        cl_close(&c);
        (void)answered;
    }
    /* Still healthy. */
    struct client c;
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    ASSERT_EQ(cl_sends(&c, "GET /final HTTP/1.1\r\n\r\n"), 0);
    struct resp r;
    ASSERT_EQ(cl_read(&c, &r), 0);
    ASSERT_EQ(r.status, 200);
    free(r.body);
    cl_close(&c);
    struct http_server_stats s = fx_stop(f);
    ASSERT_GE(s.requests_bad, 20); /* the mutations really produced bad requests */
    ASSERT_GE(statuses[200], 50);  /* and many survived as valid ones */
    ASSERT_EQ(s.connections, 0);
}

TEST_MAIN()
