/* TCP peer transport: Raft messages between nodes, on the node's libuv loop.
 *
 * Part of libstcache-raft; needs libuv (uv.h, a uv_loop_t the embedder runs).
 *
 * One struct st_tr per node, driven by one loop thread; every function and every
 * callback runs on that thread. Frame and handshake formats are written down
 * byte by byte in docs/WIRE-FORMAT.md.
 *
 * Connections. One long-lived TCP connection per peer pair, carrying traffic
 * both ways. The node with the SMALLER id dials the larger one at once; the
 * larger dials too, but only once no connection came up for
 * ST_TR_REVERSE_DIAL_MS, and again ST_TR_REVERSE_DIAL_MS later than its
 * backoff each time (a smaller-id node that does not know the larger one
 * yet, being behind the membership change that added it, never dials it).
 * When both dials meet, the smaller id's wins: an inbound connection
 * replaces the larger node's own dial in progress, and the smaller node
 * refuses the larger one's while its own is under way. Both reconnect with
 * exponential backoff and jitter (reconnect_base_ms doubling up to
 * reconnect_max_ms, the delay drawn uniformly in [d/2, d] from an rng seeded
 * by cfg.seed). If an accepted connection from a peer arrives while one is
 * established, the new one replaces it (the dialer restarted or saw the old
 * one die first) only if it authenticates as that peer: with TLS, by its
 * certificate; without TLS, only if the old connection has received nothing
 * for ST_TR_REPLACE_IDLE_MS (a live link cannot be kicked by someone who
 * merely knows a node id). Otherwise the new one is refused.
 *
 * Unauthenticated inbound connections (before a successful HELLO) are
 * bounded: at most ST_TR_INBOUND_PER_ADDR_MAX per source address and
 * ST_TR_INBOUND_PENDING_MAX in all, the oldest closed for a newer one, and
 * each must finish its handshake within min(handshake_timeout_ms,
 * ST_TR_INBOUND_HANDSHAKE_MS). A flood of idle connections therefore cannot
 * keep a real peer out.
 *
 * Handshake. The dialer sends HELLO(version, cluster id, its id, the id it
 * expects at that address, its advertised address); the acceptor answers
 * HELLO_ACK(status, cluster id, its id); a refusal's HELLO_ACK carries only
 * the status, with zero cluster and node ids (it reveals nothing to a
 * stranger). Refused with ST_EMISMATCH and traced:
 * a different cluster id, a HELLO addressed to another node id, a dialer
 * whose own dial we are making (see above), more than ST_TR_LEARNED_MAX
 * dialers not known as peers, and on the dialer side an acceptor whose id is
 * not the one expected for the address. Garbage (bad magic, bad CRC, unknown frame type,
 * oversized frame, malformed message) closes that connection only, counted in
 * stats.protocol_errors.
 *
 * The node adds every member of its configuration as a peer (st_tr_peer_add)
 * and adds/removes peers as membership changes are applied. A dialer that is
 * not a peer (with TLS: whose certificate names the id it claims) is
 * accepted as a learned peer: a member added while this node was behind,
 * perhaps the leader it must hear from to learn of it (the core takes
 * messages from any id; etcd's transport likewise answers members it does
 * not know yet). A learned peer lives with its connection: messages can be
 * sent to it while it is up, it is never dialed, st_tr_peer_add() makes it
 * a peer (keeping the connection), and it is forgotten when the connection
 * ends.
 *
 * Sending. st_tr_send() encodes the message at once (the caller's msg may be
 * released on return); entry payloads are not copied: the transport takes a
 * raft_buf reference per payload and writes them with scatter/gather, dropping
 * the references when the write completes. Sends are pipelined (no wait for
 * the previous write). Each peer has a bounded send queue (messages accepted
 * but not yet written to the kernel), in messages and in bytes; a message that
 * would exceed either bound is dropped (Raft tolerates loss), st_tr_send()
 * returns ST_EBUSY, and send_failed_cb(peer, type, ST_EBUSY) follows from the
 * loop (coalesced: at most once per peer per loop round). While a peer is not
 * connected, messages queue within the same bounds and are written once the
 * connection is up; when a connection attempt fails or a connection is lost,
 * or a message has waited queue_wait_ms for a connection, what is queued is
 * dropped and reported through send_failed_cb (the node then calls
 * raft_report_unreachable()). Sockets use TCP_NODELAY
 * (small Raft messages must not wait for Nagle) and TCP keepalive.
 *
 * Snapshots. st_tr_send_snapshot() streams a snapshot file to the peer in chunks
 * of snapshot_chunk_bytes over the SAME connection, interleaved with ordinary
 * messages: one chunk buffer per stream is read from disk (uv_fs_read, thread
 * pool), written, and only then refilled, so memory stays bounded (one chunk
 * per stream on each side) and a heartbeat waits behind at most one chunk. The
 * receiver hands chunks to snapshot_chunk_cb; when the stream is complete it
 * calls snapshot_end_cb(status 0) and, if that returns 0 (snapshot stored),
 * delivers the RAFT_MSG_SNAPSHOT through msg_cb and acknowledges; the sender
 * then gets snapshot_sent_cb(0). Any failure (receiver refuses or aborts,
 * read error, connection lost) ends the stream on both sides: snapshot_end_cb
 * with a negative status on the receiver, snapshot_sent_cb with a negative
 * status on the sender (node: raft_report_snapshot(peer, false)). A failed
 * transfer restarts from scratch. One stream per direction per peer; every
 * snapshot frame carries a stream id, so a late answer about an abandoned
 * stream is never taken for a newer one's.
 *
 * Callbacks are never invoked from inside a tr_* call, with two exceptions
 * (st_tr_peer_remove() and st_tr_snapshot_resume(), below): synchronous failures
 * are return values, asynchronous ones are callbacks. Callbacks may call any tr_* function,
 * including st_tr_peer_remove() and st_tr_destroy(). st_tr_peer_remove() drops what is queued for
 * the peer silently, but ends its snapshot streams in progress with snapshot_sent_cb /
 * snapshot_end_cb (ST_ECANCELED) before returning, so the node can release their files.
 * st_tr_destroy() calls no callback at all. */
