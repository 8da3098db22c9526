/* kv command codec: see command.h and docs/KV.md for the byte format. */
#include "kv/command.h"

#include <stdbool.h>
#include <string.h>

#include "stcache/errors.h"
#include "kv/kv_session.h"
#include "util/assert.h"

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

void kv_limits_default(struct kv_limits *limits)
{
    limits->key_bytes_max = KV_KEY_BYTES_MAX_DEFAULT;
    limits->value_bytes_max = KV_VALUE_BYTES_MAX_DEFAULT;
}

/* Bytes after the common header, per type (without key/value bytes). */
enum {
    PUT_FIXED_BYTES = 8 + 8 + 4 + 4,
    DELETE_FIXED_BYTES = 8 + 4,
    PUBLISH_FIXED_BYTES = 4 + 4,
    PURGE_FIXED_BYTES = 4,
    EVICT_FIXED_BYTES = 4,
    EVICT_KEY_FIXED_BYTES = 8 + 4,
    REFUSE_FIXED_BYTES = 4,
    AUTH_FIXED_BYTES = 8 + 4,
    SESS_CREATE_FIXED_BYTES = 8 + 4 + 4,
    SESS_DESTROY_FIXED_BYTES = 8 + 4,
    SESS_ID_BYTES = 8,
};
/* The largest auth payload (a user record; a name is shorter). */
#define AUTH_PAYLOAD_BYTES_MAX 8192u

static int is_auth(enum kv_cmd_type t)
{
    return t == KV_CMD_AUTH_USER_PUT || t == KV_CMD_AUTH_USER_DELETE;
}

static int is_session(enum kv_cmd_type t)
{
    return t == KV_CMD_SESSION_CREATE || t == KV_CMD_SESSION_DESTROY || t == KV_CMD_PUT_SESSION;
}

/* The format version of cmd: the lowest that holds it. */
static uint8_t version_of(const struct kv_command *cmd)
{
    if (is_auth(cmd->type)) return KV_COMMAND_VERSION_AUTH;
    if (cmd->type == KV_CMD_PUBLISH) return KV_COMMAND_VERSION_PUBLISH;
    if (is_session(cmd->type)) return KV_COMMAND_VERSION_SESSION;
    if (cmd->type == KV_CMD_TXN)
        return kv_txn_needs_hash_version(cmd) ? KV_COMMAND_VERSION_HASH : KV_COMMAND_VERSION_TXN;
    if (cmd->idem_key_len) return KV_COMMAND_VERSION_IDEM;
    return cmd->type >= KV_CMD_EVICT ? KV_COMMAND_VERSION_EVICT : 1;
}

static size_t idem_bytes(const struct kv_command *cmd)
{
    return cmd->idem_key_len ? KV_COMMAND_IDEM_FIXED_BYTES + (size_t)cmd->idem_key_len : 0;
}

