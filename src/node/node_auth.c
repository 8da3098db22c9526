/* Client authentication and authorisation (node/auth.h): token checks with
 * PBKDF2 and a bounded cache, permission checks against the replicated
 * table (kv/kv_auth.h), the changes admins propose, and the first admin
 * from --initial-admin-token-file. */
#include "node/auth.h"
#include "node/node_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "kv/kv_auth.h"
#include "stcache/errors.h"
#include "util/assert.h"
#include "util/trace.h"

#define MOD "auth"

_Static_assert(NODE_AUTH_NAME_BYTES_MAX == KV_AUTH_NAME_BYTES_MAX, "one name bound");
_Static_assert(NODE_AUTH_PREFIXES_MAX == KV_AUTH_PREFIXES_MAX, "one prefix count bound");
_Static_assert(NODE_AUTH_PREFIX_BYTES_MAX == KV_AUTH_PREFIX_BYTES_MAX, "one prefix bound");
_Static_assert((int)NODE_ROLE_ADMIN == KV_AUTH_ADMIN &&
                   (int)NODE_ROLE_READWRITE == KV_AUTH_READWRITE &&
                   (int)NODE_ROLE_READONLY == KV_AUTH_READONLY,
               "one role numbering");
_Static_assert((NODE_AUTH_CACHE_ENTRIES_MAX & (NODE_AUTH_CACHE_ENTRIES_MAX - 1)) == 0,
               "the cache is indexed by a mask");

/* One verified token: SHA-256 of the whole token, and whose it is. */
struct auth_cache_entry {
    uint8_t digest[SHA256_DIGEST_LENGTH];
    bool used;
    uint8_t role;
    char name[NODE_AUTH_NAME_BYTES_MAX + 1];
};

struct node_auth {
    /* The cache is valid for the table at (kv, generation); anything else
     * empties it first. */
    const struct kv *kv_seen;
    uint64_t gen_seen;
    struct auth_cache_entry cache[NODE_AUTH_CACHE_ENTRIES_MAX];
    struct node_auth_stats stats;
    /* --initial-admin-token-file: the record the leader proposes while the
     * table is empty (hash computed once, at start). */
    bool init_admin;
    bool init_admin_inflight;
    struct kv_auth_user init_user;
    /* --join-token-file: "Authorization: Bearer TOKEN\r\n" for the join
     * request ("" without). */
    char join_header[NODE_AUTH_TOKEN_BYTES_MAX + 32];
};

/* ---------------------------------------------------------------- crypto */

static int kdf(const char *secret, size_t len, const uint8_t *salt, uint32_t iterations,
               uint8_t out[KV_AUTH_HASH_BYTES])
{
    return PKCS5_PBKDF2_HMAC(secret, (int)len, salt, KV_AUTH_SALT_BYTES, (int)iterations,
                             EVP_sha256(), KV_AUTH_HASH_BYTES, out) == 1
               ? 0
               : ST_ENOMEM;
}

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* base64url without padding of in[0, len) into out (NUL-terminated). */
static void b64url_encode(const uint8_t *in, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len) v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len) v |= in[i + 2];
        out[o++] = b64url[(v >> 18) & 63];
        out[o++] = b64url[(v >> 12) & 63];
        if (i + 1 < len) out[o++] = b64url[(v >> 6) & 63];
        if (i + 2 < len) out[o++] = b64url[v & 63];
    }
    out[o] = '\0';
}

static bool secret_valid(const char *s, size_t len)
{
    if (len < NODE_AUTH_SECRET_CHARS_MIN) return false;
    for (size_t i = 0; i < len; i++)
        if (!memchr(b64url, s[i], sizeof b64url - 1)) return false;
    return true;
}

/* Splits "<user>.<secret>". */
static bool token_split(const char *t, size_t len, size_t *name_len, const char **secret,
                        size_t *secret_len)
{
    const char *dot = memchr(t, '.', len);
    if (!dot || len > NODE_AUTH_TOKEN_BYTES_MAX) return false;
    *name_len = (size_t)(dot - t);
    *secret = dot + 1;
    *secret_len = len - *name_len - 1;
    return kv_auth_name_valid(t, *name_len) && secret_valid(*secret, *secret_len);
}

/* Fresh credential for u: a random secret (the token, "<name>.<secret>",
 * into token_out) and its salted hash into u. */
