/* kv sessions: the replicated table of client sessions and the keys
 * attached to them (docs/KV.md, "Sessions"; recipes in docs/RECIPES.md).
 *
 * Built as Consul builds sessions (and etcd leases), adapted to the log:
 *   - KV_CMD_SESSION_CREATE makes a session whose id is the raft index of
 *     that entry (deterministic, strictly increasing), with a TTL and a
 *     name. The table holds at most the creating command's sessions_max
 *     sessions (the proposer's --max-sessions travels with the command, so
 *     every replica refuses alike).
 *   - KV_CMD_PUT_SESSION is a PUT that also attaches the key to a session:
 *     the session records (key, version) where version is the index of that
 *     PUT. It changes nothing when the session does not exist.
 *   - KV_CMD_SESSION_DESTROY ends a session (explicitly, or because the
 *     leader saw its deadline pass) and, in the same apply, deletes each
 *     attached key whose version still equals the attached version: a key
 *     rewritten since stays. No per-key field is added to the entries.
 *
 * Liveness is not in the state: the TTL recorded here is what the leader
 * uses to keep a deadline in memory (node/node_session.c); no clock is read
 * at apply. A session holds at most KV_SESSION_KEYS_MAX attachments; an
 * attachment whose key was rewritten or deleted since is dropped when room
 * is needed.
 *
 * Threading: none, like the kv. Records returned by lookups stay valid
 * until the next kv_apply, restore finish or kv_destroy. */
#ifndef ST_KV_KV_SESSION_H
#define ST_KV_KV_SESSION_H

#include <stddef.h>
#include <stdint.h>

struct kv;

#define KV_SESSION_TTL_MS_MIN 1000u       /* 1 s */
#define KV_SESSION_TTL_MS_MAX 3600000u    /* 1 h */
#define KV_SESSION_NAME_BYTES_MAX 128u    /* any bytes */
#define KV_SESSION_KEYS_MAX 64u           /* attachments per session */
#define KV_SESSIONS_HARD_MAX 65536u       /* sessions_max of any command */
#define KV_SESSIONS_MAX_DEFAULT 4096u     /* --max-sessions */
#define KV_SESSION_RECORD_FIXED_BYTES 24u /* snapshot record, before name and keys */
#define KV_SESSION_KEY_FIXED_BYTES 12u    /* snapshot attachment, before the key */

/* Why a session ended (SESSION_DESTROY reason). */
enum kv_session_end {
    KV_SESSION_END_DESTROYED = 1, /* DELETE /session/ID: keys deleted (KV_EVENT_DELETE) */
    KV_SESSION_END_EXPIRED = 2,   /* the leader saw its TTL pass: keys expire (KV_EVENT_EXPIRE) */
};

struct kv_session_key {
    uint64_t version; /* the index of the PUT that attached it */
    uint32_t key_len;
    uint8_t key[];
};

struct kv_session {
    uint64_t id;     /* the index of its SESSION_CREATE */
    uint64_t ttl_ms; /* KV_SESSION_TTL_MS_MIN..MAX */
    uint32_t name_len;
    uint32_t n_keys;
    char name[KV_SESSION_NAME_BYTES_MAX + 1]; /* NUL-terminated (may hold NULs) */
    struct kv_session_key *keys[KV_SESSION_KEYS_MAX];
};

/* Sessions in the applied table, in id order. */
uint32_t kv_session_count(const struct kv *kv);
const struct kv_session *kv_session_at(const struct kv *kv, uint32_t i); /* i < count */
/* The session with this id, or NULL. O(log n). */
const struct kv_session *kv_session_find(const struct kv *kv, uint64_t id);

#endif
