/* kv commands: the payload of a raft log entry that the state machine applies.
 *
 * A node builds a struct kv_command for a client request, encodes it with
 * kv_command_encode() into the data of a raft entry, and every replica decodes
 * and applies it with kv_apply() (kv.h). The byte format is written down in
 * docs/KV.md; all integers are little-endian.
 *
 *   common header (32 bytes)
 *     u8  format version: 1, or 2 when an idempotency block follows the header
 *     u8  type        (enum kv_cmd_type)
 *     u8  condition   (enum kv_cond)
 *     u8  reserved    (0)
 *     u32 reserved    (0)
 *     u64 request id: node id of the proposer
 *     u64 request id: sequence number at the proposer
 *     u64 timestamp_ms: proposer's wall clock, assigned once at proposal
 *   idempotency block (version 2 only; PUT and DELETE only)
 *     u8  idem key length K (1..KV_IDEM_KEY_BYTES_MAX)
 *     u8  reserved (0) x3
 *     u32 keys_max: records the table keeps (>= 1), applied at this insert
 *     u64 ttl_ms: the record lives until log clock + ttl_ms (>= 1)
 *     K bytes of idempotency key
 *   PUT    : u64 ttl_ms (0 = no expiry), u64 cond_version, u32 key_len, u32 value_len, key, value
 *   DELETE : u64 cond_version, u32 key_len, key
 *   PURGE_EXPIRED : u32 keys_max (0 = no bound)
 *   EVICT  : u32 n (1..KV_EVICT_KEYS_MAX), then n x (u64 version, u32 key_len, key)
 *   REFUSE : u32 reason (KV_REFUSE_*)
 *   TXN    : (version 4) u32 value_bytes_max, u16 guards, u16 success ops,
 *            u16 failure ops, u16 reserved, then the items (kv/txn.h)
 *   PUBLISH: (version 8) u32 channel_len, u32 message_len, channel, message
 *
 * Format versions: 2 added EVICT and REFUSE. An encoder writes the lowest version that
 * expresses the command (1 for PUT, DELETE and PURGE_EXPIRED, 2 for EVICT),
 * so a cluster that never evicts stays readable by version-1 nodes; decode
 * accepts 1 and 2 (EVICT only with 2).
 *
 * The timestamp is the only clock that enters the replicated state: a PUT with
 * ttl_ms expires at timestamp_ms + ttl_ms; PURGE_EXPIRED deletes keys whose
 * expiry <= its timestamp_ms. Conditions are evaluated when the entry applies.
 *
 * Limits. kv_command_decode() takes the configured limits (key_bytes_max,
 * value_bytes_max). The node checks them when it accepts a client request.
 * kv_apply() decodes with the hard limits only (KV_KEY_BYTES_HARD_MAX), so a
 * replica whose local configuration differs never rejects an entry the others
 * applied: determinism does not depend on local configuration. */
#ifndef ST_KV_COMMAND_H
#define ST_KV_COMMAND_H

#include <stddef.h>
#include <stdint.h>

#include "kv/txn.h"

/* Format versions: 1 = PUT, DELETE, PURGE_EXPIRED; 2 = also EVICT and
 * REFUSE; 3 = an idempotency block follows the header (a PUT or DELETE with
 * an Idempotency-Key). An encoder writes the lowest version that holds the
 * command, so a cluster that uses neither feature writes version 1. */
#define KV_COMMAND_VERSION 8       /* the newest format version */
#define KV_COMMAND_VERSION_EVICT 2 /* the first version with EVICT and REFUSE */
#define KV_COMMAND_VERSION_IDEM 3  /* with an idempotency block */
#define KV_COMMAND_VERSION_TXN 4   /* TXN (kv/txn.h); never with an idempotency block */
#define KV_COMMAND_VERSION_AUTH 5  /* the auth commands (KV_CMD_AUTH_*) */
/* A TXN with a hash op or KV_TXN_F_STRING (kv/txn.h); TXN only. */
#define KV_COMMAND_VERSION_HASH 6
/* The session commands (KV_CMD_SESSION_*, KV_CMD_PUT_SESSION; kv_session.h). */
#define KV_COMMAND_VERSION_SESSION 7
/* PUBLISH. */
#define KV_COMMAND_VERSION_PUBLISH 8
#define KV_EVICT_KEYS_MAX 1024u /* keys per EVICT command */
#define KV_COMMAND_HEADER_BYTES 32
#define KV_COMMAND_IDEM_FIXED_BYTES 16
#define KV_IDEM_KEY_BYTES_MAX 128u
#define KV_KEY_BYTES_MAX_DEFAULT 1024u
#define KV_VALUE_BYTES_MAX_DEFAULT (1024u * 1024u)
/* Structural bounds enforced by every decode, whatever the configuration. */
#define KV_KEY_BYTES_HARD_MAX 65535u
#define KV_VALUE_BYTES_HARD_MAX (256u * 1024u * 1024u)

