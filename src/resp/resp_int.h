/* What the files of resp/ share: the connection and reply slot structures
 * (server.c owns them) and the command dispatch (commands.c). */
#ifndef ST_RESP_INT_H
#define ST_RESP_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "node/auth.h"
#include "resp/parse.h"
#include "resp/reply.h"
#include "resp/server.h"
#include "util/list.h"
#include "tls/tls.h"
#include "util/membuf.h"

/* Commands in flight per connection (pipelining depth before the
 * connection stops being read). */
#define RESP_PIPELINE_MAX 64u
/* A reply buffer grown past this is released after use. */
#define RESP_BUF_KEEP_BYTES (64u * 1024u)
#define RESP_CLIENT_NAME_BYTES_MAX 64u
#define RESP_LIB_BYTES_MAX 64u

struct resp_conn;
struct node_watch;

/* One command's reply. The command's handler writes the reply into out
 * (through resp_slot_out) and calls resp_slot_done() once, at once or from
 * a node callback later. keys holds copies of the arguments a multi-step
 * command still needs after its dispatch returned (the read buffer moves). */
struct resp_slot {
    struct resp_conn *conn;
    struct st_membuf out;
    struct st_membuf keys;
    uint32_t pending; /* node callbacks outstanding */
    bool busy;
    bool done;
    uint8_t cmd;      /* resp_cmd_kind of a multi-step command */
    uint8_t op_class; /* RESP_OP_* while counted in conn->ops_inflight */
    /* The protocol of the reply: the connection's when dispatched (a later
     * pipelined HELLO or RESET must not change a reply still pending). */
    uint8_t proto;
    long long count; /* e.g. keys deleted */
    int status;      /* the first failure of a multi-key write */
    uint32_t nkeys;
    long long a1, a2; /* integer arguments kept for the reply (GETRANGE) */
};

struct resp_conn {
    uv_tcp_t tcp; /* first */
    uv_write_t wreq;
    struct resp_server *srv;
    struct st_list link;       /* srv->conns */
    struct st_list dirty_link; /* srv->dirty while finished replies wait */
    uint64_t id;
    int proto;     /* 2 or 3 */
    bool readonly; /* READONLY: stale local reads */
    bool closing;  /* uv_close called */
    bool reading;
    bool writing;
    bool no_more;  /* no further command is parsed (QUIT, protocol error) */
    bool in_input; /* input_process is running (no reentry) */
    uint8_t *rbuf;
    size_t rstart, rlen, rcap; /* unparsed bytes: rbuf[rstart, rstart + rlen) */
    struct st_membuf wpend;    /* finished replies not yet handed to a write */
    struct st_membuf wfly;     /* the bytes of the write in flight */
    uint64_t out_bytes;        /* wpend + wfly: charged to the out budget */
    uint64_t out_stamp;        /* util/outbudget.h stall stamp */
    uint32_t head, count;      /* the slot ring */
    uint32_t inflight;         /* node callbacks outstanding on all slots */
    /* Per-connection order (Redis's): reads and writes of one connection
     * take effect in the order sent. Commands of one class (all reads, or
     * all writes) run concurrently (one ReadIndex round, one proposal
     * batch); a command of the other class waits, unparsed, until those
     * in flight are done (blocked). */
    uint32_t ops_inflight;
    uint8_t ops_class;
    bool blocked;
    uint64_t created_ms;
    uint64_t last_cmd_ms;
    char addr[64];
    char laddr[64];
    char name[RESP_CLIENT_NAME_BYTES_MAX + 1];
    char lib_name[RESP_LIB_BYTES_MAX + 1];
    char lib_ver[RESP_LIB_BYTES_MAX + 1];
    const char *last_cmd; /* a command table name (static), "NULL" before any */
    /* TLS (cfg.tls, server_tls.c): the connection, the ciphertext read
     * buffer (RESP_TLS_IN_BYTES), the ciphertext of the write in flight
     * (wfly encrypted; reused), no reentry into the plaintext pump. */
    struct st_tls_conn *tls;
    uint8_t *tls_in;
    struct st_membuf tls_out;
    bool tls_pumping;
    struct node_principal who; /* auth.c: set by AUTH / HELLO AUTH */
    /* MULTI/EXEC (cmd_txn.c): queued commands as (u32 argc, then argc x
     * (u32 len, bytes)), at most --max-txn-ops of them and
     * --max-txn-bytes; WATCHed keys as (u64 version, u32 len, bytes). */
    bool in_multi;
    bool multi_dirty; /* a command was refused while queueing: EXEC aborts */
    uint32_t multi_n;
    struct st_membuf multi_q;
    uint32_t watch_n;
    struct st_membuf watch;
    /* Pub/sub (cmd_pubsub.c): subscriptions as (u8 kind, u32 len, bytes)
     * records (kind 0 channel, 1 pattern), at most RESP_SUBS_MAX; linked
     * on srv->subscribers while there is one. psoft_ms: since when the
     * output is over the pubsub soft limit (0: not over). */
    struct st_membuf subs;
    uint32_t n_chan, n_pat;
    struct st_list sub_link;
    uint64_t psoft_ms;
    struct resp_slot slots[RESP_PIPELINE_MAX];
};