static int credential_new(struct kv_auth_user *u, char *token_out, size_t cap)
{
    uint8_t secret[NODE_AUTH_SECRET_BYTES];
    char text[2 * NODE_AUTH_SECRET_BYTES];
    if (cap < (size_t)u->name_len + 2 + sizeof text) return ST_EINVAL;
    if (RAND_bytes(secret, sizeof secret) != 1 || RAND_bytes(u->salt, sizeof u->salt) != 1)
        return ST_EIO;
    b64url_encode(secret, sizeof secret, text);
    OPENSSL_cleanse(secret, sizeof secret);
    u->kdf_iterations = NODE_AUTH_KDF_ITERATIONS;
    int rc = kdf(text, strlen(text), u->salt, u->kdf_iterations, u->hash);
    if (rc == 0) snprintf(token_out, cap, "%s.%s", u->name, text);
    OPENSSL_cleanse(text, sizeof text);
    return rc;
}

/* ------------------------------------------------------------- lifecycle */

/* Reads the token file of --flag at path into buf (cap bytes): 0 and
 * *len, or ST_EINVAL with a one-line reason. */
static int token_file_read(const char *flag, const char *path, char *buf, size_t cap, size_t *len,
                           char *why, size_t why_cap)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(why, why_cap, "--%s %s: %s", flag, path, strerror(errno));
        return ST_EINVAL;
    }
    size_t l = fread(buf, 1, cap - 1, f);
    fclose(f);
    while (l > 0 && (buf[l - 1] == '\n' || buf[l - 1] == '\r' || buf[l - 1] == ' '))
        l--;
    buf[l] = '\0';
    size_t name_len = 0, secret_len = 0;
    const char *secret = NULL;
    if (!token_split(buf, l, &name_len, &secret, &secret_len)) {
        OPENSSL_cleanse(buf, cap);
        snprintf(why, why_cap,
                 "--%s %s: want one line USER.SECRET (USER: [A-Za-z0-9_-], SECRET: at least %d "
                 "base64url characters)",
                 flag, path, NODE_AUTH_SECRET_CHARS_MIN);
        return ST_EINVAL;
    }
    *len = l;
    return 0;
}

int node_auth_init(struct node *n, char *why, size_t why_cap)
{
    if (!n->cfg.auth && !n->cfg.initial_admin_token_file[0] && !n->cfg.join_token_file[0]) return 0;
    struct node_auth *a = calloc(1, sizeof *a);
    if (!a) return ST_ENOMEM;
    n->auth = a;
    char buf[NODE_AUTH_TOKEN_BYTES_MAX + 2];
    size_t len = 0;
    if (n->cfg.join_token_file[0]) {
        int rc = token_file_read("join-token-file", n->cfg.join_token_file, buf, sizeof buf, &len,
                                 why, why_cap);
        if (rc) return rc;
        snprintf(a->join_header, sizeof a->join_header, "Authorization: Bearer %s\r\n", buf);
        OPENSSL_cleanse(buf, sizeof buf);
    }
    if (!n->cfg.initial_admin_token_file[0]) return 0;
    int rc = token_file_read("initial-admin-token-file", n->cfg.initial_admin_token_file, buf,
                             sizeof buf, &len, why, why_cap);
    if (rc) return rc;
    size_t name_len = 0, secret_len = 0;
    const char *secret = NULL;
    (void)token_split(buf, len, &name_len, &secret, &secret_len);
    struct kv_auth_user *u = &a->init_user;
    u->name_len = (uint8_t)name_len;
    memcpy(u->name, buf, name_len);
    u->role = KV_AUTH_ADMIN;
    u->kdf_iterations = NODE_AUTH_KDF_ITERATIONS;
    rc = RAND_bytes(u->salt, sizeof u->salt) == 1 ? 0 : ST_EIO;
    if (rc == 0) rc = kdf(secret, secret_len, u->salt, u->kdf_iterations, u->hash);
    OPENSSL_cleanse(buf, sizeof buf);
    if (rc) {
        snprintf(why, why_cap, "--initial-admin-token-file: cannot hash the token");
        return rc;
    }
    a->init_admin = true;
    return 0;
}

const char *node_auth_join_header(const struct node *n)
{
    return n->auth && n->auth->join_header[0] ? n->auth->join_header : NULL;
}

