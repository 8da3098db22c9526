/* Client authentication and authorisation on a node (docs/SECURITY.md,
 * "Authentication and authorisation"): the one place every front end (HTTP
 * API, Redis protocol) asks "who is this" and "may they".
 *
 * Credentials are bearer tokens "<user>.<secret>" (the secret: base64url of
 * NODE_AUTH_SECRET_BYTES random bytes). The replicated user table
 * (kv/kv_auth.h) stores only a random salt and PBKDF2-HMAC-SHA256(secret,
 * salt, iterations), computed by the node that proposes the change; a token
 * is checked by running the KDF and comparing with CRYPTO_memcmp. Verified
 * tokens are remembered in a bounded per-node cache keyed by SHA-256 of the
 * token (NODE_AUTH_CACHE_ENTRIES_MAX entries, direct-mapped), emptied
 * whenever the table changes at apply or is replaced by a snapshot, so the
 * KDF runs about once per token per node and a removed user or a rotated
 * token stops working at the index that changed it. Tokens are never
 * logged.
 *
 * Roles (kv_auth.h): admin (everything), readwrite, readonly, each
 * optionally limited to key prefixes.
 *
 * Threading: the node's loop thread. */
#ifndef ST_NODE_AUTH_H
#define ST_NODE_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct node;

#define NODE_AUTH_NAME_BYTES_MAX 64u  /* == KV_AUTH_NAME_BYTES_MAX */
#define NODE_AUTH_SECRET_BYTES 32u    /* random bytes in a generated token */
#define NODE_AUTH_SECRET_CHARS_MIN 22 /* a given token's secret: >= 128 bits of base64url */
#define NODE_AUTH_TOKEN_BYTES_MAX 256u
#define NODE_AUTH_CACHE_ENTRIES_MAX 1024u
#define NODE_AUTH_KDF_ITERATIONS 1000u
#define NODE_AUTH_PREFIXES_MAX 16u /* == KV_AUTH_PREFIXES_MAX */
#define NODE_AUTH_PREFIX_BYTES_MAX 256u

enum node_role {
    NODE_ROLE_NONE = 0,
    NODE_ROLE_ADMIN = 1,
    NODE_ROLE_READWRITE = 2,
    NODE_ROLE_READONLY = 3,
};

/* Who sent a request. With --auth off every request is the implicit admin
 * (authenticated = true, role admin, name ""). */
struct node_principal {
    bool authenticated;
    uint8_t role; /* enum node_role */
    char name[NODE_AUTH_NAME_BYTES_MAX + 1];
};

/* True when the node checks credentials (--auth). */
bool node_auth_enabled(const struct node *n);

/* The principal of a request with no credential: the implicit admin with
 * --auth off, else unauthenticated. */
void node_auth_anonymous(const struct node *n, struct node_principal *out);

/* Checks a bearer token. Returns 0 and fills *out, or ST_EPERM for a
 * malformed token, an unknown user or a wrong secret alike (nothing tells
 * them apart but the time taken). With --auth off: 0 and the implicit admin
 * for any token. */
int node_auth_token(struct node *n, const char *token, size_t len, struct node_principal *out);

/* The principal of user name[0, len) (a verified client certificate's
 * name, TLS on the client port): 0 and *out, or ST_EPERM when no such user
 * exists. With --auth off: 0 and the implicit admin. */
int node_auth_user_principal(const struct node *n, const char *name, size_t len,
                             struct node_principal *out);

/* Whether p may read (write false) or write the key (false for an
 * unauthenticated p; reads the current table: a user removed since p was
 * resolved is refused). */
bool node_auth_key_allowed(const struct node *n, const struct node_principal *p, bool write,
                           const uint8_t *key, size_t len);
/* Whether p may read every key of a listing (kv_auth_range_allowed). */
bool node_auth_range_allowed(const struct node *n, const struct node_principal *p,
                             const uint8_t *prefix, size_t prefix_len, const uint8_t *start,
                             size_t start_len, const uint8_t *end, size_t end_len);
/* Whether p is an admin (membership, snapshots, users, FLUSHALL). */
bool node_auth_is_admin(const struct node *n, const struct node_principal *p);

/* ---- the user table, for the admin routes ---- */

struct node_user_info {
    char name[NODE_AUTH_NAME_BYTES_MAX + 1];
    uint8_t role;
    uint64_t version; /* the index that last wrote the user */
    uint32_t n_prefixes;
    uint16_t prefix_len[NODE_AUTH_PREFIXES_MAX];
    uint8_t prefix[NODE_AUTH_PREFIXES_MAX][NODE_AUTH_PREFIX_BYTES_MAX];
};
uint32_t node_auth_user_count(const struct node *n);
/* The i-th user in name order (i < count): 0, or ST_ENOENT. */
int node_auth_user_at(const struct node *n, uint32_t i, struct node_user_info *out);
/* The user named name[0, len): 0, or ST_ENOENT. */
int node_auth_user_get(const struct node *n, const char *name, size_t len,
                       struct node_user_info *out);

/* "admin", "readwrite", "readonly" <-> enum node_role (0 if unknown). */
const char *node_auth_role_name(uint8_t role);
uint8_t node_auth_role_parse(const char *s, size_t len);

/* Changes to the table, proposed through Raft like a write (forwarded to the
 * leader by a follower); cb (node_write_cb of node.h) runs once the entry
 * applied: status 0, ST_EPRECONDITION (add: the user exists; others: the
 * user changed meanwhile: retry), ST_ENOENT (no such user), or a write's
 * errors. Each returns 0 (cb will run) or at once ST_EINVAL (a bad name,
 * role or prefix), ST_ENOENT (no such user here), ST_ENOMEM, or a write's
 * refusals.
 *
 * add: a new user with a fresh token written to token_out (cap >=
 * NODE_AUTH_TOKEN_BYTES_MAX; valid once cb reports 0; shown once: only its
 * hash is kept). token: a new token for an existing user (the old one stops
 * working when the entry applies). set: changes the role (0 = keep), adds
 * and/or removes one prefix (NULL = none). */
typedef void (*node_auth_write_cb)(void *ctx, int status);
int node_auth_user_add(struct node *n, const char *name, size_t name_len, uint8_t role,
                       const uint8_t *const *prefixes, const size_t *prefix_lens,
                       uint32_t n_prefixes, char *token_out, size_t cap, node_auth_write_cb cb,
                       void *ctx);
int node_auth_user_token(struct node *n, const char *name, size_t name_len, char *token_out,
                         size_t cap, node_auth_write_cb cb, void *ctx);
int node_auth_user_set(struct node *n, const char *name, size_t name_len, uint8_t role,
                       const uint8_t *add, size_t add_len, const uint8_t *remove, size_t remove_len,
                       node_auth_write_cb cb, void *ctx);
int node_auth_user_delete(struct node *n, const char *name, size_t name_len, node_auth_write_cb cb,
                          void *ctx);

/* Counters for /metrics. */
struct node_auth_stats {
    uint64_t verified;     /* tokens checked with the KDF and accepted */
    uint64_t cache_hits;   /* tokens accepted from the cache */
    uint64_t refused;      /* tokens refused */
    uint64_t cache_resets; /* the cache emptied after the table changed */
};
void node_auth_stats_get(const struct node *n, struct node_auth_stats *out);

#endif
