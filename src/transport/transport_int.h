/* Internals of the TCP peer transport, shared by the files of
 * src/transport/transport*.c. Contract in transport.h, bytes in
 * docs/WIRE-FORMAT.md.
 *
 * Files: transport.c (creation, start, peers, destroy), transport_send.c
 * (frames to write: the pooled st_tr_out, per-peer queues, back-pressure,
 * st_tr_send), transport_conn.c (connections: accept, handshake, reading and
 * frame dispatch), transport_dial.c (resolving, dialing, reconnect backoff),
 * transport_snap_in.c and transport_snap_out.c (snapshot streaming).
 *
 * Objects and lifetimes (every one counted in tr->live; tr is freed by
 * st_tr_destroy() once live reaches 0):
 *   struct st_tr_conn   one TCP connection (two handles: tcp + timer). Freed in
 *                    the close callback of its last handle; libuv cancels
 *                    its pending writes (callbacks with UV_ECANCELED) first.
 *   struct st_tr_peer   a configured peer. Owns a dial/backoff timer and a
 *                    getaddrinfo request; freed once both are finished after
 *                    removal.
 *   struct st_tr_snap_out  an outbound snapshot stream; freed once finished and
 *                    no file read or chunk write is outstanding.
 *   listener         the listening handle.
 *
 * Connection states (conn->state):
 *
 *     outbound: CONNECTING --connect ok, HELLO sent--> HANDSHAKE --HELLO_ACK ok--> UP
 *     inbound:  HANDSHAKE --HELLO ok, ACK sent--> UP
 *               HANDSHAKE --HELLO refused, ACK(err) sent--> REFUSING --ack written--> CLOSING
 *     any --error, EOF, timeout, garbage, st_tr_conn_close()--> CLOSING (terminal)
 *
 * With TLS, HANDSHAKE begins with the TLS handshake (c->tls not yet
 * established: nothing but TLS records flows); the dialer sends its HELLO
 * once TLS is up and the acceptor's certificate names the peer it dialed.
 * Frames are then written and read through c->tls (transport_tls.c): the
 * plaintext path (frame parsing, batching, back-pressure accounting in
 * plaintext frame bytes) is the same.
 *
 * Only an UP connection is attached as peer->conn for an inbound peer; an
 * outbound connection is attached from CONNECTING on (so a peer is dialed
 * once at a time).
 *
 * Inbound buffering: frames are parsed from a per-connection scratch buffer
 * (ST_TR_SCRATCH_BYTES). A frame larger than half of it gets a dedicated
 * raft_buf of exactly its size, read into directly (no copy) and handed to
 * the decoder, so its entries reference it zero-copy. A small frame carrying
 * entry payloads is copied once into an exact-size raft_buf before decoding,
 * so what the core keeps never pins a whole 64 KiB scratch buffer. */
#ifndef ST_TRANSPORT_INT_H
#define ST_TRANSPORT_INT_H

#include "transport/transport.h"

#include <stdbool.h>
#include <stdint.h>

#include "stcache/errors.h"
#include "tls/tls.h"
#include "util/list.h"
#include "util/rng.h"
#include "wire/msg.h"

#define ST_TR_SCRATCH_BYTES (64u * 1024u)
#define ST_TR_TLS_READ_BYTES (64u * 1024u) /* ciphertext read buffer of a TLS connection */
/* Bytes one connection reads in one loop turn at most (counted per uv_now()
 * millisecond, and afresh when the turn timer resumes it), before its reads
 * wait for the next turn: libuv reads a readable
 * socket up to 32 times per turn, and a follower catching up took 2-4 MiB
 * of appends in one turn, each byte a fresh page to fault in and then to
 * persist and apply, 20-40 ms of loop (bench/reliability/snapshot_stall.py).
 * Frames are processed as before; only the next read waits. */