void node_auth_free(struct node *n)
{
    if (n->auth) OPENSSL_cleanse(n->auth, sizeof *n->auth);
    free(n->auth);
    n->auth = NULL;
}

static void cache_sync(const struct node *n)
{
    struct node_auth *a = n->auth;
    if (a->kv_seen == n->kv && a->gen_seen == kv_auth_generation(n->kv)) return;
    if (a->kv_seen) a->stats.cache_resets++;
    memset(a->cache, 0, sizeof a->cache);
    a->kv_seen = n->kv;
    a->gen_seen = kv_auth_generation(n->kv);
}

void node_auth_invalidate(struct node *n)
{
    if (!n->auth) return;
    n->auth->kv_seen = NULL;
    cache_sync(n);
}

/* ----------------------------------------------------------------- checks */

bool node_auth_enabled(const struct node *n)
{
    return n->cfg.auth;
}

void node_auth_anonymous(const struct node *n, struct node_principal *out)
{
    memset(out, 0, sizeof *out);
    if (!n->cfg.auth) {
        out->authenticated = true;
        out->role = NODE_ROLE_ADMIN;
    }
}

int node_auth_token(struct node *n, const char *token, size_t len, struct node_principal *out)
{
    node_auth_anonymous(n, out);
    if (!n->cfg.auth) return 0;
    struct node_auth *a = n->auth;
    if (!n->kv) return ST_EPERM;
    cache_sync(n);
    size_t name_len = 0, secret_len = 0;
    const char *secret = NULL;
    if (!token_split(token, len, &name_len, &secret, &secret_len)) {
        a->stats.refused++;
        return ST_EPERM;
    }
    uint8_t digest[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)token, len, digest);
    uint32_t slot;
    memcpy(&slot, digest, sizeof slot);
    struct auth_cache_entry *e = &a->cache[slot & (NODE_AUTH_CACHE_ENTRIES_MAX - 1)];
    if (e->used && CRYPTO_memcmp(e->digest, digest, sizeof digest) == 0) {
        a->stats.cache_hits++;
        out->authenticated = true;
        out->role = e->role;
        memcpy(out->name, e->name, sizeof out->name);
        return 0;
    }
    const struct kv_auth_user *u = kv_auth_find(n->kv, token, name_len);
    uint8_t hash[KV_AUTH_HASH_BYTES];
    if (!u || kdf(secret, secret_len, u->salt, u->kdf_iterations, hash) != 0 ||
        CRYPTO_memcmp(hash, u->hash, sizeof hash) != 0) {
        a->stats.refused++;
        return ST_EPERM;
    }
    a->stats.verified++;
    e->used = true;
    memcpy(e->digest, digest, sizeof digest);
    e->role = u->role;
    memcpy(e->name, u->name, sizeof e->name);
    out->authenticated = true;
    out->role = u->role;
    memcpy(out->name, u->name, sizeof out->name);
    return 0;
}

int node_auth_user_principal(const struct node *n, const char *name, size_t len,
                             struct node_principal *out)
{
    node_auth_anonymous(n, out);
    if (!n->cfg.auth) return 0;
    const struct kv_auth_user *u = n->kv ? kv_auth_find(n->kv, name, len) : NULL;
    if (!u) return ST_EPERM;
    out->authenticated = true;
    out->role = u->role;
    memcpy(out->name, u->name, sizeof out->name);
    return 0;
}

/* The table's record of p, or NULL (unauthenticated, or removed since). */
static const struct kv_auth_user *principal_user(const struct node *n,
                                                 const struct node_principal *p)
{
    if (!p->authenticated || !n->kv) return NULL;
    return kv_auth_find(n->kv, p->name, strlen(p->name));
}

bool node_auth_is_admin(const struct node *n, const struct node_principal *p)
{
    if (!n->cfg.auth) return true;
    const struct kv_auth_user *u = principal_user(n, p);
    return u && u->role == KV_AUTH_ADMIN;
}

bool node_auth_key_allowed(const struct node *n, const struct node_principal *p, bool write,
                           const uint8_t *key, size_t len)
{
    if (!n->cfg.auth) return true;
    const struct kv_auth_user *u = principal_user(n, p);
    return u && kv_auth_key_allowed(u, write, key, len);
}

