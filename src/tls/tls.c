/* TLS contexts and memory-BIO connections over OpenSSL 3. Contract in tls.h. */
#include "tls/tls.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "stcache/errors.h"

struct st_tls_ctx {
    SSL_CTX *ssl_ctx; /* the current one; connections hold their own reference */
    enum st_tls_side side;
    enum st_tls_verify verify;
    char *cert_file, *key_file, *ca_file; /* owned copies, may be NULL */
};

struct st_tls_conn {
    SSL *ssl;
    BIO *rbio; /* ciphertext in (owned by ssl) */
    BIO *wbio; /* ciphertext out (owned by ssl) */
    enum st_tls_verify verify;
    bool established;
    char reason[ST_TLS_REASON_MAX];
};

static void set_reason(char *reason, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_reason(char *reason, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    /* ap is started above; the analyzer loses track of it here */
    // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized)
    if (reason != NULL) vsnprintf(reason, ST_TLS_REASON_MAX, fmt, ap);
    va_end(ap);
}

/* OpenSSL's last queued error as text ("" when none); clears the queue. */
static void openssl_reason(char *buf, size_t cap)
{
    unsigned long e = ERR_peek_last_error();
    if (e == 0)
        snprintf(buf, cap, "unknown error");
    else
        ERR_error_string_n(e, buf, cap);
    ERR_clear_error();
}

/* Empties this thread's error queue before an I/O call, as SSL_get_error
 * requires. Peeking first: ERR_clear_error walks every slot of the queue
 * even when it is empty, which was a tenth of the CPU of a small record. */
static void errors_reset(void)
{
    if (ERR_peek_error() != 0) ERR_clear_error();
}

static char *dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

/* A fresh SSL_CTX from the files of ctx; NULL with reason on failure. */
static SSL_CTX *ctx_build(const struct st_tls_ctx *ctx, char *reason)
{
    char err[160];
    ERR_clear_error();
    SSL_CTX *s =
        SSL_CTX_new(ctx->side == ST_TLS_SERVER ? TLS_server_method() : TLS_client_method());
    if (s == NULL) {
        set_reason(reason, "TLS: cannot create a context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(s, TLS1_2_VERSION);
    SSL_CTX_set_options(s, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_read_ahead(s, 1);
    if (ctx->cert_file != NULL) {
        if (SSL_CTX_use_certificate_chain_file(s, ctx->cert_file) != 1) {
            openssl_reason(err, sizeof err);
            set_reason(reason, "TLS: cannot load certificate %s: %s", ctx->cert_file, err);
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(s, ctx->key_file, SSL_FILETYPE_PEM) != 1) {
            if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
                ERR_clear_error();
                set_reason(reason, "TLS: key %s does not match certificate %s", ctx->key_file,
                           ctx->cert_file);
                goto fail;
            }
            openssl_reason(err, sizeof err);
            set_reason(reason, "TLS: cannot load key %s: %s", ctx->key_file, err);
            goto fail;
        }
        if (SSL_CTX_check_private_key(s) != 1) {
            ERR_clear_error();
            set_reason(reason, "TLS: key %s does not match certificate %s", ctx->key_file,
                       ctx->cert_file);
            goto fail;
        }
    }
    if (ctx->verify != ST_TLS_VERIFY_NONE) {
        int ok = ctx->ca_file != NULL ? SSL_CTX_load_verify_locations(s, ctx->ca_file, NULL)
                                      : SSL_CTX_set_default_verify_paths(s);
        if (ok != 1) {
            openssl_reason(err, sizeof err);
            set_reason(reason, "TLS: cannot load CA file %s: %s",
                       ctx->ca_file != NULL ? ctx->ca_file : "(system default)", err);
            goto fail;
        }
    }
    int mode = SSL_VERIFY_NONE;
    if (ctx->verify == ST_TLS_VERIFY_OPTIONAL) mode = SSL_VERIFY_PEER;
    if (ctx->verify == ST_TLS_VERIFY_REQUIRE)
        mode = SSL_VERIFY_PEER | (ctx->side == ST_TLS_SERVER ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0);
    SSL_CTX_set_verify(s, mode, NULL);
    if (ctx->side == ST_TLS_SERVER) {
        /* Resumption with client certificates needs a session id context. */
        static const unsigned char sid_ctx[] = "stcache";
        SSL_CTX_set_session_id_context(s, sid_ctx, sizeof sid_ctx - 1);
    }
    return s;
fail:
    SSL_CTX_free(s);
    return NULL;
}

int st_tls_ctx_create(enum st_tls_side side, enum st_tls_verify verify,
                      const struct st_tls_files *files, struct st_tls_ctx **out, char *reason)
{
    *out = NULL;
    if ((files->cert_file == NULL) != (files->key_file == NULL)) {
        set_reason(reason, "TLS: a certificate needs its key and a key its certificate");
        return ST_EINVAL;
    }
    if (side == ST_TLS_SERVER && files->cert_file == NULL) {
        set_reason(reason, "TLS: a server needs a certificate and a key");
        return ST_EINVAL;
    }
    struct st_tls_ctx *ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) return ST_ENOMEM;
    ctx->side = side;
    ctx->verify = verify;
    ctx->cert_file = dup_or_null(files->cert_file);
    ctx->key_file = dup_or_null(files->key_file);
    ctx->ca_file = dup_or_null(files->ca_file);
    if ((files->cert_file != NULL && (ctx->cert_file == NULL || ctx->key_file == NULL)) ||
        (files->ca_file != NULL && ctx->ca_file == NULL)) {
        st_tls_ctx_destroy(ctx);
        return ST_ENOMEM;
    }
    ctx->ssl_ctx = ctx_build(ctx, reason);
    if (ctx->ssl_ctx == NULL) {
        st_tls_ctx_destroy(ctx);
        return ST_EINVAL;
    }
    *out = ctx;
    return 0;
}

int st_tls_ctx_reload(struct st_tls_ctx *ctx, char *reason)
{
    SSL_CTX *s = ctx_build(ctx, reason);
    if (s == NULL) return ST_EINVAL;
    SSL_CTX_free(ctx->ssl_ctx); /* live connections keep their reference */
    ctx->ssl_ctx = s;
    return 0;
}

void st_tls_ctx_destroy(struct st_tls_ctx *ctx)
{
    if (ctx == NULL) return;
    SSL_CTX_free(ctx->ssl_ctx);
    free(ctx->cert_file);
    free(ctx->key_file);
    free(ctx->ca_file);
    free(ctx);
}

bool st_tls_ctx_key_file_too_open(const struct st_tls_ctx *ctx, char *reason)
{
    struct stat st;
    if (ctx->key_file == NULL || stat(ctx->key_file, &st) != 0) return false;
    if ((st.st_mode & 077) == 0) return false;
    set_reason(reason, "TLS: key file %s can be read by others than its owner: chmod 600 it",
               ctx->key_file);
    return true;
}

/* ------------------------------------------------------------ connections */

/* A client checks that the server's certificate names `name`: an IP
 * address among its IP SANs, or a host name among its DNS names (then also
 * sent as SNI). false only when OpenSSL is out of memory. */
static bool host_check(struct st_tls_conn *c, const char *name)
{
    X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
    if (X509_VERIFY_PARAM_set1_ip_asc(vp, name) == 1) return true;
    ERR_clear_error();
    if (SSL_set1_host(c->ssl, name) != 1) return false;
    /* SSL_set_tlsext_host_name() without its const-dropping cast */
    SSL_ctrl(c->ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
             (void *)(uintptr_t)name);
    return true;
}

int st_tls_conn_create(struct st_tls_ctx *ctx, const char *sni, struct st_tls_conn **out)
{
    *out = NULL;
    struct st_tls_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) return ST_ENOMEM;
    c->verify = ctx->verify;
    c->ssl = SSL_new(ctx->ssl_ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (c->ssl == NULL || c->rbio == NULL || c->wbio == NULL) {
        BIO_free(c->rbio);
        BIO_free(c->wbio);
        SSL_free(c->ssl);
        free(c);
        ERR_clear_error();
        return ST_ENOMEM;
    }
    /* An empty memory BIO reports "retry" rather than EOF. */
    BIO_set_mem_eof_return(c->rbio, -1);
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    if (ctx->side == ST_TLS_SERVER) {
        SSL_set_accept_state(c->ssl);
    } else {
        SSL_set_connect_state(c->ssl);
        if (sni != NULL && sni[0] != '\0' && !host_check(c, sni)) {
            st_tls_conn_destroy(c);
            ERR_clear_error();
            return ST_ENOMEM;
        }
    }
    *out = c;
    return 0;
}

void st_tls_conn_destroy(struct st_tls_conn *c)
{
    if (c == NULL) return;
    /* A connection that ends without close_notify (the socket's owner closes
     * it) would otherwise take its session out of resumption. */
    if (c->established) SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(c->ssl); /* frees both BIOs */
    free(c);
}

void st_tls_conn_set_session(struct st_tls_conn *c, void *session)
{
    if (session != NULL) SSL_set_session(c->ssl, session);
}

void *st_tls_conn_take_session(struct st_tls_conn *c)
{
    if (!c->established) return NULL;
    SSL_SESSION *s = SSL_get1_session(c->ssl);
    if (s != NULL && !SSL_SESSION_is_resumable(s)) {
        SSL_SESSION_free(s);
        return NULL;
    }
    return s;
}

void st_tls_session_free(void *session)
{
    SSL_SESSION_free(session);
}

bool st_tls_conn_resumed(const struct st_tls_conn *c)
{
    return SSL_session_reused(c->ssl) == 1;
}

int st_tls_conn_feed(struct st_tls_conn *c, const void *data, size_t len)
{
    if (len == 0) return 0;
    size_t n = 0;
    if (BIO_write_ex(c->rbio, data, len, &n) != 1 || n != len) {
        ERR_clear_error();
        return ST_ENOMEM;
    }
    return 0;
}

/* Certificate problems (ours or theirs) as ST_EPERM, the rest ST_EPROTO. */
static int conn_fail(struct st_tls_conn *c)
{
    long vr = SSL_get_verify_result(c->ssl);
    unsigned long e = ERR_peek_last_error();
    int reason = ERR_GET_REASON(e);
    bool cert = vr != X509_V_OK;
    if (ERR_GET_LIB(e) == ERR_LIB_SSL) {
        switch (reason) {
        case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
        case SSL_R_CERTIFICATE_VERIFY_FAILED:
        case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
        case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
        case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
        case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
        case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
        case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
        case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
            cert = true;
            break;
        default:
            break;
        }
    }
    char err[160];
    openssl_reason(err, sizeof err);
    if (vr != X509_V_OK)
        snprintf(c->reason, sizeof c->reason, "certificate verification failed: %s (%s)",
                 X509_verify_cert_error_string(vr), err);
    else
        snprintf(c->reason, sizeof c->reason, "%s", err);
    return cert ? ST_EPERM : ST_EPROTO;
}

int st_tls_conn_handshake(struct st_tls_conn *c)
{
    if (c->established) return 0;
    errors_reset();
    int rv = SSL_do_handshake(c->ssl);
    if (rv == 1) {
        c->established = true;
        return 0;
    }
    int err = SSL_get_error(c->ssl, rv);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return ST_EBUSY;
    return conn_fail(c);
}

bool st_tls_conn_established(const struct st_tls_conn *c)
{
    return c->established;
}

long st_tls_conn_read(struct st_tls_conn *c, void *buf, size_t cap)
{
    if (cap == 0) return 0;
    /* Established and no ciphertext or record bytes held: SSL_read would
     * only answer "want read". (Post-handshake messages arrive as input.) */
    if (c->established && BIO_ctrl_pending(c->rbio) == 0 && !SSL_has_pending(c->ssl)) return 0;
    errors_reset();
    size_t n = 0;
    if (SSL_read_ex(c->ssl, buf, cap, &n) == 1) return (long)n;
    int err = SSL_get_error(c->ssl, 0);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return 0;
    if (err == SSL_ERROR_ZERO_RETURN) return ST_ECLOSED;
    return conn_fail(c);
}

int st_tls_conn_write(struct st_tls_conn *c, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0) {
        errors_reset();
        size_t n = 0;
        if (SSL_write_ex(c->ssl, p, len, &n) != 1) {
            int err = SSL_get_error(c->ssl, 0);
            if (err == SSL_ERROR_SSL &&
                ERR_GET_REASON(ERR_peek_last_error()) == ERR_R_MALLOC_FAILURE) {
                ERR_clear_error();
                return ST_ENOMEM;
            }
            conn_fail(c);
            return ST_EPROTO;
        }
        p += n;
        len -= n;
    }
    return 0;
}

size_t st_tls_conn_output_len(const struct st_tls_conn *c)
{
    return BIO_ctrl_pending(c->wbio);
}

size_t st_tls_conn_take_output(struct st_tls_conn *c, void *buf, size_t cap)
{
    size_t n = 0;
    if (cap == 0 || BIO_read_ex(c->wbio, buf, cap, &n) != 1) return 0;
    return n;
}

const char *st_tls_conn_reason(const struct st_tls_conn *c)
{
    return c->reason;
}

/* A verified peer certificate, or NULL. */
static X509 *verified_peer(const struct st_tls_conn *c)
{
    if (!c->established || c->verify == ST_TLS_VERIFY_NONE) return NULL;
    X509 *x = SSL_get0_peer_certificate(c->ssl);
    if (x == NULL || SSL_get_verify_result(c->ssl) != X509_V_OK) return NULL;
    return x;
}

/* "stcache-node-<id>" with 0 < id < 2^64, nothing else. */
static int parse_node_name(const char *s, size_t len, uint64_t *id)
{
    size_t plen = sizeof ST_TLS_NODE_CN_PREFIX - 1;
    if (len <= plen || len > plen + 20 || memcmp(s, ST_TLS_NODE_CN_PREFIX, plen) != 0)
        return ST_ENOENT;
    uint64_t v = 0;
    for (size_t i = plen; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return ST_ENOENT;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return ST_ENOENT;
        v = v * 10 + d;
    }
    if (v == 0) return ST_ENOENT;
    *id = v;
    return 0;
}

int st_tls_conn_peer_name(const struct st_tls_conn *c, char *name, size_t cap)
{
    X509 *x = verified_peer(c);
    if (x == NULL) return ST_ENOENT;
    X509_NAME *subj = X509_get_subject_name(x);
    int idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
    if (idx < 0) return ST_ENOENT;
    ASN1_STRING *d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx));
    int len = ASN1_STRING_length(d);
    const unsigned char *p = ASN1_STRING_get0_data(d);
    if (len <= 0) return ST_ENOENT;
    if (memchr(p, '\0', (size_t)len) != NULL) return ST_ENOENT; /* embedded NUL: forged */
    if ((size_t)len >= cap) return ST_ETOOBIG;
    memcpy(name, p, (size_t)len);
    name[len] = '\0';
    return 0;
}

int st_tls_conn_peer_node_id(const struct st_tls_conn *c, uint64_t *id)
{
    X509 *x = verified_peer(c);
    if (x == NULL) return ST_ENOENT;
    char cn[ST_TLS_NAME_MAX];
    if (st_tls_conn_peer_name(c, cn, sizeof cn) == 0 && parse_node_name(cn, strlen(cn), id) == 0)
        return 0;
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int rv = ST_ENOENT;
    for (int i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans) && rv != 0; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type != GEN_DNS) continue;
        const unsigned char *p = ASN1_STRING_get0_data(g->d.dNSName);
        int len = ASN1_STRING_length(g->d.dNSName);
        if (len > 0 && memchr(p, '\0', (size_t)len) == NULL)
            rv = parse_node_name((const char *)p, (size_t)len, id);
    }
    GENERAL_NAMES_free(sans);
    return rv;
}