#ifndef STCACHE_TRANSPORT_H
#define STCACHE_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "stcache/api.h"
#include "stcache/raft.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ST_TR_ADDR_MAX 255 /* "host:port" strings, bytes without the NUL */
/* A connection from a known peer replaces its established one only if that
 * one received nothing for this long (without TLS; see above). */
#define ST_TR_REPLACE_IDLE_MS 1000
#define ST_TR_INBOUND_PER_ADDR_MAX 4    /* unauthenticated connections per source address */
#define ST_TR_INBOUND_HANDSHAKE_MS 2000 /* an inbound connection's handshake deadline, at most */
/* The larger id of a pair dials only after this long without a connection. */
#define ST_TR_REVERSE_DIAL_MS 1000
#define ST_TR_LEARNED_MAX 8 /* connected dialers that are not peers (see above) */

struct st_tr_config {
    raft_id self_id;
    uint64_t cluster_id;
    char listen_addr[ST_TR_ADDR_MAX + 1]; /* "host:port"; port 0 = ephemeral (tests) */
    char advertise_addr[ST_TR_ADDR_MAX +
                        1];        /* sent in HELLO (traces); "" = listen host:bound port */
    uint64_t seed;                 /* reconnect jitter */
    uint32_t frame_bytes_max;      /* larger inbound frame: connection closed */
    uint32_t send_queue_msgs_max;  /* per peer */
    uint64_t send_queue_bytes_max; /* per peer, encoded bytes */
    uint32_t snapshot_chunk_bytes; /* < frame_bytes_max */
    uint32_t reconnect_base_ms;
    uint32_t reconnect_max_ms;
    /* For this long after the first failed dial of an outage the bound stays
     * at reconnect_base_ms (no doubling): a restarted peer is found within
     * ~reconnect_base_ms instead of a delay that grew with its downtime. */
    uint32_t reconnect_fast_ms;
    uint32_t handshake_timeout_ms; /* connect + handshake must finish within */
    uint32_t queue_wait_ms;        /* a message waits at most this for a connection */
    /* Mutual TLS (docs/SECURITY.md). All three set: every connection, both
     * directions, runs a TLS handshake before the HELLO; each side presents
     * tls_cert_file and verifies the other's against tls_ca_file, and a
     * certificate must name the node ("stcache-node-<id>" as CN or DNS SAN):
     * the acceptor refuses a HELLO whose dialer id is not the certificate's,
     * the dialer drops an acceptor whose certificate names another id than
     * the one it dialed. All NULL: plaintext. The strings are read during
     * st_tr_create() only (the paths are copied for st_tr_tls_reload()). */
    const char *tls_cert_file;
    const char *tls_key_file;
    const char *tls_ca_file;
};

/* Defaults: frame 64 MiB, queue 4096 msgs / 64 MiB, chunks 256 KiB,
 * reconnect 50 ms .. 5 s (50 ms for the first 2 s of an outage), handshake
 * 5 s, queue wait 2 s. listen_addr is copied (truncation
 * is an ST_EINVAL at st_tr_create). */
ST_API void st_tr_config_default(struct st_tr_config *cfg, raft_id self_id, uint64_t cluster_id,
                                 const char *listen_addr);

/* All callbacks run on the loop thread; ctx is callbacks.ctx. NULL callbacks
 * are allowed (snapshot_begin_cb NULL refuses every inbound snapshot). */