bool node_auth_range_allowed(const struct node *n, const struct node_principal *p,
                             const uint8_t *prefix, size_t prefix_len, const uint8_t *start,
                             size_t start_len, const uint8_t *end, size_t end_len)
{
    if (!n->cfg.auth) return true;
    const struct kv_auth_user *u = principal_user(n, p);
    return u && kv_auth_range_allowed(u, prefix, prefix_len, start, start_len, end, end_len);
}

void node_auth_stats_get(const struct node *n, struct node_auth_stats *out)
{
    if (n->auth)
        *out = n->auth->stats;
    else
        memset(out, 0, sizeof *out);
}

/* ------------------------------------------------------------ user table */

const char *node_auth_role_name(uint8_t role)
{
    return kv_auth_role_name(role);
}

uint8_t node_auth_role_parse(const char *s, size_t len)
{
    return kv_auth_role_parse(s, len);
}

static void user_info(const struct kv_auth_user *u, struct node_user_info *out)
{
    memcpy(out->name, u->name, sizeof out->name);
    out->role = u->role;
    out->version = u->version;
    out->n_prefixes = u->n_prefixes;
    for (uint32_t i = 0; i < u->n_prefixes; i++) {
        out->prefix_len[i] = u->prefix_len[i];
        memcpy(out->prefix[i], u->prefix_bytes + u->prefix_off[i], u->prefix_len[i]);
    }
}

uint32_t node_auth_user_count(const struct node *n)
{
    return n->kv ? kv_auth_count(n->kv) : 0;
}

int node_auth_user_at(const struct node *n, uint32_t i, struct node_user_info *out)
{
    if (!n->kv || i >= kv_auth_count(n->kv)) return ST_ENOENT;
    user_info(kv_auth_at(n->kv, i), out);
    return 0;
}

int node_auth_user_get(const struct node *n, const char *name, size_t len,
                       struct node_user_info *out)
{
    const struct kv_auth_user *u = n->kv ? kv_auth_find(n->kv, name, len) : NULL;
    if (!u) return ST_ENOENT;
    user_info(u, out);
    return 0;
}

/* One change in flight: the caller's callback. */
struct auth_op {
    node_auth_write_cb cb;
    void *ctx;
};

static void op_done_cb(void *ctx, const struct node_write_result *res)
{
    struct auth_op *op = ctx;
    node_auth_write_cb cb = op->cb;
    void *cctx = op->ctx;
    free(op);
    if (cb) cb(cctx, res->status);
}

/* Proposes u (PUT with cond) or the deletion of u->name. */
static int propose(struct node *n, enum kv_cmd_type type, const struct kv_auth_user *u,
                   enum kv_cond cond, uint64_t cond_version, node_auth_write_cb cb, void *ctx)
{
    uint8_t rec[KV_AUTH_RECORD_BYTES_MAX];
    size_t len = 0;
    int rc;
    if (type == KV_CMD_AUTH_USER_PUT) {
        rc = kv_auth_record_encode(u, rec, sizeof rec, &len);
        if (rc) return rc;
    } else {
        len = u->name_len;
        memcpy(rec, u->name, len);
    }
    struct auth_op *op = calloc(1, sizeof *op);
    if (!op) return ST_ENOMEM;
    op->cb = cb;
    op->ctx = ctx;
    struct kv_command cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.type = type;
    cmd.cond = cond;
    cmd.cond_version = cond == KV_COND_IF_VERSION ? cond_version : 0;
    cmd.value = rec;
    cmd.value_len = (uint32_t)len;
    rc = node_client_submit(n, &cmd, op_done_cb, op);
    if (rc) free(op);
    return rc;
}

int node_auth_user_add(struct node *n, const char *name, size_t name_len, uint8_t role,
                       const uint8_t *const *prefixes, const size_t *prefix_lens,
                       uint32_t n_prefixes, char *token_out, size_t cap, node_auth_write_cb cb,
                       void *ctx)
{
    if (!kv_auth_name_valid(name, name_len) || !kv_auth_role_name(role) ||
        n_prefixes > KV_AUTH_PREFIXES_MAX)
        return ST_EINVAL;
    struct kv_auth_user *u = calloc(1, sizeof *u);
    if (!u) return ST_ENOMEM;
    u->name_len = (uint8_t)name_len;
    memcpy(u->name, name, name_len);
    u->role = role;
    int rc = 0;
    for (uint32_t i = 0; i < n_prefixes && rc == 0; i++)
        rc = kv_auth_user_add_prefix(u, prefixes[i], prefix_lens[i]);
    if (rc == 0) rc = credential_new(u, token_out, cap);
    if (rc == 0) rc = propose(n, KV_CMD_AUTH_USER_PUT, u, KV_COND_IF_ABSENT, 0, cb, ctx);
    OPENSSL_cleanse(u, sizeof *u);
    free(u);
    return rc;
}