size_t kv_command_encoded_len(const struct kv_command *cmd)
{
    switch (cmd->type) {
    case KV_CMD_PUT:
        return KV_COMMAND_HEADER_BYTES + idem_bytes(cmd) + PUT_FIXED_BYTES + (size_t)cmd->key_len +
               cmd->value_len;
    case KV_CMD_DELETE:
        return KV_COMMAND_HEADER_BYTES + idem_bytes(cmd) + DELETE_FIXED_BYTES +
               (size_t)cmd->key_len;
    case KV_CMD_PURGE_EXPIRED:
        return KV_COMMAND_HEADER_BYTES + PURGE_FIXED_BYTES;
    case KV_CMD_EVICT: {
        size_t n = KV_COMMAND_HEADER_BYTES + EVICT_FIXED_BYTES;
        for (uint32_t i = 0; i < cmd->evict_n && cmd->evict_keys; i++)
            n += EVICT_KEY_FIXED_BYTES + (size_t)cmd->evict_keys[i].key_len;
        return n;
    }
    case KV_CMD_REFUSE:
        return KV_COMMAND_HEADER_BYTES + REFUSE_FIXED_BYTES;
    case KV_CMD_AUTH_USER_PUT:
    case KV_CMD_AUTH_USER_DELETE:
        return KV_COMMAND_HEADER_BYTES + AUTH_FIXED_BYTES + (size_t)cmd->value_len;
    case KV_CMD_TXN:
        return KV_COMMAND_HEADER_BYTES + kv_txn_body_len(cmd);
    case KV_CMD_PUBLISH:
        return KV_COMMAND_HEADER_BYTES + PUBLISH_FIXED_BYTES + (size_t)cmd->key_len +
               cmd->value_len;
    case KV_CMD_SESSION_CREATE:
        return KV_COMMAND_HEADER_BYTES + SESS_CREATE_FIXED_BYTES + (size_t)cmd->value_len;
    case KV_CMD_SESSION_DESTROY:
        return KV_COMMAND_HEADER_BYTES + SESS_DESTROY_FIXED_BYTES;
    case KV_CMD_PUT_SESSION:
        return KV_COMMAND_HEADER_BYTES + SESS_ID_BYTES + PUT_FIXED_BYTES + (size_t)cmd->key_len +
               cmd->value_len;
    }
    return 0;
}

/* The lowest format version that holds cmd: the only one encode writes
 * and decode accepts. */
/* The rules shared by encode and decode. */
static int command_check(const struct kv_command *cmd)
{
    if (cmd->idem_key_len > 0) {
        if (cmd->type != KV_CMD_PUT && cmd->type != KV_CMD_DELETE) return -1;
        if (cmd->idem_key_len > KV_IDEM_KEY_BYTES_MAX || cmd->idem_keys_max == 0 ||
            cmd->idem_ttl_ms == 0)
            return -1;
    } else if (cmd->idem_keys_max != 0 || cmd->idem_ttl_ms != 0) {
        return -1;
    }
    if (!is_session(cmd->type) && cmd->session_id != 0) return -1;
    switch (cmd->type) {
    case KV_CMD_SESSION_CREATE:
        return cmd->cond == KV_COND_NONE && cmd->ttl_ms >= KV_SESSION_TTL_MS_MIN &&
                       cmd->ttl_ms <= KV_SESSION_TTL_MS_MAX && cmd->keys_max >= 1 &&
                       cmd->keys_max <= KV_SESSIONS_HARD_MAX &&
                       cmd->value_len <= KV_SESSION_NAME_BYTES_MAX && cmd->key_len == 0
                   ? 0
                   : -1;
    case KV_CMD_SESSION_DESTROY:
        return cmd->cond == KV_COND_NONE && cmd->session_id != 0 &&
                       (cmd->reason == KV_SESSION_END_DESTROYED ||
                        cmd->reason == KV_SESSION_END_EXPIRED)
                   ? 0
                   : -1;
    case KV_CMD_PUT_SESSION:
    case KV_CMD_PUT:
        if (cmd->type == KV_CMD_PUT_SESSION && cmd->session_id == 0) return -1;
        if (cmd->cond != KV_COND_NONE && cmd->cond != KV_COND_IF_VERSION &&
            cmd->cond != KV_COND_IF_ABSENT)
            return -1;
        if (cmd->key_len == 0 || cmd->key_len > KV_KEY_BYTES_HARD_MAX ||
            cmd->value_len > KV_VALUE_BYTES_HARD_MAX)
            return -1;
        return 0;
    case KV_CMD_DELETE:
        if (cmd->cond != KV_COND_NONE && cmd->cond != KV_COND_IF_VERSION) return -1;
        if (cmd->key_len == 0 || cmd->key_len > KV_KEY_BYTES_HARD_MAX) return -1;
        return 0;
    case KV_CMD_PURGE_EXPIRED:
        return cmd->cond == KV_COND_NONE ? 0 : -1;
    case KV_CMD_EVICT:
        return cmd->cond == KV_COND_NONE && cmd->evict_n >= 1 && cmd->evict_n <= KV_EVICT_KEYS_MAX
                   ? 0
                   : -1;
    case KV_CMD_REFUSE:
        return cmd->cond == KV_COND_NONE && cmd->reason == KV_REFUSE_MEMORY ? 0 : -1;
    case KV_CMD_AUTH_USER_PUT:
    case KV_CMD_AUTH_USER_DELETE:
        if (cmd->cond == KV_COND_IF_ABSENT && cmd->type == KV_CMD_AUTH_USER_DELETE) return -1;
        return cmd->value_len >= 1 && cmd->value_len <= AUTH_PAYLOAD_BYTES_MAX && cmd->key_len == 0
                   ? 0
                   : -1;
    case KV_CMD_TXN:
        return kv_txn_body_check(cmd);
    case KV_CMD_PUBLISH:
        return cmd->cond == KV_COND_NONE && cmd->key_len <= KV_KEY_BYTES_HARD_MAX &&
                       cmd->value_len <= KV_VALUE_BYTES_HARD_MAX
                   ? 0
                   : -1;
    }
    return -1;
}

