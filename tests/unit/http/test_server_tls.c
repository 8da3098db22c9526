/* HTTP server with TLS (cfg.tls): requests and responses through the
 * memory-BIO glue (server_tls.c), pipelined responses encrypted as one batch,
 * a response larger than a socket write, the verified client certificate's
 * name as req->tls_user, plain HTTP answered with a 400 that says https://,
 * and a client of another CA refused. Certificates come from
 * scripts/gen-certs.sh at test time; the client is OpenSSL on a blocking
 * socket. */
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "test.h"

#include "httptest.h"
#include "tls/tls.h"
#include "tls_certs.h"

__attribute__((constructor(200))) static void setup(void)
{
    st_test_certs_setup("st-http-tls-test");
    st_test_certs_gen("", "ca");
    st_test_certs_gen("", "node 1");
    st_test_certs_gen("", "client alice");
    st_test_certs_gen("other", "ca");
    st_test_certs_gen("other", "client mallory");
}

static ssize_t tls_send(void *tls, const void *data, size_t len)
{
    size_t n = 0;
    return SSL_write_ex(tls, data, len, &n) == 1 ? (ssize_t)n : -1;
}

static ssize_t tls_recv(void *tls, void *buf, size_t cap)
{
    size_t n = 0;
    if (SSL_read_ex(tls, buf, cap, &n) == 1) return (ssize_t)n;
    return SSL_get_error(tls, 0) == SSL_ERROR_ZERO_RETURN ? 0 : -1;
}

/* A server with TLS whose client certificates are verified when given
 * (verify: OPTIONAL or REQUIRE). */
static struct fx *tls_server(enum st_tls_verify verify, struct st_tls_ctx **ctx)
{
    struct st_tls_files files = {st_test_certs_path("node-1.crt"), st_test_certs_path("node-1.key"),
                                 st_test_certs_path("ca.crt")};
    char reason[ST_TLS_REASON_MAX];
    if (st_tls_ctx_create(ST_TLS_SERVER, verify, &files, ctx, reason) != 0) {
        fprintf(stderr, "%s\n", reason);
        return NULL;
    }
    struct http_server_config cfg;
    http_server_config_default(&cfg);
    cfg.tls = *ctx;
    return fx_start(&cfg, FX_ECHO);
}

/* Connects c over TLS (the server verified against ca, a client certificate
 * if crt). Returns 1 when the handshake succeeded. */
static int tls_connect(struct client *c, uint16_t port, SSL_CTX **sctx, const char *ca,
                       const char *crt, const char *key)
{
    if (cl_connect(c, port) != 0) return 0;
    *sctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_load_verify_locations(*sctx, ca, NULL);
    SSL_CTX_set_verify(*sctx, SSL_VERIFY_PEER, NULL);
    if (crt) {
        SSL_CTX_use_certificate_chain_file(*sctx, crt);
        SSL_CTX_use_PrivateKey_file(*sctx, key, SSL_FILETYPE_PEM);
    }
    SSL *ssl = SSL_new(*sctx);
    SSL_set_fd(ssl, c->fd);
    c->tls = ssl;
    c->tls_send = tls_send;
    c->tls_recv = tls_recv;
    return SSL_connect(ssl) == 1;
}

static void tls_close(struct client *c, SSL_CTX *sctx)
{
    SSL_free(c->tls);
    c->tls = NULL;
    SSL_CTX_free(sctx);
    cl_close(c);
    ERR_clear_error();
}

/* GET path on c; the body (freed by the caller) or NULL. */
static char *get_body(struct client *c, const char *target, int *status)
{
    char req[256];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", target);
    if (cl_sends(c, req) != 0) return NULL;
    struct resp r;
    if (cl_read(c, &r) != 0) return NULL;
    *status = r.status;
    return r.body;
}

TEST(tls_user_is_the_verified_client_certificate_common_name)
{
    struct st_tls_ctx *ctx;
    struct fx *f = tls_server(ST_TLS_VERIFY_OPTIONAL, &ctx);
    ASSERT_TRUE(f != NULL);
    ASSERT_EQ(f->create_rc, 0);
    struct client c;
    SSL_CTX *sctx;
    ASSERT_TRUE(tls_connect(&c, f->port, &sctx, st_test_certs_path("ca.crt"),
                            st_test_certs_path("client-alice.crt"),
                            st_test_certs_path("client-alice.key")));
    int status = 0;
    char *body = get_body(&c, "/user", &status);
    ASSERT_TRUE(body != NULL);
    ASSERT_EQ(status, 200);
    ASSERT_STREQ(body, "alice");
    free(body);
    tls_close(&c, sctx);
    /* without a certificate: served (OPTIONAL), no user */
    ASSERT_TRUE(tls_connect(&c, f->port, &sctx, st_test_certs_path("ca.crt"), NULL, NULL));
    body = get_body(&c, "/user", &status);
    ASSERT_TRUE(body != NULL);
    ASSERT_STREQ(body, "-");
    free(body);
    tls_close(&c, sctx);
    fx_stop(f);
    st_tls_ctx_destroy(ctx);
}