/* A copy of the current record of name, to change and propose with
 * IF_VERSION (a concurrent change makes it fail with ST_EPRECONDITION). */
static int user_copy(const struct node *n, const char *name, size_t len, struct kv_auth_user **out)
{
    const struct kv_auth_user *cur = n->kv ? kv_auth_find(n->kv, name, len) : NULL;
    if (!cur) return ST_ENOENT;
    *out = malloc(sizeof **out);
    if (!*out) return ST_ENOMEM;
    **out = *cur;
    return 0;
}

int node_auth_user_token(struct node *n, const char *name, size_t name_len, char *token_out,
                         size_t cap, node_auth_write_cb cb, void *ctx)
{
    struct kv_auth_user *u;
    int rc = user_copy(n, name, name_len, &u);
    if (rc) return rc;
    rc = credential_new(u, token_out, cap);
    if (rc == 0) rc = propose(n, KV_CMD_AUTH_USER_PUT, u, KV_COND_IF_VERSION, u->version, cb, ctx);
    OPENSSL_cleanse(u, sizeof *u);
    free(u);
    return rc;
}

int node_auth_user_set(struct node *n, const char *name, size_t name_len, uint8_t role,
                       const uint8_t *add, size_t add_len, const uint8_t *remove, size_t remove_len,
                       node_auth_write_cb cb, void *ctx)
{
    if (role && !kv_auth_role_name(role)) return ST_EINVAL;
    struct kv_auth_user *u;
    int rc = user_copy(n, name, name_len, &u);
    if (rc) return rc;
    if (role) u->role = role;
    if (add) rc = kv_auth_user_add_prefix(u, add, add_len);
    if (rc == 0 && remove) rc = kv_auth_user_remove_prefix(u, remove, remove_len);
    if (rc == 0) rc = propose(n, KV_CMD_AUTH_USER_PUT, u, KV_COND_IF_VERSION, u->version, cb, ctx);
    free(u);
    return rc;
}

int node_auth_user_delete(struct node *n, const char *name, size_t name_len, node_auth_write_cb cb,
                          void *ctx)
{
    if (!kv_auth_name_valid(name, name_len)) return ST_EINVAL;
    struct kv_auth_user u;
    memset(&u, 0, offsetof(struct kv_auth_user, prefix_bytes));
    u.name_len = (uint8_t)name_len;
    memcpy(u.name, name, name_len);
    return propose(n, KV_CMD_AUTH_USER_DELETE, &u, KV_COND_NONE, 0, cb, ctx);
}

/* ---------------------------------------------------------- first admin */

static void init_admin_done_cb(void *ctx, int status)
{
    struct node *n = ctx;
    if (!n->auth) return;
    n->auth->init_admin_inflight = false;
    if (status == 0)
        ST_TRACE_INFO(MOD, "node %" PRIu64 ": the initial admin user was created", n->cfg.id);
}

void node_auth_tick(struct node *n)
{
    struct node_auth *a = n->auth;
    if (!a || !a->init_admin || !n->kv) return;
    if (kv_auth_count(n->kv) > 0) {
        a->init_admin = false; /* once: a table with users is the operators' from now on */
        return;
    }
    if (a->init_admin_inflight || n->role != RAFT_LEADER) return;
    /* Only once this leader has applied all it committed: an earlier
     * leader's admin entry may still be on its way to apply. */
    raft_index commit = raft_commit_index(n->raft);
    if (commit == 0 || n->applied < commit) return;
    if (propose(n, KV_CMD_AUTH_USER_PUT, &a->init_user, KV_COND_IF_ABSENT, 0, init_admin_done_cb,
                n) == 0)
        a->init_admin_inflight = true;
}