int kv_command_encode(const struct kv_command *cmd, uint8_t *buf, size_t cap, size_t *out_len)
{
    if (command_check(cmd) != 0) return ST_EINVAL;
    if (cmd->type == KV_CMD_EVICT) {
        if (!cmd->evict_keys) return ST_EINVAL;
        for (uint32_t i = 0; i < cmd->evict_n; i++)
            if (cmd->evict_keys[i].key_len == 0 ||
                cmd->evict_keys[i].key_len > KV_KEY_BYTES_HARD_MAX)
                return ST_EINVAL;
    }
    if (cmd->type == KV_CMD_TXN) {
        uint32_t n = cmd->txn_guards + cmd->txn_success + cmd->txn_failure;
        if (n && !cmd->txn_items) return ST_EINVAL;
        for (uint32_t i = 0; i < n; i++)
            if (kv_txn_item_check(&cmd->txn_items[i], i < cmd->txn_guards) != 0) return ST_EINVAL;
    }
    size_t need = kv_command_encoded_len(cmd);
    if (need > cap) return ST_ETOOBIG;
    uint8_t *p = buf;
    p[0] = version_of(cmd); /* kv_command_decode checks the same */
    p[1] = (uint8_t)cmd->type;
    p[2] = (uint8_t)cmd->cond;
    p[3] = 0;
    put_u32(p + 4, 0);
    put_u64(p + 8, cmd->req.node_id);
    put_u64(p + 16, cmd->req.seq);
    put_u64(p + 24, cmd->timestamp_ms);
    p += KV_COMMAND_HEADER_BYTES;
    if (cmd->idem_key_len) {
        p[0] = (uint8_t)cmd->idem_key_len;
        p[1] = p[2] = p[3] = 0;
        put_u32(p + 4, cmd->idem_keys_max);
        put_u64(p + 8, cmd->idem_ttl_ms);
        memcpy(p + KV_COMMAND_IDEM_FIXED_BYTES, cmd->idem_key, cmd->idem_key_len);
        p += KV_COMMAND_IDEM_FIXED_BYTES + cmd->idem_key_len;
    }
    switch (cmd->type) {
    case KV_CMD_SESSION_CREATE:
        put_u64(p, cmd->ttl_ms);
        put_u32(p + 8, cmd->keys_max);
        put_u32(p + 12, cmd->value_len);
        p += SESS_CREATE_FIXED_BYTES;
        if (cmd->value_len) memcpy(p, cmd->value, cmd->value_len);
        p += cmd->value_len;
        break;
    case KV_CMD_SESSION_DESTROY:
        put_u64(p, cmd->session_id);
        put_u32(p + 8, cmd->reason);
        p += SESS_DESTROY_FIXED_BYTES;
        break;
    case KV_CMD_PUT_SESSION:
    case KV_CMD_PUT:
        if (cmd->type == KV_CMD_PUT_SESSION) { /* the session id, then the PUT payload */
            put_u64(p, cmd->session_id);
            p += SESS_ID_BYTES;
        }
        put_u64(p, cmd->ttl_ms);
        put_u64(p + 8, cmd->cond == KV_COND_IF_VERSION ? cmd->cond_version : 0);
        put_u32(p + 16, cmd->key_len);
        put_u32(p + 20, cmd->value_len);
        p += PUT_FIXED_BYTES;
        memcpy(p, cmd->key, cmd->key_len);
        p += cmd->key_len;
        if (cmd->value_len) memcpy(p, cmd->value, cmd->value_len);
        p += cmd->value_len;
        break;
    case KV_CMD_PUBLISH:
        put_u32(p, cmd->key_len);
        put_u32(p + 4, cmd->value_len);
        p += PUBLISH_FIXED_BYTES;
        if (cmd->key_len) memcpy(p, cmd->key, cmd->key_len);
        p += cmd->key_len;
        if (cmd->value_len) memcpy(p, cmd->value, cmd->value_len);
        p += cmd->value_len;
        break;
    case KV_CMD_DELETE:
        put_u64(p, cmd->cond == KV_COND_IF_VERSION ? cmd->cond_version : 0);
        put_u32(p + 8, cmd->key_len);
        p += DELETE_FIXED_BYTES;
        memcpy(p, cmd->key, cmd->key_len);
        p += cmd->key_len;
        break;
    case KV_CMD_PURGE_EXPIRED:
        put_u32(p, cmd->keys_max);
        p += PURGE_FIXED_BYTES;
        break;
    case KV_CMD_EVICT:
        put_u32(p, cmd->evict_n);
        p += EVICT_FIXED_BYTES;
        for (uint32_t i = 0; i < cmd->evict_n; i++) {
            put_u64(p, cmd->evict_keys[i].version);
            put_u32(p + 8, cmd->evict_keys[i].key_len);
            p += EVICT_KEY_FIXED_BYTES;
            memcpy(p, cmd->evict_keys[i].key, cmd->evict_keys[i].key_len);
            p += cmd->evict_keys[i].key_len;
        }
        break;
    case KV_CMD_REFUSE:
        put_u32(p, cmd->reason);
        p += REFUSE_FIXED_BYTES;
        break;
    case KV_CMD_AUTH_USER_PUT:
    case KV_CMD_AUTH_USER_DELETE:
        put_u64(p, cmd->cond == KV_COND_IF_VERSION ? cmd->cond_version : 0);
        put_u32(p + 8, cmd->value_len);
        p += AUTH_FIXED_BYTES;
        memcpy(p, cmd->value, cmd->value_len);
        p += cmd->value_len;
        break;
    case KV_CMD_TXN:
        kv_txn_body_encode(cmd, p);
        p += kv_txn_body_len(cmd);
        break;
    }
    ST_ASSERT((size_t)(p - buf) == need);
    *out_len = need;
    return 0;
}

