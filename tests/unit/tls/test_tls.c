/* TLS over memory BIOs (src/tls): two connections in memory handshake and
 * exchange data; the refusals (wrong CA, no certificate, expired
 * certificate); node ids from certificates; reload keeps the old context
 * when the new files are bad. Certificates come from scripts/gen-certs.sh
 * into a temporary directory (the expired one from OpenSSL's API). */
#include "test.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stcache/errors.h"
#include "tls/tls.h"
#include "tls_certs.h"

/* An expired certificate for CN, signed by the CA in `cadir`. */
static void make_expired(const char *cadir, const char *cn, const char *crt, const char *key)
{
    char p[320];
    snprintf(p, sizeof p, "%s/ca.key", cadir);
    FILE *f = fopen(p, "r");
    EVP_PKEY *cakey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    snprintf(p, sizeof p, "%s/ca.crt", cadir);
    f = fopen(p, "r");
    X509 *cacrt = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 4242);
    X509_gmtime_adj(X509_getm_notBefore(x), -7200);
    X509_gmtime_adj(X509_getm_notAfter(x), -3600);
    X509_set_pubkey(x, k);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(cacrt));
    X509_sign(x, cakey, EVP_sha256());
    f = fopen(crt, "w");
    PEM_write_X509(f, x);
    fclose(f);
    f = fopen(key, "w");
    PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    X509_free(x);
    X509_free(cacrt);
    EVP_PKEY_free(k);
    EVP_PKEY_free(cakey);
}

__attribute__((constructor(200))) static void setup(void)
{
    st_test_certs_setup("st-tls-test");
    st_test_certs_gen("", "ca");
    st_test_certs_gen("", "node 1");
    st_test_certs_gen("", "node 2");
    st_test_certs_gen("", "client alice");
    st_test_certs_gen("other", "ca");
    st_test_certs_gen("other", "node 2");
    make_expired(st_test_certs_dir, "stcache-node-2", st_test_certs_path("expired.crt"),
                 st_test_certs_path("expired.key"));
}

static struct st_tls_ctx *ctx_of(enum st_tls_side side, enum st_tls_verify v, const char *crt,
                                 const char *key, const char *ca)
{
    struct st_tls_files f = {crt, key, ca};
    struct st_tls_ctx *ctx = NULL;
    char reason[ST_TLS_REASON_MAX];
    int rv = st_tls_ctx_create(side, v, &f, &ctx, reason);
    if (rv != 0) fprintf(stderr, "ctx: %s\n", reason);
    return ctx;
}

/* Moves every byte of output of a to b's input. */
static void pipe_out(struct st_tls_conn *a, struct st_tls_conn *b)
{
    uint8_t buf[4096];
    size_t n;
    while ((n = st_tls_conn_take_output(a, buf, sizeof buf)) > 0)
        ASSERT_EQ(st_tls_conn_feed(b, buf, n), 0);
}

/* Runs both handshakes to the end; returns the client's and server's last
 * results in *crv, *srv. */
static void handshake(struct st_tls_conn *cl, struct st_tls_conn *sv, int *crv, int *srv)
{
    *crv = *srv = ST_EBUSY;
    for (int i = 0; i < 20; i++) {
        if (*crv == ST_EBUSY) *crv = st_tls_conn_handshake(cl);
        pipe_out(cl, sv);
        if (*srv == ST_EBUSY) *srv = st_tls_conn_handshake(sv);
        pipe_out(sv, cl);
        if (*crv != ST_EBUSY && *srv != ST_EBUSY) break;
    }
    /* The server learns of the client's refusal from its alert. */
    if (*crv == 0 && *srv == 0) return;
    uint8_t b[64];
    if (*srv == 0) *srv = (int)st_tls_conn_read(sv, b, sizeof b);
    if (*crv == 0) *crv = (int)st_tls_conn_read(cl, b, sizeof b);
}

struct pair {
    struct st_tls_ctx *sctx, *cctx;
    struct st_tls_conn *s, *c;
};

static void pair_close(struct pair *p)
{
    st_tls_conn_destroy(p->s);
    st_tls_conn_destroy(p->c);
    st_tls_ctx_destroy(p->sctx);
    st_tls_ctx_destroy(p->cctx);
}