#define ST_TR_READ_TURN_BYTES (256u * 1024u)
#define ST_TR_TLS_SPARE_MAX 8u                /* spare ciphertext write buffers per connection */
#define ST_TR_TLS_STAGE_BYTES (16u * 1024u)   /* a TLS record's plaintext */
#define ST_TR_TLS_SPARE_BYTES (1024u * 1024u) /* larger ones are freed after their write */
struct st_tr_tls_write;
#define ST_TR_INBOUND_PENDING_MAX 64 /* unauthenticated inbound connections */
#define ST_TR_BACKLOG 128
#define ST_TR_HANDSHAKE_BODY_MAX FRAME_HELLO_BODY_MAX
#define ST_TR_KEEPALIVE_S 5 /* idle seconds before TCP keepalive probes (half-open links) */
/* Frames whose whole st_tr_out allocation fits in a pool block (heartbeats,
 * votes, responses, appends with a few entries) reuse blocks from a free
 * list instead of calling malloc per message. */
#define ST_TR_OUT_POOL_BLOCK_BYTES 512
#define ST_TR_OUT_POOL_MAX 256
#define MOD "transport"

enum conn_state { CONN_CONNECTING, CONN_HANDSHAKE, CONN_UP, CONN_REFUSING, CONN_CLOSING };
enum out_kind { OUT_MSG, OUT_CTRL, OUT_SNAP_CHUNK };

struct st_tr_snap_out;
struct st_tr_snap_in;
struct st_tr_conn;

/* One frame to write: header bytes inline, payloads referenced. */
struct st_tr_out {
    struct st_list link; /* in peer->queue while not written; pool free list */
    struct st_tr *tr;
    bool pooled; /* a ST_TR_OUT_POOL_BLOCK_BYTES block */
    uv_write_t req;
    struct st_tr_conn *conn;
    raft_id to;
    uint8_t kind;
    uint8_t msg_type;
    bool close_after;      /* a refusal: close the connection once written */
    uint64_t bytes;        /* frame bytes */
    uint64_t queued_at_ms; /* uv_now() when queued for a connection */
    uint32_t nbufs;
    uv_buf_t *bufs;
    uint32_t nrefs;
    struct raft_buf **refs;
    struct st_tr_snap_out *snap; /* OUT_SNAP_CHUNK */
    uint8_t *hdr;                /* frame header (+ header part or control body) */
};

struct st_tr_conn {
    struct st_list link; /* tr->conns */
    struct st_tr *tr;
    struct st_tr_peer *peer;
    bool outbound;
    bool notify;          /* closing: report losses through callbacks */
    bool counted_inbound; /* counted in tr->inbound_pending */
    int doom_status;      /* deferred close requested from inside an API call */
    enum conn_state state;
    enum conn_state state_before_close;
    uv_tcp_t tcp;
    uv_timer_t timer; /* connect+handshake deadline, deferred close */
    int handles_open;
    uv_connect_t connect_req;
    struct raft_buf *scratch; /* parse buffer */
    struct raft_buf *rbuf;    /* scratch, or a dedicated buffer for one big frame */
    size_t rpos, rlen;
    bool read_paused; /* a snapshot callback returned ST_TR_CB_PENDING: no read, no parse */
    bool turn_paused; /* read ST_TR_READ_TURN_BYTES this turn: reads resume at the next */
    uint64_t turn_ms; /* uv_now() of the turn turn_bytes counts */
    uint64_t turn_bytes;
    uint32_t inflight_msgs; /* OUT_MSG frames given to uv_write, not completed */
    uint64_t inflight_bytes;
    uint64_t created_ms;         /* uv_now() at creation (evicting the oldest pending) */
    uint64_t last_rx_ms;         /* uv_now() of the last bytes read */
    struct sockaddr_storage src; /* inbound: the source address (per-address limit) */
    struct st_tls_conn *tls;     /* NULL without TLS */
    uint8_t *tls_rbuf;           /* ST_TR_TLS_READ_BYTES of ciphertext being read */
    /* Ciphertext write buffers whose write completed, kept for the next
     * frames (transport_tls.c): at most ST_TR_TLS_SPARE_MAX, each at most
     * ST_TR_TLS_SPARE_BYTES, so a frame costs no allocation once the
     * connection has seen its window of writes. */
    struct st_tr_tls_write *tls_spare;
    uint32_t tls_spare_n;
    uint8_t *tls_stage; /* ST_TR_TLS_STAGE_BYTES: small buffers of a frame gathered into a record */
    raft_id cert_id;    /* inbound TLS: the node the certificate names (0: none yet) */
};