struct st_tr_callbacks {
    void *ctx;
    /* An inbound message, already checked: msg->from == from (the peer
     * authenticated by the handshake) and msg->to == self. msg and its entry
     * payloads (zero-copy views of the received frame) are valid during the
     * call only; raft_step() takes its own references. */
    void (*msg_cb)(void *ctx, raft_id from, const struct raft_msg *msg);
    /* The connection to peer came up (after a successful handshake) or went down. */
    void (*peer_state_cb)(void *ctx, raft_id peer, bool connected);
    /* Messages to peer were dropped: status ST_ECONNECTION (accepted by
     * st_tr_send(), then lost with a failed or lost connection; one call per
     * message) or ST_EBUSY (back-pressure: st_tr_send() returned ST_EBUSY; one
     * call per peer per loop round, msg_type = the last one dropped). The node
     * calls raft_report_unreachable(). */
    void (*send_failed_cb)(void *ctx, raft_id peer, uint8_t msg_type, int status);

    /* Inbound snapshot stream from `from`: msg is the RAFT_MSG_SNAPSHOT (with
     * msg->snapshot meta), size the byte count to come. Return 0 to accept,
     * negative to refuse (the sender is told). msg valid during the call. */
    int (*snapshot_begin_cb)(void *ctx, raft_id from, const struct raft_msg *msg, uint64_t size);
    /* Next chunk, offsets contiguous from 0. data valid during the call only.
     * Return 0, negative to abort the stream, or ST_TR_CB_PENDING: the chunk is
     * taken, and nothing more is read from the peer (neither the stream nor
     * its messages: TCP's window holds the sender back) until the receiver
     * calls st_tr_snapshot_resume(). That is how a receiver that writes off the
     * loop bounds what it holds. */
    int (*snapshot_chunk_cb)(void *ctx, raft_id from, uint64_t offset, const uint8_t *data,
                             size_t len);
    /* The stream ended: status 0 = every byte arrived; the callback returns 0
     * once the snapshot is stored (durably), and the transport then delivers
     * the RAFT_MSG_SNAPSHOT via msg_cb. status < 0: aborted (sender gone,
     * connection lost, a callback refused); the return value is ignored.
     * With status 0 the callback may also return ST_TR_CB_PENDING: the snapshot
     * is being stored, reading from the peer pauses, and
     * st_tr_snapshot_resume(status) finishes the stream later (delivers the
     * message when status is 0). A stream whose end is pending gets no
     * second snapshot_end_cb if its connection is lost meanwhile (the
     * resume then only finds nothing to finish).
     * Called exactly once per accepted begin. */
    int (*snapshot_end_cb)(void *ctx, raft_id from, int status);

    /* Outbound stream to `to` finished: 0 = the peer stored it, negative =
     * failed (ST_ECONNECTION, ST_EIO (read), ST_ECANCELED/other code sent by
     * the receiver). Called exactly once per st_tr_send_snapshot() that returned 0. */
    void (*snapshot_sent_cb)(void *ctx, raft_id to, int status);
};

struct st_tr_stats {
    uint64_t msgs_sent;          /* raft messages written to the kernel */
    uint64_t bytes_sent;         /* all frame bytes written */
    uint64_t msgs_received;      /* raft messages delivered to msg_cb */
    uint64_t bytes_received;     /* all bytes read */
    uint64_t msgs_dropped;       /* back-pressure + lost with a connection */
    uint64_t connects;           /* handshakes completed */
    uint64_t reconnects;         /* dial attempts after a failure or loss */
    uint64_t handshakes_refused; /* either side, ST_EMISMATCH */
    uint64_t protocol_errors;    /* garbage, CRC mismatch, oversized or malformed frames */
    uint64_t snapshots_sent;     /* acknowledged by the receiver */
    uint64_t snapshots_received; /* stored and delivered */
    uint64_t snapshots_failed;   /* either direction */
    uint64_t snapshot_bytes_sent;
    uint64_t frame_buffer_bytes_max; /* largest inbound frame buffer ever allocated */
    uint64_t accept_failures;        /* accept errors (EMFILE, ENFILE, ...) */
    uint64_t read_pauses;            /* reads paused for a snapshot receiver (ST_TR_CB_PENDING) */
    uint64_t tls_failures;           /* TLS handshakes failed or certificates refused */
    uint64_t tls_resumed;            /* dialed TLS handshakes that resumed a session */
    uint64_t inbound_evicted;  /* unauthenticated connections closed for a newer one (limits) */
    uint64_t read_turn_pauses; /* a connection read ST_TR_READ_TURN_BYTES in one loop turn */
};

struct st_tr;

/* Allocates a transport on `loop` (not started). cfg and cbs are copied.
 * Returns 0 and *out, ST_EINVAL (bad config), ST_ENOMEM. */