enum kv_cmd_type {
    KV_CMD_PUT = 1,
    KV_CMD_DELETE = 2,
    KV_CMD_PURGE_EXPIRED = 3,
    /* Removes each listed key whose version still is the listed one (a key
     * rewritten since the leader chose it stays). Decided by the leader
     * under --max-memory, applied alike by every replica. */
    KV_CMD_EVICT = 4,
    /* Changes nothing; answers the proposer of the write it replaces (same
     * request id) with a refusal. A leader puts it in place of a write a
     * follower forwarded and the leader refuses (--max-memory). */
    KV_CMD_REFUSE = 5,
    /* Guards, then success or failure ops, applied as one entry
     * (kv/txn.h). Format version 4 only. */
    KV_CMD_TXN = 6,
    /* The auth table (kv/kv_auth.h), format version 5 only. Payload: u64
     * cond_version, u32 length L, L bytes in value/value_len: a user
     * record (PUT: creates or replaces; cond NONE, IF_ABSENT or
     * IF_VERSION of the user's version) or a user name (DELETE; cond NONE
     * or IF_VERSION). Types 16.. are kept for auth. */
    KV_CMD_AUTH_USER_PUT = 16,
    KV_CMD_AUTH_USER_DELETE = 17,
    /* Sessions (kv/kv_session.h), format version 7 only; types 24..31 are
     * kept for them. Payloads:
     *   SESSION_CREATE : u64 ttl_ms, u32 sessions_max, u32 name length N, N bytes
     *   SESSION_DESTROY: u64 session id, u32 reason (enum kv_session_end)
     *   PUT_SESSION    : u64 session id, then the PUT payload (conditions as PUT) */
    KV_CMD_SESSION_CREATE = 24,
    KV_CMD_SESSION_DESTROY = 25,
    KV_CMD_PUT_SESSION = 26,
    /* A pub/sub message (Redis PUBLISH), format version 8 only: changes no
     * state; applying it reports a KV_EVENT_MESSAGE (kv.h) with the channel
     * in key/key_len and the message in value/value_len, so every replica's
     * front ends deliver it to their subscribers, in log order. cond NONE. */
    KV_CMD_PUBLISH = 40,
};

enum kv_refuse_reason {
    KV_REFUSE_MEMORY = 1, /* the memory limit: HTTP 507 out_of_memory */
};

/* One key of an EVICT command (encode side). */
struct kv_evict_key {
    const uint8_t *key;
    uint32_t key_len;
    uint64_t version;
};

enum kv_cond {
    KV_COND_NONE = 0,
    KV_COND_IF_VERSION = 1, /* applies only if the live key's version == cond_version */
    KV_COND_IF_ABSENT = 2,  /* PUT only: applies only if the key is absent (or expired) */
};

/* Identifies a client request across forwarding: the proposer's node id and a
 * sequence number unique at that node. Echoed in struct kv_result. */
struct kv_request_id {
    uint64_t node_id;
    uint64_t seq;
};

/* A decoded or to-be-encoded command. key/value point into the caller's
 * buffer (encode) or into the decoded bytes (decode): no copies are made. */