struct resp_server {
    uv_loop_t *loop;
    struct node *node;
    struct resp_server_config cfg;
    char listen[64];
    uv_tcp_t listener;
    uv_idle_t idle;
    int handles_open;
    bool closing;
    struct st_list conns;
    struct st_list dirty;
    uint32_t n_conns;     /* open (not closing) */
    uint32_t n_allocated; /* allocated, closing ones included */
    struct resp_limits lim;
    struct resp_arg *argv; /* lim.args_max: the command being dispatched */
    /* cmd_txn.c: the field lists of the hash ops of the TXN being built
     * (reset per proposal; node_txn copies them). */
    struct st_membuf hv;
    uint64_t next_id;
    uint64_t start_ms;
    uint64_t connections_total;
    uint64_t connections_rejected;
    uint64_t commands_total;
    uint64_t protocol_errors;
    uint64_t slow_dropped;
    /* Pub/sub (cmd_pubsub.c): the subscribed connections; the
     * notify-keyspace-events flags (RESP_NOTIFY_*) and the node watch that
     * feeds them (open while flags are set); Redis's client-output-buffer-
     * limit of the pubsub class; a scratch buffer for one message. */
    struct st_list subscribers;
    uint32_t notify_flags;
    struct node_watch *kwatch;
    uint64_t pubsub_hard_bytes, pubsub_soft_bytes, pubsub_soft_s;
    struct st_membuf pbuf;
    resp_server_closed_cb closed_cb;
    void *closed_ctx;
};

/* The reply writer of a slot, in its connection's protocol. */
static inline struct resp_out resp_slot_out(struct resp_slot *s)
{
    struct resp_out o = {&s->out, s->proto ? s->proto : s->conn->proto};
    return o;
}

/* Marks the slot's reply complete; its connection writes it once every
 * earlier reply is complete. */
void resp_slot_done(struct resp_slot *s);

/* A node callback for the slot is outstanding (hold, before the node call)
 * / has run (unhold, first thing in the callback; also when the node call
 * refused at once). The connection stays allocated while callbacks are
 * outstanding. unhold returns true when the connection is closing: the
 * callback must then not touch the slot again (it may be freed). */
void resp_slot_hold(struct resp_slot *s);
bool resp_slot_unhold(struct resp_slot *s);

/* Closes the connection once the replies before and including this one are
 * written (QUIT). */
void resp_conn_close_after(struct resp_conn *c);

/* server.c, for server_tls.c: closes c now; makes room for at least a
 * read chunk in rbuf (0 or ST_ENOMEM); true while the pipeline takes more
 * input; input: nread plaintext bytes were appended to rbuf: parse,
 * dispatch, pause reading when full, flush. */
void resp_conn_close(struct resp_conn *c);
int resp_conn_rbuf_room(struct resp_conn *c);
bool resp_conn_takes_input(const struct resp_conn *c);
void resp_conn_input(struct resp_conn *c, size_t nread);

/* server_tls.c: TLS on the Redis port, through tls/ memory BIOs. Plaintext
 * is pulled from OpenSSL only while resp_conn_takes_input (the rest waits
 * in OpenSSL, at most a read buffer of ciphertext, and is pulled by
 * resp_tls_pump when the connection resumes). encrypt: wfly's bytes into
 * tls_out (0, or a negative code: close). */
#define RESP_TLS_IN_BYTES (17u * 1024u)
int resp_tls_start(struct resp_conn *c);
void resp_tls_free(struct resp_conn *c);
void resp_tls_on_read(struct resp_conn *c, size_t n);
void resp_tls_pump(struct resp_conn *c);
int resp_tls_encrypt(struct resp_conn *c);