ST_API int st_tr_create(uv_loop_t *loop, const struct st_tr_config *cfg,
                        const struct st_tr_callbacks *cbs, struct st_tr **out);

/* Resolves listen_addr (synchronously: a startup path), binds and listens.
 * Sets SIGPIPE to SIG_IGN for the process (a reset peer must not kill us).
 * Returns 0, ST_EINVAL (unparsable address), ST_EIO/ST_EEXIST-like codes from
 * bind/listen. */
ST_API int st_tr_start(struct st_tr *tr);

/* The port actually bound (after st_tr_start; useful with port 0), 0 if none. */
ST_API int st_tr_listen_port(const struct st_tr *tr);

/* Closes every handle and connection, fails pending work silently, and frees
 * tr once libuv has closed everything; then calls done_cb(done_arg) (may be
 * NULL). tr must not be used after this call. The loop must keep running
 * until done_cb. */
ST_API void st_tr_destroy(struct st_tr *tr, void (*done_cb)(void *arg), void *done_arg);

/* Adds a peer with its "host:port" address (copied; resolved with
 * uv_getaddrinfo on each dial). If we dial it (self < id), dialing starts now.
 * ST_EEXIST (already a peer: remove and add again to change its address),
 * ST_EINVAL (id 0, self, bad address), ST_ENOMEM. */
ST_API int st_tr_peer_add(struct st_tr *tr, raft_id id, const char *addr);

/* Removes a peer: closes its connection, drops its queue and streams without
 * callbacks. ST_ENOENT if unknown. */
ST_API int st_tr_peer_remove(struct st_tr *tr, raft_id id);

/* true while a handshaken connection to peer id is up. */
ST_API bool st_tr_peer_connected(const struct st_tr *tr, raft_id id);

/* Queues msg to msg->to. Returns 0 (queued; a later loss is reported through
 * send_failed_cb), ST_EBUSY (dropped: send queue full, counted),
 * ST_ENOENT (unknown peer), ST_EINVAL (not encodable, or a RAFT_MSG_SNAPSHOT:
 * use st_tr_send_snapshot), ST_ETOOBIG (larger than frame_bytes_max), ST_ENOMEM.
 * The transport references entry payload buffers; msg itself is not kept. */
ST_API int st_tr_send(struct st_tr *tr, const struct raft_msg *msg);

/* Streams the snapshot file at `path` (size bytes, read from offset 0) to
 * msg->to, then has the peer deliver msg (a RAFT_MSG_SNAPSHOT with meta).
 * path and msg are copied. Returns 0 (snapshot_sent_cb follows exactly once),
 * ST_ENOENT (unknown peer), ST_ECONNECTION (peer not connected), ST_EBUSY
 * (a stream to that peer is running), ST_EINVAL. */
ST_API int st_tr_send_snapshot(struct st_tr *tr, const struct raft_msg *msg, const char *path,
                               uint64_t size);

/* Returned by snapshot_chunk_cb / snapshot_end_cb: the receiver finishes
 * the work off the loop and calls st_tr_snapshot_resume(). */
#define ST_TR_CB_PENDING 1

/* Ends a pause that snapshot_chunk_cb or snapshot_end_cb asked for with
 * ST_TR_CB_PENDING. status 0: the chunk was written / the snapshot is stored;
 * negative: it failed, and the stream ends with that status (acknowledged
 * to the sender; snapshot_end_cb(status) unless the end was the pending
 * call). Then reading from `from` resumes: frames that arrived before the
 * pause are processed inside this call, so it may invoke msg_cb,
 * snapshot_chunk_cb and snapshot_end_cb. Harmless when nothing is paused or
 * the peer is gone. Loop thread only. */
ST_API void st_tr_snapshot_resume(struct st_tr *tr, raft_id from, int status);

/* Re-reads the TLS files named in the config (certificate rotation). On
 * success new connections use the new certificate and CA; established ones
 * keep theirs and nothing is dropped. On failure the old ones stay in use,
 * and `reason` (cap bytes, may be NULL) says which file failed and why.
 * Returns 0, ST_EINVAL (a file does not load, or the key does not match the
 * certificate; also: TLS is not configured), ST_ENOMEM. */
ST_API int st_tr_tls_reload(struct st_tr *tr, char *reason, size_t cap);

/* Copies the counters (monotonic since st_tr_create) into *out. */
ST_API void st_tr_stats_get(const struct st_tr *tr, struct st_tr_stats *out);

/* The socket of the established connection to peer, or -1 (diagnostics and
 * tests: socket options). Do not read, write or close it. */
ST_API int st_tr_peer_fd(const struct st_tr *tr, raft_id id);

#ifdef __cplusplus
}
#endif

#endif