struct kv_command {
    enum kv_cmd_type type;
    enum kv_cond cond;
    struct kv_request_id req;
    uint64_t timestamp_ms;
    uint64_t ttl_ms;       /* PUT: 0 = never expires */
    uint64_t cond_version; /* KV_COND_IF_VERSION only */
    uint32_t keys_max;     /* PURGE_EXPIRED: max keys deleted by one entry, 0 = all */
    uint32_t reason;       /* REFUSE: enum kv_refuse_reason; SESSION_DESTROY: kv_session_end */
    /* SESSION_DESTROY, PUT_SESSION: the session; SESSION_CREATE: ttl_ms is
     * its TTL, keys_max the table bound (sessions_max), value its name. */
    uint64_t session_id;
    const uint8_t *key;
    uint32_t key_len;
    const uint8_t *value;
    uint32_t value_len;
    /* PUT: enum kv_value_type of the value. Never encoded (a PUT on the
     * wire is a string; decode leaves 0): the TXN hash ops set it when
     * they write through the PUT path. */
    uint8_t value_type;
    /* EVICT: evict_n keys; encode reads evict_keys, decode sets evict_raw
     * (the validated list bytes, walked with kv_evict_next) instead. */
    uint32_t evict_n;
    const struct kv_evict_key *evict_keys;
    const uint8_t *evict_raw;
    size_t evict_raw_len;
    /* Idempotency (PUT, DELETE): idem_key_len 0 = none. The retention
     * bounds travel with the command so that every replica trims the table
     * alike whatever its local configuration (kv.h, "Idempotency"). */
    const uint8_t *idem_key;
    uint32_t idem_key_len;  /* 0..KV_IDEM_KEY_BYTES_MAX */
    uint32_t idem_keys_max; /* >= 1 when idem_key_len > 0 */
    uint64_t idem_ttl_ms;   /* >= 1 when idem_key_len > 0 */
    /* TXN: the counts of guards, success and failure ops; encode reads
     * txn_items (guards, then success, then failure), decode sets txn_raw
     * (the validated item bytes, walked with kv_txn_next) instead.
     * txn_value_bytes_max bounds the values its ops build (APPEND,
     * SETRANGE): the proposer's limit travels with the command so every
     * replica decides alike. */
    uint32_t txn_guards, txn_success, txn_failure;
    uint32_t txn_value_bytes_max;
    const struct kv_txn_item *txn_items;
    const uint8_t *txn_raw;
    size_t txn_raw_len;
};

/* Walks a decoded EVICT list: reads the key at *pos of cmd->evict_raw into
 * *out and advances *pos. Returns 1, or 0 past the end. */
int kv_evict_next(const struct kv_command *cmd, size_t *pos, struct kv_evict_key *out);

/* Walks a decoded TXN's items (guards, success ops, failure ops, in that
 * order): reads the item at *pos of cmd->txn_raw into *out and advances
 * *pos. Returns 1, or 0 past the end. */
int kv_txn_next(const struct kv_command *cmd, size_t *pos, struct kv_txn_item *out);

/* txn_codec.c, for command.c: the TXN body after the common header. */
size_t kv_txn_body_len(const struct kv_command *cmd);
int kv_txn_body_check(const struct kv_command *cmd); /* 0 or -1 */
void kv_txn_body_encode(const struct kv_command *cmd, uint8_t *p);
/* Validates p[0..rest) and sets the TXN fields of out; 0, ST_EPROTO or
 * ST_ETOOBIG. */
int kv_txn_body_decode(const uint8_t *p, size_t rest, struct kv_command *out);
/* 1 if a TXN needs format version 6 (a hash op or KV_TXN_F_STRING). */
int kv_txn_needs_hash_version(const struct kv_command *cmd);

struct kv_limits {
    uint32_t key_bytes_max; /* >= 1 */
    uint32_t value_bytes_max;
};

/* Fills limits with the defaults above. */
void kv_limits_default(struct kv_limits *limits);

/* Bytes kv_command_encode() will write for cmd. */
size_t kv_command_encoded_len(const struct kv_command *cmd);

/* Encodes cmd into buf[0..cap). Returns 0 and sets *out_len, ST_EINVAL if cmd
 * is not well formed (unknown type, a condition the type does not allow, a key
 * of 0 bytes or above the hard limit), ST_ETOOBIG if cap is too small. */
int kv_command_encode(const struct kv_command *cmd, uint8_t *buf, size_t cap, size_t *out_len);

/* Decodes data[0..len). limits may be NULL (hard limits only). On success
 * fills *out, whose key/value point into data (valid while data is).
 * Returns ST_EPROTO for any malformed input (bad version/type/condition,
 * nonzero reserved bytes, lengths that disagree with len) and ST_ETOOBIG for a
 * key or value above the limits. *out is unspecified on error. */
int kv_command_decode(const uint8_t *data, size_t len, const struct kv_limits *limits,
                      struct kv_command *out);

/* Rewrites the timestamp_ms of the encoded command data[0..len) in place (the
 * leader stamps every command it appends: docs/KV.md, "Time"). Returns 0, or
 * ST_EPROTO (nothing written) if data is too short or of an unknown version;
 * the rest of the command is not checked (apply does that). */
int kv_command_restamp(uint8_t *data, size_t len, uint64_t timestamp_ms);

#endif