struct st_tr_snap_out {
    struct st_tr *tr;
    struct st_tr_peer *peer; /* NULL once detached */
    raft_id to;
    uint32_t stream; /* non-zero, unique per transport */
    uv_fs_t fs;
    bool fs_pending;
    bool write_pending;
    bool finished;
    uv_file fd;
    char *path;
    uint64_t size, offset;
    uint32_t crc;
    size_t chunk_len;
    uint8_t *chunk; /* frame header + offset + chunk_bytes */
    uint8_t *begin_body;
    size_t begin_len;
};

struct st_tr_snap_in {
    uint32_t stream;
    uint64_t size, received;
    uint32_t crc;
    bool
        ending; /* snapshot_end_cb(0) returned ST_TR_CB_PENDING: awaiting st_tr_snapshot_resume() */
    struct wire_msg wm; /* the RAFT_MSG_SNAPSHOT, delivered at the end */
};

struct st_tr_peer {
    struct st_list link; /* tr->peers, while not removed */
    struct st_tr *tr;
    raft_id id;
    char addr[ST_TR_ADDR_MAX + 1];
    bool dialer;  /* self < id: we dial it at once; else only after ST_TR_REVERSE_DIAL_MS */
    bool learned; /* not added: it dialed us (a member we do not know yet); lives with its
                   * connection and never dials */
    bool removed;
    bool replacing; /* handle_hello closes its connection for a newer one */
    bool dialed_once;
    struct st_tr_conn *conn;
    struct st_list queue; /* st_tr_out waiting for a connection */
    uint32_t queue_msgs;
    uint64_t queue_bytes;
    uint32_t backoff_ms;
    uint64_t down_since_ms; /* first failed dial of this outage (0: none) */
    uv_timer_t timer;
    bool timer_open;
    uv_getaddrinfo_t gai;
    bool gai_pending;
    struct addrinfo *ai_list; /* resolved addresses of the current dial round */
    struct addrinfo *ai_next; /* the next one to try if a connect fails */
    struct st_tr_snap_out *snap_out;
    struct st_tr_snap_in *snap_in;
    bool busy_notify;      /* back-pressure drops to report (coalesced) */
    uint8_t busy_msg_type; /* the last one dropped */
    void *tls_session;     /* dialer: the last TLS session with this peer (resumption) */
};

struct st_tr {
    uv_loop_t *loop;
    struct st_tr_config cfg;
    struct st_tr_callbacks cbs;
    struct st_rng rng;
    uv_tcp_t listener;
    bool listener_open;
    uint64_t accept_warned_ms; /* last "accept failed" trace line (one a second at most) */
    uv_timer_t notify_timer;   /* reports back-pressure drops outside API calls */
    uv_timer_t sweep_timer;    /* drops messages that waited queue_wait_ms for a connection */
    uv_timer_t turn_timer;     /* resumes the reads of turn-paused connections (due at once) */
    struct st_list peers;
    struct st_list conns;
    uint32_t inbound_pending;
    uint32_t learned;              /* peers learned from their HELLO (at most ST_TR_LEARNED_MAX) */
    struct st_tls_ctx *tls_server; /* both NULL without TLS */
    struct st_tls_ctx *tls_client;
    struct wire_msg wm;
    struct st_list out_pool; /* free pooled st_tr_out blocks */
    uint32_t out_pool_n;
    struct st_tr_stats stats;
    uint32_t live;
    uint32_t snap_stream_seq;
    bool destroying;
    void (*done_cb)(void *arg);
    void *done_arg;
};

/* ---------------------------------------------------------------- helpers */

static inline int uv_to_st(int uverr)
{
    return uverr < 0 ? st_errno_to_code(-uverr) : 0;
}