TEST(mutual_handshake_exchanges_data_and_names_both_nodes)
{
    struct pair p = {0};
    p.sctx = ctx_of(ST_TLS_SERVER, ST_TLS_VERIFY_REQUIRE, st_test_certs_path("node-2.crt"),
                    st_test_certs_path("node-2.key"), st_test_certs_path("ca.crt"));
    p.cctx = ctx_of(ST_TLS_CLIENT, ST_TLS_VERIFY_REQUIRE, st_test_certs_path("node-1.crt"),
                    st_test_certs_path("node-1.key"), st_test_certs_path("ca.crt"));
    ASSERT_TRUE(p.sctx != NULL && p.cctx != NULL);
    ASSERT_EQ(st_tls_conn_create(p.sctx, NULL, &p.s), 0);
    ASSERT_EQ(st_tls_conn_create(p.cctx, "localhost", &p.c), 0);
    int crv, srv;
    handshake(p.c, p.s, &crv, &srv);
    ASSERT_EQ(crv, 0);
    ASSERT_EQ(srv, 0);
    uint64_t id = 0;
    ASSERT_EQ(st_tls_conn_peer_node_id(p.s, &id), 0);
    ASSERT_EQ(id, 1);
    ASSERT_EQ(st_tls_conn_peer_node_id(p.c, &id), 0);
    ASSERT_EQ(id, 2);
    /* 1 MiB each way, in pieces, through the memory BIOs. */
    static uint8_t big[1 << 20], got[1 << 20];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 31 + 7);
    ASSERT_EQ(st_tls_conn_write(p.c, big, sizeof big), 0);
    ASSERT_TRUE(st_tls_conn_output_len(p.c) > sizeof big);
    pipe_out(p.c, p.s);
    size_t have = 0;
    long n;
    while ((n = st_tls_conn_read(p.s, got + have, 10000)) > 0)
        have += (size_t)n;
    ASSERT_EQ(n, 0);
    ASSERT_EQ(have, sizeof big);
    ASSERT_MEMEQ(got, big, sizeof big);
    ASSERT_EQ(st_tls_conn_write(p.s, "pong", 4), 0);
    pipe_out(p.s, p.c);
    char pong[8];
    ASSERT_EQ(st_tls_conn_read(p.c, pong, sizeof pong), 4);
    ASSERT_MEMEQ(pong, "pong", 4);
    pair_close(&p);
}

TEST(a_client_certificate_names_its_user)
{
    struct pair p = {0};
    p.sctx = ctx_of(ST_TLS_SERVER, ST_TLS_VERIFY_OPTIONAL, st_test_certs_path("node-2.crt"),
                    st_test_certs_path("node-2.key"), st_test_certs_path("ca.crt"));
    p.cctx = ctx_of(ST_TLS_CLIENT, ST_TLS_VERIFY_REQUIRE, st_test_certs_path("client-alice.crt"),
                    st_test_certs_path("client-alice.key"), st_test_certs_path("ca.crt"));
    ASSERT_EQ(st_tls_conn_create(p.sctx, NULL, &p.s), 0);
    ASSERT_EQ(st_tls_conn_create(p.cctx, NULL, &p.c), 0);
    int crv, srv;
    handshake(p.c, p.s, &crv, &srv);
    ASSERT_EQ(srv, 0);
    char name[ST_TLS_NAME_MAX];
    ASSERT_EQ(st_tls_conn_peer_name(p.s, name, sizeof name), 0);
    ASSERT_STREQ(name, "alice");
    uint64_t id;
    ASSERT_EQ(st_tls_conn_peer_node_id(p.s, &id), ST_ENOENT); /* a user, not a node */
    ASSERT_EQ(st_tls_conn_peer_name(p.s, name, 3), ST_ETOOBIG);
    pair_close(&p);
}

static void expect_refused(const char *ccrt, const char *ckey, const char *cca, const char *scrt,
                           const char *skey)
{
    struct pair p = {0};
    p.sctx = ctx_of(ST_TLS_SERVER, ST_TLS_VERIFY_REQUIRE, scrt, skey, st_test_certs_path("ca.crt"));
    p.cctx = ctx_of(ST_TLS_CLIENT, ST_TLS_VERIFY_REQUIRE, ccrt, ckey, cca);
    ASSERT_TRUE(p.sctx != NULL && p.cctx != NULL);
    ASSERT_EQ(st_tls_conn_create(p.sctx, NULL, &p.s), 0);
    ASSERT_EQ(st_tls_conn_create(p.cctx, NULL, &p.c), 0);
    int crv, srv;
    handshake(p.c, p.s, &crv, &srv);
    ASSERT_TRUE(crv < 0 || srv < 0);
    ASSERT_TRUE(srv != 0 || crv != 0);
    /* whichever side refused says why, and its code says "certificate" */
    int rv = srv < 0 && srv != ST_EBUSY ? srv : crv;
    const char *why =
        srv < 0 && srv != ST_EBUSY ? st_tls_conn_reason(p.s) : st_tls_conn_reason(p.c);
    ASSERT_TRUE(rv == ST_EPERM || rv == ST_EPROTO);
    ASSERT_TRUE(why[0] != '\0');
    uint64_t id;
    ASSERT_EQ(st_tls_conn_peer_node_id(p.s, &id), ST_ENOENT);
    pair_close(&p);
}