int kv_command_restamp(uint8_t *data, size_t len, uint64_t timestamp_ms)
{
    if (len < KV_COMMAND_HEADER_BYTES || data[0] < 1 || data[0] > KV_COMMAND_VERSION)
        return ST_EPROTO;
    put_u64(data + 24, timestamp_ms);
    return 0;
}

int kv_command_decode(const uint8_t *data, size_t len, const struct kv_limits *limits,
                      struct kv_command *out)
{
    if (len < KV_COMMAND_HEADER_BYTES) return ST_EPROTO;
    if (data[0] < 1 || data[0] > KV_COMMAND_VERSION || data[3] != 0 || get_u32(data + 4) != 0)
        return ST_EPROTO;
    memset(out, 0, sizeof(*out));
    uint8_t type = data[1], cond = data[2];
    uint8_t type_max = data[0] >= KV_COMMAND_VERSION_TXN     ? KV_CMD_TXN
                       : data[0] >= KV_COMMAND_VERSION_EVICT ? KV_CMD_REFUSE
                                                             : KV_CMD_PURGE_EXPIRED;
    bool late = (data[0] == KV_COMMAND_VERSION_AUTH &&
                 (type == KV_CMD_AUTH_USER_PUT || type == KV_CMD_AUTH_USER_DELETE)) ||
                (data[0] == KV_COMMAND_VERSION_SESSION &&
                 (type == KV_CMD_SESSION_CREATE || type == KV_CMD_SESSION_DESTROY ||
                  type == KV_CMD_PUT_SESSION)) ||
                (data[0] == KV_COMMAND_VERSION_PUBLISH && type == KV_CMD_PUBLISH);
    if ((!late && (type < KV_CMD_PUT || type > type_max)) || cond > KV_COND_IF_ABSENT)
        return ST_EPROTO;
    out->type = (enum kv_cmd_type)type;
    out->cond = (enum kv_cond)cond;
    out->req.node_id = get_u64(data + 8);
    out->req.seq = get_u64(data + 16);
    out->timestamp_ms = get_u64(data + 24);
    const uint8_t *p = data + KV_COMMAND_HEADER_BYTES;
    size_t rest = len - KV_COMMAND_HEADER_BYTES;
    if (data[0] == KV_COMMAND_VERSION_IDEM) {
        /* This version always has a key: one encoding per command. */
        if (rest < KV_COMMAND_IDEM_FIXED_BYTES || p[0] == 0 || p[1] || p[2] || p[3])
            return ST_EPROTO;
        out->idem_key_len = p[0];
        out->idem_keys_max = get_u32(p + 4);
        out->idem_ttl_ms = get_u64(p + 8);
        p += KV_COMMAND_IDEM_FIXED_BYTES;
        rest -= KV_COMMAND_IDEM_FIXED_BYTES;
        if (rest < out->idem_key_len) return ST_EPROTO;
        out->idem_key = p;
        p += out->idem_key_len;
        rest -= out->idem_key_len;
    }
    switch (out->type) {
    case KV_CMD_SESSION_CREATE:
        if (rest < SESS_CREATE_FIXED_BYTES) return ST_EPROTO;
        out->ttl_ms = get_u64(p);
        out->keys_max = get_u32(p + 8);
        out->value_len = get_u32(p + 12);
        if (out->value_len != rest - SESS_CREATE_FIXED_BYTES) return ST_EPROTO;
        out->value = p + SESS_CREATE_FIXED_BYTES;
        break;
    case KV_CMD_SESSION_DESTROY:
        if (rest != SESS_DESTROY_FIXED_BYTES) return ST_EPROTO;
        out->session_id = get_u64(p);
        out->reason = get_u32(p + 8);
        break;
    case KV_CMD_PUT_SESSION:
    case KV_CMD_PUT:
        if (out->type == KV_CMD_PUT_SESSION) { /* the session id, then the PUT payload */
            if (rest < SESS_ID_BYTES) return ST_EPROTO;
            out->session_id = get_u64(p);
            p += SESS_ID_BYTES;
            rest -= SESS_ID_BYTES;
        }
        if (rest < PUT_FIXED_BYTES) return ST_EPROTO;
        out->ttl_ms = get_u64(p);
        out->cond_version = get_u64(p + 8);
        out->key_len = get_u32(p + 16);
        out->value_len = get_u32(p + 20);
        p += PUT_FIXED_BYTES;
        rest -= PUT_FIXED_BYTES;
        if ((uint64_t)out->key_len + out->value_len != rest) return ST_EPROTO;
        out->key = p;
        out->value = p + out->key_len;
        break;
    case KV_CMD_DELETE:
        if (rest < DELETE_FIXED_BYTES) return ST_EPROTO;
        out->cond_version = get_u64(p);
        out->key_len = get_u32(p + 8);
        p += DELETE_FIXED_BYTES;
        rest -= DELETE_FIXED_BYTES;
        if (out->key_len != rest) return ST_EPROTO;
        out->key = p;
        break;
    case KV_CMD_PURGE_EXPIRED:
        if (rest != PURGE_FIXED_BYTES) return ST_EPROTO;
        out->keys_max = get_u32(p);
        break;
    case KV_CMD_EVICT: {
        if (rest < EVICT_FIXED_BYTES) return ST_EPROTO;
        out->evict_n = get_u32(p);
        if (out->evict_n == 0 || out->evict_n > KV_EVICT_KEYS_MAX) return ST_EPROTO;
        p += EVICT_FIXED_BYTES;
        rest -= EVICT_FIXED_BYTES;
        out->evict_raw = p;
        out->evict_raw_len = rest;
        for (uint32_t i = 0; i < out->evict_n; i++) {
            if (rest < EVICT_KEY_FIXED_BYTES) return ST_EPROTO;
            uint32_t kl = get_u32(p + 8);
            if (kl == 0 || kl > KV_KEY_BYTES_HARD_MAX || rest - EVICT_KEY_FIXED_BYTES < kl)
                return ST_EPROTO;
            p += EVICT_KEY_FIXED_BYTES + kl;
            rest -= EVICT_KEY_FIXED_BYTES + kl;
        }
        if (rest != 0) return ST_EPROTO;
        break;
    }
    case KV_CMD_REFUSE:
        if (rest != REFUSE_FIXED_BYTES) return ST_EPROTO;
        out->reason = get_u32(p);
        break;
    case KV_CMD_AUTH_USER_PUT:
    case KV_CMD_AUTH_USER_DELETE:
        if (rest < AUTH_FIXED_BYTES) return ST_EPROTO;
        out->cond_version = get_u64(p);
        out->value_len = get_u32(p + 8);
        if (out->value_len != rest - AUTH_FIXED_BYTES) return ST_EPROTO;
        out->value = p + AUTH_FIXED_BYTES;
        break;
    case KV_CMD_TXN: {
        int rc = kv_txn_body_decode(p, rest, out);
        if (rc) return rc;
        break;
    }
    case KV_CMD_PUBLISH:
        if (rest < PUBLISH_FIXED_BYTES) return ST_EPROTO;
        out->key_len = get_u32(p);
        out->value_len = get_u32(p + 4);
        p += PUBLISH_FIXED_BYTES;
        rest -= PUBLISH_FIXED_BYTES;
        if ((uint64_t)out->key_len + out->value_len != rest) return ST_EPROTO;
        out->key = p;
        out->value = p + out->key_len;
        break;
    }
    if (out->cond != KV_COND_IF_VERSION && out->cond_version != 0)
        return ST_EPROTO; /* one encoding per command: keeps entries canonical */
    if (data[0] != version_of(out)) return ST_EPROTO; /* the lowest version that holds it, only */
    if (command_check(out) != 0) {
        if (out->key_len > KV_KEY_BYTES_HARD_MAX || out->value_len > KV_VALUE_BYTES_HARD_MAX)
            return ST_ETOOBIG;
        return ST_EPROTO;
    }
    if (limits && !is_auth(out->type) && out->type != KV_CMD_SESSION_CREATE &&
        (out->key_len > limits->key_bytes_max || out->value_len > limits->value_bytes_max))
        return ST_ETOOBIG;
    return 0;
}

int kv_evict_next(const struct kv_command *cmd, size_t *pos, struct kv_evict_key *out)
{
    if (*pos + EVICT_KEY_FIXED_BYTES > cmd->evict_raw_len) return 0;
    const uint8_t *p = cmd->evict_raw + *pos;
    out->version = get_u64(p);
    out->key_len = get_u32(p + 8);
    out->key = p + EVICT_KEY_FIXED_BYTES;
    *pos += EVICT_KEY_FIXED_BYTES + out->key_len;
    return 1;
}