static inline struct st_tr_peer *peer_find(const struct st_tr *tr, raft_id id)
{
    for (struct st_list *l = tr->peers.next; l != &tr->peers; l = l->next) {
        struct st_tr_peer *p = ST_CONTAINER_OF(l, struct st_tr_peer, link);
        if (p->id == id) return p;
    }
    return NULL;
}

static inline char *uv_base(const uint8_t *p)
{
    return (char *)(uintptr_t)p; /* libuv's buffers are not const; we never write through them */
}

/* ------------------------------------------------------------ across files
 * All run on the loop thread. Ownership follows the objects' lifetimes
 * described above: nothing here frees what its caller still uses, except
 * where it says so. */

/* transport.c */
/* Frees tr once it is being destroyed and nothing is live (tr->live == 0),
 * then calls the done callback. Safe to call at any time. */
void st_tr_maybe_free(struct st_tr *tr);

/* transport_send.c */
/* A frame with room for nbufs buffers, nrefs payload references and
 * hdr_bytes of inline header; NULL without memory. Small ones come from the
 * pool (no malloc per message). Freed by st_tr_out_free. */
struct st_tr_out *st_tr_out_alloc(struct st_tr *tr, uint8_t kind, uint32_t nbufs, uint32_t nrefs,
                                  size_t hdr_bytes);
/* Drops o's payload references and returns it to the pool or the heap. */
void st_tr_out_free(struct st_tr_out *o);
/* Frees the pool's free blocks (destroy). */
void st_tr_out_pool_drain(struct st_tr *tr);
/* Hands o to uv_write on c (ownership moves to the write's callback);
 * libuv's error code if the write could not start (o still the caller's). */
int st_tr_conn_write(struct st_tr_conn *c, struct st_tr_out *o);
/* Closes c with status from a timer, outside the current API call. */
void st_tr_conn_doom(struct st_tr_conn *c, int status);
/* A write finished (status from libuv): accounting, callbacks, frees o and
 * closes c after an error or a refusal. */
void st_tr_out_written(struct st_tr_out *o, int status);
/* Writes a control frame (handshake, snapshot control); close_after closes
 * the connection once it is written. Failures close the connection. */
void st_tr_conn_send_ctrl(struct st_tr_conn *c, uint8_t type, const uint8_t *body, uint32_t len,
                          bool close_after);
/* Drops what is queued now; a callback that sends again to p queues anew
 * (the queue is detached first, so this always terminates). */
void st_tr_peer_drop_queue(struct st_tr_peer *p, int status, bool notify);

/* transport_conn.c */
/* A new connection on tr->conns (tcp + timer handles initialised, counted
 * in tr->live, handshake deadline armed); NULL without memory. */
struct st_tr_conn *st_tr_conn_create(struct st_tr *tr, bool outbound, struct st_tr_peer *peer);
/* TCP_NODELAY and keepalive on an open connection. */
void st_tr_conn_set_options(struct st_tr_conn *c);
/* Moves c to CLOSING (terminal) and closes its handles; with notify, what
 * it loses is reported through the callbacks. Idempotent. */
void st_tr_conn_close(struct st_tr_conn *c, int status, bool notify);
/* A peer broke the protocol: traces what and closes the connection. */
void st_tr_protocol_error(struct st_tr_conn *c, const char *what, int rv);
/* libuv read callbacks of every connection. */
void st_tr_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
void st_tr_on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);
/* libuv connection callback of the listener. */
void st_tr_on_connection(uv_stream_t *server, int status);

/* Sends the dialer's HELLO on c (connected, and with TLS, verified). */
void st_tr_conn_send_hello(struct st_tr_conn *c);
/* Plaintext bytes arrived at c->rbuf + c->rlen (n of them): frames are
 * parsed and dispatched. c may be closed on return. */
void st_tr_conn_plain(struct st_tr_conn *c, size_t n);

/* transport_tls.c: TLS on a connection (c->tls != NULL) */
/* Creates c->tls on the server or client context; 0 or ST_ENOMEM. */
int st_tr_tls_attach(struct st_tr_conn *c);
/* Ciphertext arrived in c->tls_rbuf (n bytes): advances the handshake and
 * hands the plaintext to st_tr_conn_plain() until none is left or c pauses
 * or closes. */