TEST(a_certificate_from_another_ca_is_refused)
{
    char crt[320], key[320];
    snprintf(crt, sizeof crt, "%s/other/node-2.crt", st_test_certs_dir);
    snprintf(key, sizeof key, "%s/other/node-2.key", st_test_certs_dir);
    /* client presents a certificate of another CA */
    expect_refused(crt, key, st_test_certs_path("ca.crt"), st_test_certs_path("node-1.crt"),
                   st_test_certs_path("node-1.key"));
    /* client trusts another CA than the one that signed the server */
    char oca[320];
    snprintf(oca, sizeof oca, "%s/other/ca.crt", st_test_certs_dir);
    expect_refused(st_test_certs_path("node-2.crt"), st_test_certs_path("node-2.key"), oca,
                   st_test_certs_path("node-1.crt"), st_test_certs_path("node-1.key"));
}

TEST(no_client_certificate_is_refused_when_required)
{
    expect_refused(NULL, NULL, st_test_certs_path("ca.crt"), st_test_certs_path("node-1.crt"),
                   st_test_certs_path("node-1.key"));
}

TEST(an_expired_certificate_is_refused)
{
    expect_refused(st_test_certs_path("expired.crt"), st_test_certs_path("expired.key"),
                   st_test_certs_path("ca.crt"), st_test_certs_path("node-1.crt"),
                   st_test_certs_path("node-1.key"));
}

TEST(sessions_resume_with_tickets)
{
    struct st_tls_ctx *s =
        ctx_of(ST_TLS_SERVER, ST_TLS_VERIFY_REQUIRE, st_test_certs_path("node-2.crt"),
               st_test_certs_path("node-2.key"), st_test_certs_path("ca.crt"));
    struct st_tls_ctx *c =
        ctx_of(ST_TLS_CLIENT, ST_TLS_VERIFY_REQUIRE, st_test_certs_path("node-1.crt"),
               st_test_certs_path("node-1.key"), st_test_certs_path("ca.crt"));
    void *session = NULL;
    for (int round = 0; round < 2; round++) {
        struct st_tls_conn *sc, *cc;
        ASSERT_EQ(st_tls_conn_create(s, NULL, &sc), 0);
        ASSERT_EQ(st_tls_conn_create(c, NULL, &cc), 0);
        st_tls_conn_set_session(cc, session);
        int crv, srv;
        handshake(cc, sc, &crv, &srv);
        ASSERT_EQ(crv, 0);
        ASSERT_EQ(srv, 0);
        /* TLS 1.3 tickets come after the handshake: read them */
        uint8_t b[16];
        ASSERT_EQ(st_tls_conn_read(cc, b, sizeof b), 0);
        ASSERT_EQ(st_tls_conn_resumed(cc), round == 1);
        uint64_t id = 0;
        ASSERT_EQ(st_tls_conn_peer_node_id(sc, &id), 0); /* resumed: still knows the peer */
        ASSERT_EQ(id, 1);
        st_tls_session_free(session);
        session = st_tls_conn_take_session(cc);
        ASSERT_TRUE(session != NULL);
        st_tls_conn_destroy(sc);
        st_tls_conn_destroy(cc);
    }
    st_tls_session_free(session);
    st_tls_ctx_destroy(s);
    st_tls_ctx_destroy(c);
}

static void copy_file(const char *from, const char *to)
{
    st_test_sh("cp %s %s", from, to);
}