enum { RESP_OP_NONE = 0, RESP_OP_READ, RESP_OP_WRITE };
struct resp_cmd;
/* The class of a command for per-connection ordering: RESP_OP_READ for
 * linearizable reads of keys, RESP_OP_WRITE for writes, else NONE. *k is
 * its command table row (NULL: unknown), for resp_cmd_dispatch. */
uint8_t resp_cmd_class(const struct resp_conn *c, const struct resp_arg *argv, uint32_t argc,
                       const struct resp_cmd **k);

/* Runs one command (argv spans valid during the call only) for slot s; k
 * is what resp_cmd_class found for it. */
void resp_cmd_dispatch(struct resp_conn *c, struct resp_slot *s, const struct resp_cmd *k,
                       const struct resp_arg *argv, uint32_t argc);

/* ---- auth.c (docs/REDIS.md, "Authentication") ---- */

/* What the permission check needs of a command table row. */
struct resp_auth_cmd {
    int first_key, last_key, step; /* Redis's key positions (0: no keys) */
    bool write;                    /* its keys are written */
    bool admin;                    /* admin only (CONFIG, FLUSHALL, ...) */
};
/* A new connection: anonymous (the implicit admin with --auth off). */
void resp_auth_conn_init(struct resp_conn *c);
/* AUTH [user] token: 0 (the connection is now that user) or ST_EPERM (the
 * same for an unknown user and a wrong token: WRONGPASS). user NULL for
 * the one-argument form. Without --auth: Redis's passwordless default user
 * (0 for user NULL or "default"). */
int resp_auth_login(struct resp_conn *c, const struct resp_arg *user, const struct resp_arg *pass);
/* Before running command `name`: with --auth, NOAUTH until the connection
 * logged in (AUTH, HELLO with AUTH and QUIT pass), NOPERM for an admin
 * command or a key the user may not touch. Answers the slot and returns
 * false when refused. */
bool resp_auth_admit(struct resp_conn *c, struct resp_slot *s, const char *name,
                     const struct resp_auth_cmd *k, const struct resp_arg *argv, uint32_t argc);
/* Frees the MULTI and WATCH buffers (connection close; cmd_txn.c). */
void resp_multi_free(struct resp_conn *c);

/* ---- cmd_pubsub.c (docs/REDIS.md, "Pub/sub") ---- */

/* Subscriptions per connection, channels and patterns together. */
#define RESP_SUBS_MAX 4096u
/* Redis's client-output-buffer-limit pubsub 32mb 8mb 60. */
#define RESP_PUBSUB_HARD_BYTES (32u << 20)
#define RESP_PUBSUB_SOFT_BYTES (8u << 20)
#define RESP_PUBSUB_SOFT_S 60u

/* The server's pub/sub state at create (flags from --notify-keyspace-
 * events: 0 or ST_EINVAL) and at close (the keyspace watch is closed). */
int resp_pubsub_init(struct resp_server *srv, const char *notify_flags);
void resp_pubsub_fini(struct resp_server *srv);
/* A closing connection leaves every channel. */
void resp_pubsub_conn_close(struct resp_conn *c);
/* RESET: unsubscribes from everything without replies. */
void resp_pubsub_reset(struct resp_conn *c);
/* Whether c is in RESP2's subscribed mode (only (P)(UN)SUBSCRIBE, PING,
 * QUIT and RESET allowed). */
bool resp_pubsub_mode(const struct resp_conn *c);
/* notify-keyspace-events: parses Redis's letters into *flags (0 or
 * ST_EINVAL); formats flags as CONFIG GET shows them (cap >= 32). */
int resp_notify_flags_parse(const char *s, size_t len, uint32_t *flags);
void resp_notify_flags_format(uint32_t flags, char *out, size_t cap);
/* CONFIG SET notify-keyspace-events: sets the flags and opens or closes
 * the keyspace watch. 0 or ST_EINVAL / the watch's open error. */
int resp_notify_set(struct resp_server *srv, const char *s, size_t len);

/* server.c: appends a finished push message (msg) to c's output after the
 * replies already complete, charges it to the output bounds and schedules
 * the write. Past the pubsub hard limit, or over the soft limit for
 * pubsub_soft_s, the connection is closed instead (returns false). */
bool resp_conn_push(struct resp_conn *c, const struct st_membuf *msg);

/* Loop milliseconds. */
uint64_t resp_now_ms(const struct resp_server *srv);

#endif