TEST(pipelined_requests_and_a_large_response_over_tls)
{
    struct st_tls_ctx *ctx;
    struct fx *f = tls_server(ST_TLS_VERIFY_OPTIONAL, &ctx);
    ASSERT_TRUE(f != NULL);
    struct client c;
    SSL_CTX *sctx;
    ASSERT_TRUE(tls_connect(&c, f->port, &sctx, st_test_certs_path("ca.crt"), NULL, NULL));
    /* 12 requests in one TLS write: answered in order, in batches */
    char reqs[12 * 64];
    size_t off = 0;
    for (int i = 0; i < 12; i++)
        off += (size_t)snprintf(reqs + off, sizeof reqs - off,
                                "GET /p%d HTTP/1.1\r\nHost: t\r\n\r\n", i);
    ASSERT_EQ(cl_send(&c, reqs, off), 0);
    for (int i = 0; i < 12; i++) {
        struct resp r;
        ASSERT_EQ(cl_read(&c, &r), 0);
        ASSERT_EQ(r.status, 200);
        char want[32];
        snprintf(want, sizeof want, "GET /p%d ", i);
        ASSERT_TRUE(strncmp(r.body, want, strlen(want)) == 0);
        free(r.body);
    }
    /* 3 MiB: more than one socket write, the rest completes later */
    int status = 0;
    char *body = get_body(&c, "/big", &status);
    ASSERT_TRUE(body != NULL);
    ASSERT_EQ(status, 200);
    for (size_t i = 0; i < 3u * 1024u * 1024u + 17u; i += 4099)
        ASSERT_EQ(body[i], (char)('a' + i % 23));
    free(body);
    tls_close(&c, sctx);
    struct http_server_stats st = fx_stop(f);
    ASSERT_EQ(st.tls_failures, 0);
    st_tls_ctx_destroy(ctx);
}

TEST(plain_http_to_a_tls_port_gets_a_400_that_says_https)
{
    struct st_tls_ctx *ctx;
    struct fx *f = tls_server(ST_TLS_VERIFY_OPTIONAL, &ctx);
    ASSERT_TRUE(f != NULL);
    struct client c;
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    ASSERT_EQ(cl_sends(&c, "GET /user HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    struct resp r;
    ASSERT_EQ(cl_read(&c, &r), 0);
    ASSERT_EQ(r.status, 400);
    ASSERT_TRUE(strstr(r.body, "https://") != NULL);
    ASSERT_TRUE(r.conn_close);
    free(r.body);
    ASSERT_EQ(cl_wait_eof(&c), 1);
    cl_close(&c);
    struct http_server_stats st = fx_stop(f);
    ASSERT_EQ(st.tls_plain_refused, 1);
    ASSERT_EQ(st.requests, 0);
    st_tls_ctx_destroy(ctx);
}

TEST(client_certificate_required_refuses_none_and_another_ca)
{
    struct st_tls_ctx *ctx;
    struct fx *f = tls_server(ST_TLS_VERIFY_REQUIRE, &ctx);
    ASSERT_TRUE(f != NULL);
    const char *certs[2][2] = {{NULL, NULL},
                               {st_test_certs_path("other/client-mallory.crt"),
                                st_test_certs_path("other/client-mallory.key")}};
    for (int i = 0; i < 2; i++) {
        struct client c;
        SSL_CTX *sctx;
        /* TLS 1.3: the client may finish its side before the server refuses */
        int ok =
            tls_connect(&c, f->port, &sctx, st_test_certs_path("ca.crt"), certs[i][0], certs[i][1]);
        int status = 0;
        char *body = ok ? get_body(&c, "/user", &status) : NULL;
        ASSERT_TRUE(body == NULL);
        tls_close(&c, sctx);
    }
    struct http_server_stats st = fx_stop(f);
    ASSERT_EQ(st.requests, 0);
    ASSERT_EQ(st.tls_failures, 2);
    st_tls_ctx_destroy(ctx);
}

TEST_MAIN()