void st_tr_tls_on_read(struct st_tr_conn *c, size_t n);
/* Drains plaintext that TLS buffered while c was paused (resume). */
void st_tr_tls_pump(struct st_tr_conn *c);
/* Encrypts o's buffers and writes the ciphertext; st_tr_out_written(o)
 * follows when written. 0 or a negative code (o still the caller's). */
int st_tr_tls_write(struct st_tr_conn *c, struct st_tr_out *o);
/* Keeps the session of a closing dialed connection for its peer. */
void st_tr_tls_keep_session(struct st_tr_conn *c, struct st_tr_peer *p);
/* Frees the spare ciphertext write buffers of c (its handles are closed). */
void st_tr_tls_free_spares(struct st_tr_conn *c);

/* transport.c */
/* A new peer entry (its dialing not started). NULL without memory. */
struct st_tr_peer *st_tr_peer_new(struct st_tr *tr, raft_id id, const char *addr);
/* Removes a learned peer (its connection ended). */
void st_tr_peer_forget(struct st_tr_peer *p);

/* transport_dial.c */
/* Frees a removed peer once its timer and resolver request are finished. */
void st_tr_peer_maybe_free(struct st_tr_peer *p);
/* Frees the addresses of the current dial round. */
void st_tr_peer_free_addrs(struct st_tr_peer *p);
/* Connects to the next resolved address, or schedules a new round. */
void st_tr_peer_dial_next(struct st_tr_peer *p);
/* Arms the dial timer with the current backoff (jittered), plus
 * ST_TR_REVERSE_DIAL_MS for a peer with a smaller id than ours. */
void st_tr_peer_schedule_dial(struct st_tr_peer *p);
/* Timer callback of a peer: starts a dial round. */
void st_tr_on_dial_timer(uv_timer_t *t);

/* transport_snap_in.c: frame handlers of an inbound stream */
/* Ends p's inbound stream: status reported to the node when notify, an ACK
 * with status sent when send_ack. */
void st_tr_snap_in_end(struct st_tr_peer *p, int status, bool notify, bool send_ack);
/* The tail of a stream whose every byte arrived: the snapshot was stored
 * (rv 0: deliver it, acknowledge) or not (rv < 0: acknowledge the failure).
 * Frees si, which is no longer p->snap_in; c may be NULL (link gone). */
void st_tr_snap_in_complete(struct st_tr_conn *c, struct st_tr_peer *p, struct st_tr_snap_in *si,
                            int rv);
/* Reads stop until st_tr_conn_resume(): a snapshot receiver is writing what it
 * got (ST_TR_CB_PENDING); TCP's window then holds the sender back. */
void st_tr_conn_pause(struct st_tr_conn *c);
/* Undoes st_tr_conn_pause(): parses the frames that arrived before the pause,
 * then reads again (unless one of them paused or closed it again). */
void st_tr_conn_resume(struct st_tr_conn *c);
void st_tr_handle_snap_begin(struct st_tr_conn *c, const uint8_t *body, uint32_t len);
void st_tr_handle_snap_chunk(struct st_tr_conn *c, const uint8_t *body, uint32_t len);
void st_tr_handle_snap_end(struct st_tr_conn *c, const uint8_t *body, uint32_t len);
void st_tr_handle_snap_abort(struct st_tr_conn *c, const uint8_t *body, uint32_t len);

/* transport_snap_out.c */
/* The receiver's ACK of an outbound stream. */
void st_tr_handle_snap_ack(struct st_tr_conn *c, const uint8_t *body, uint32_t len);
/* Ends s: status reported to the node when notify, an ABORT sent when
 * send_abort; s is freed once no IO is outstanding. */
void st_tr_snap_out_finish(struct st_tr_snap_out *s, int status, bool notify, bool send_abort);
/* Write callback of a chunk frame. */
void st_tr_snap_out_chunk_written(struct st_tr_snap_out *s, int status);

#endif
