/* kv auth: the replicated table of users, their roles, key prefixes and
 * credential hashes (docs/SECURITY.md, "Authentication and authorisation";
 * byte formats in docs/KV.md, "Auth table").
 *
 * The table is a separate part of the state machine, beside the keys: it is
 * changed only by KV_CMD_AUTH_USER_PUT / KV_CMD_AUTH_USER_DELETE entries
 * through kv_apply(), carried by snapshots (a section after the keys), and
 * never visible to key listing, eviction, expiry, digest-of-keys or FLUSHALL.
 * It holds no secret: only the salt and the KDF output of each user's token
 * (computed by the proposing node; randomness never enters apply).
 *
 * A user has one role and up to KV_AUTH_PREFIXES_MAX key prefixes:
 *   admin      every key and every route (membership, snapshots, users)
 *   readwrite  read and write keys
 *   readonly   read keys
 * With prefixes, a non-admin role applies only to keys that begin with one
 * of them; without, to every key. (etcd's role permissions on key ranges,
 * narrowed to prefixes: a grant = the user's role over one prefix.)
 *
 * Threading: none, like the kv. Records returned by lookups stay valid until
 * the next kv_apply of an auth command, restore finish or kv_destroy; the
 * generation (kv_auth_generation) changes whenever that can happen. */
#ifndef ST_KV_KV_AUTH_H
#define ST_KV_KV_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kv;

#define KV_AUTH_NAME_BYTES_MAX 64u    /* user names: [A-Za-z0-9_-]{1,64} */
#define KV_AUTH_PREFIXES_MAX 16u      /* key prefixes per user */
#define KV_AUTH_PREFIX_BYTES_MAX 256u /* one prefix */
#define KV_AUTH_USERS_MAX 1024u       /* users in the table */
#define KV_AUTH_SALT_BYTES 16u
#define KV_AUTH_HASH_BYTES 32u
#define KV_AUTH_KDF_ITERATIONS_MAX 10000000u
#define KV_AUTH_RECORD_FIXED_BYTES 56u /* before the name */
/* The largest encoded record (name and prefixes at their bounds). */
#define KV_AUTH_RECORD_BYTES_MAX                                                                   \
    (KV_AUTH_RECORD_FIXED_BYTES + KV_AUTH_NAME_BYTES_MAX +                                         \
     KV_AUTH_PREFIXES_MAX * (2u + KV_AUTH_PREFIX_BYTES_MAX))

enum kv_auth_role {
    KV_AUTH_ADMIN = 1,
    KV_AUTH_READWRITE = 2,
    KV_AUTH_READONLY = 3,
};

/* One user. Prefixes live in prefix_bytes at prefix_off[i], prefix_len[i]. */
struct kv_auth_user {
    uint64_t version; /* the index of the entry that last wrote it (table only) */
    uint32_t kdf_iterations;
    uint8_t role; /* enum kv_auth_role */
    uint8_t n_prefixes;
    uint8_t name_len;
    char name[KV_AUTH_NAME_BYTES_MAX + 1]; /* NUL-terminated */
    uint8_t salt[KV_AUTH_SALT_BYTES];
    uint8_t hash[KV_AUTH_HASH_BYTES];
    uint16_t prefix_off[KV_AUTH_PREFIXES_MAX];
    uint16_t prefix_len[KV_AUTH_PREFIXES_MAX];
    uint8_t prefix_bytes[KV_AUTH_PREFIXES_MAX * KV_AUTH_PREFIX_BYTES_MAX];
};

/* "admin", "readwrite", "readonly"; NULL for another value. */
const char *kv_auth_role_name(uint8_t role);
/* The role named s[0, len), or 0. */
uint8_t kv_auth_role_parse(const char *s, size_t len);
/* 1 if name[0, len) is a valid user name. */
bool kv_auth_name_valid(const char *name, size_t len);

/* Adds prefix p[0, len) to u (a duplicate is not added twice). Returns 0,
 * or ST_EINVAL (empty, too long, or KV_AUTH_PREFIXES_MAX reached). */
int kv_auth_user_add_prefix(struct kv_auth_user *u, const uint8_t *p, size_t len);
/* Removes prefix p from u. Returns 0 or ST_ENOENT. */
int kv_auth_user_remove_prefix(struct kv_auth_user *u, const uint8_t *p, size_t len);

/* The record codec (docs/KV.md, "Auth table"), shared by the command payload
 * and the snapshot section. encode: 0 and *out_len, ST_EINVAL (a field out of
 * its bounds), ST_ETOOBIG (cap). decode: 0 and *out (version 0), ST_EPROTO. */
int kv_auth_record_encode(const struct kv_auth_user *u, uint8_t *buf, size_t cap, size_t *out_len);
int kv_auth_record_decode(const uint8_t *p, size_t len, struct kv_auth_user *out);

/* Lookups in the applied table. */
const struct kv_auth_user *kv_auth_find(const struct kv *kv, const char *name, size_t len);
uint32_t kv_auth_count(const struct kv *kv);
/* The i-th user in name order (i < kv_auth_count). */
const struct kv_auth_user *kv_auth_at(const struct kv *kv, uint32_t i);
/* A number that changes whenever the table may have changed (every applied
 * auth command, every restore). Local: not part of the replicated state. */
uint64_t kv_auth_generation(const struct kv *kv);

/* Whether u may read (write = false) or write key[0, len). */
bool kv_auth_key_allowed(const struct kv_auth_user *u, bool write, const uint8_t *key, size_t len);
/* Whether u may read every key a listing could return: keys that begin with
 * prefix (len 0: any) and lie in [start, end) (end_len 0: unbounded). True
 * when one of u's prefixes (or none: all keys) covers that whole range. */
bool kv_auth_range_allowed(const struct kv_auth_user *u, const uint8_t *prefix, size_t prefix_len,
                           const uint8_t *start, size_t start_len, const uint8_t *end,
                           size_t end_len);

#endif
