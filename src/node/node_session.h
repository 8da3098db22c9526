/* node sessions: creating and ending sessions through the log, attaching
 * keys (node_put_args.session_id), and their liveness on the leader
 * (docs/HTTP-API.md, "Sessions"; the table itself: kv/kv_session.h).
 *
 * Liveness is not replicated. The leader keeps each session's deadline in
 * memory: a session it has not seen yet (created, or already there when it
 * took over) gets now + its TTL; node_session_renew() sets that again; a
 * deadline that passes makes the leader propose SESSION_DESTROY (reason
 * expired), which deletes the session's still-attached keys on every
 * replica in the same apply. A node that is not the leader keeps nothing,
 * so a new leader starts every session with a full TTL from the moment it
 * takes over: a session may outlive its TTL around a failover, never end
 * before it (Consul's rule; fencing tokens make the longer life safe,
 * docs/RECIPES.md). Time comes from the node's tick clock only; the apply
 * never reads a clock.
 *
 * All functions run on the node's loop thread. */
#ifndef ST_NODE_NODE_SESSION_H
#define ST_NODE_NODE_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "node/node.h"

#define NODE_SESSION_TTL_MS_MIN 1000u    /* == KV_SESSION_TTL_MS_MIN */
#define NODE_SESSION_TTL_MS_MAX 3600000u /* == KV_SESSION_TTL_MS_MAX */
#define NODE_SESSION_NAME_BYTES_MAX 128u /* == KV_SESSION_NAME_BYTES_MAX */
#define NODE_SESSION_KEYS_MAX 64u        /* == KV_SESSION_KEYS_MAX */
#define NODE_SESSION_RETRY_MS 1000u      /* an expiry proposal not applied is made again */
#define NODE_SESSION_WALK_MS 50u         /* the leader looks at deadlines this often */

/* Proposes a session with this TTL and name (copied). Returns ST_EINVAL
 * (TTL out of NODE_SESSION_TTL_MS_MIN..MAX, name too long) or the errors
 * of node_put; the callback gets status 0 with version = the session id,
 * or ST_ETOOBIG when --max-sessions sessions exist. */
int node_session_create(struct node *n, uint64_t ttl_ms, const uint8_t *name, size_t name_len,
                        node_write_cb cb, void *ctx);

/* Proposes the end of session id: its still-attached keys are deleted in
 * the same entry. The callback gets 0, or ST_ENOENT (no such session). */
int node_session_destroy(struct node *n, uint64_t id, node_write_cb cb, void *ctx);

/* A keepalive, on the leader only (not a log write): session id's
 * deadline becomes now + its TTL (*ttl_ms). Returns 0, ST_ENOTLEADER (ask
 * the leader), ST_ENOENT (no such session, or its expiry is already
 * proposed), ST_EBUSY (this leader has not applied the session's creation
 * yet: retry). */
int node_session_renew(struct node *n, uint64_t id, uint64_t *ttl_ms);

/* The applied table of this node (any role). Views stay valid until the
 * next apply. */
struct node_session_view {
    uint64_t id;
    uint64_t ttl_ms;
    const uint8_t *name;
    size_t name_len;
    uint32_t n_keys; /* attachments (some may name keys rewritten since) */
};
uint32_t node_session_count(const struct node *n);
/* The i-th session in id order (i < count). */
void node_session_at(const struct node *n, uint32_t i, struct node_session_view *out);
/* 0, or ST_ENOENT. */
int node_session_get(const struct node *n, uint64_t id, struct node_session_view *out);
/* Attachment k (< n_keys) of session id: 0 or ST_ENOENT. */
int node_session_key(const struct node *n, uint64_t id, uint32_t k, const uint8_t **key,
                     size_t *key_len, uint64_t *version);
/* The leader's remaining time for session id in ms, or -1 when this node
 * is not the leader or keeps no deadline for it yet. */
int64_t node_session_remaining_ms(const struct node *n, uint64_t id);

#endif