TEST(reload_with_a_bad_file_keeps_the_old_context)
{
    copy_file(st_test_certs_path("node-2.crt"), st_test_certs_path("live.crt"));
    copy_file(st_test_certs_path("node-2.key"), st_test_certs_path("live.key"));
    struct st_tls_ctx *s =
        ctx_of(ST_TLS_SERVER, ST_TLS_VERIFY_REQUIRE, st_test_certs_path("live.crt"),
               st_test_certs_path("live.key"), st_test_certs_path("ca.crt"));
    struct st_tls_ctx *c =
        ctx_of(ST_TLS_CLIENT, ST_TLS_VERIFY_REQUIRE, st_test_certs_path("node-1.crt"),
               st_test_certs_path("node-1.key"), st_test_certs_path("ca.crt"));
    ASSERT_TRUE(s != NULL && c != NULL);
    char reason[ST_TLS_REASON_MAX];
    /* a key that does not match the certificate */
    copy_file(st_test_certs_path("node-1.key"), st_test_certs_path("live.key"));
    ASSERT_EQ(st_tls_ctx_reload(s, reason), ST_EINVAL);
    ASSERT_TRUE(strstr(reason, "does not match") != NULL);
    /* garbage */
    st_test_sh("echo garbage > %s", st_test_certs_path("live.crt"));
    ASSERT_EQ(st_tls_ctx_reload(s, reason), ST_EINVAL);
    ASSERT_TRUE(strstr(reason, "live.crt") != NULL);
    /* the old context still serves node 2's certificate */
    struct st_tls_conn *sc, *cc;
    ASSERT_EQ(st_tls_conn_create(s, NULL, &sc), 0);
    ASSERT_EQ(st_tls_conn_create(c, NULL, &cc), 0);
    int crv, srv;
    handshake(cc, sc, &crv, &srv);
    ASSERT_EQ(crv, 0);
    ASSERT_EQ(srv, 0);
    uint64_t id = 0;
    ASSERT_EQ(st_tls_conn_peer_node_id(cc, &id), 0);
    ASSERT_EQ(id, 2);
    /* a good pair (node 1's) is taken; the live connection keeps working */
    copy_file(st_test_certs_path("node-1.crt"), st_test_certs_path("live.crt"));
    copy_file(st_test_certs_path("node-1.key"), st_test_certs_path("live.key"));
    ASSERT_EQ(st_tls_ctx_reload(s, reason), 0);
    ASSERT_EQ(st_tls_conn_write(cc, "x", 1), 0);
    pipe_out(cc, sc);
    char b[4];
    ASSERT_EQ(st_tls_conn_read(sc, b, sizeof b), 1);
    st_tls_conn_destroy(sc);
    st_tls_conn_destroy(cc);
    ASSERT_EQ(st_tls_conn_create(s, NULL, &sc), 0);
    ASSERT_EQ(st_tls_conn_create(c, NULL, &cc), 0);
    handshake(cc, sc, &crv, &srv);
    ASSERT_EQ(crv, 0);
    ASSERT_EQ(st_tls_conn_peer_node_id(cc, &id), 0);
    ASSERT_EQ(id, 1);
    st_tls_conn_destroy(sc);
    st_tls_conn_destroy(cc);
    st_tls_ctx_destroy(s);
    st_tls_ctx_destroy(c);
}

TEST(an_open_key_file_is_reported)
{
    struct st_tls_ctx *s =
        ctx_of(ST_TLS_SERVER, ST_TLS_VERIFY_REQUIRE, st_test_certs_path("node-2.crt"),
               st_test_certs_path("node-2.key"), st_test_certs_path("ca.crt"));
    char reason[ST_TLS_REASON_MAX];
    ASSERT_FALSE(st_tls_ctx_key_file_too_open(s, reason)); /* gen-certs.sh writes 600 */
    chmod(st_test_certs_path("node-2.key"), 0644);
    ASSERT_TRUE(st_tls_ctx_key_file_too_open(s, reason));
    ASSERT_TRUE(strstr(reason, "node-2.key") != NULL);
    chmod(st_test_certs_path("node-2.key"), 0600);
    st_tls_ctx_destroy(s);
}

TEST(missing_files_are_clear_errors)
{
    struct st_tls_files f = {st_test_certs_path("nope.crt"), st_test_certs_path("nope.key"),
                             st_test_certs_path("ca.crt")};
    struct st_tls_ctx *ctx;
    char reason[ST_TLS_REASON_MAX];
    ASSERT_EQ(st_tls_ctx_create(ST_TLS_SERVER, ST_TLS_VERIFY_REQUIRE, &f, &ctx, reason), ST_EINVAL);
    ASSERT_TRUE(ctx == NULL);
    ASSERT_TRUE(strstr(reason, "nope.crt") != NULL);
    struct st_tls_files none = {NULL, NULL, NULL};
    ASSERT_EQ(st_tls_ctx_create(ST_TLS_SERVER, ST_TLS_VERIFY_NONE, &none, &ctx, reason), ST_EINVAL);
}

TEST_MAIN()
