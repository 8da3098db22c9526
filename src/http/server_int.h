/* Internals shared by the HTTP server files (server.c, server_conn.c,
 * server_parse.c, server_response.c); the contracts are in server.h. */
#ifndef ST_HTTP_SERVER_INT_H
#define ST_HTTP_SERVER_INT_H

#include <http_parser.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "http/server.h"
#include "tls/tls.h"
#include "util/list.h"
#include "util/membuf.h"

#define HTTP_PIPELINE_MAX_LIMIT 64u
/* How long a finished connection keeps draining the client's input. */
#define HTTP_LINGER_MS 2000u

enum slot_state {
    SLOT_FREE = 0,
    SLOT_PARSING, /* receiving the request */
    SLOT_HANDLER, /* with the handler */
    SLOT_READY,   /* response in out, waiting for its turn */
    SLOT_WRITING, /* response in a uv_write */
    SLOT_STREAM,  /* streaming: the last piece went out, the producer makes the next */
};

struct hdr_span {
    uint32_t name_off, name_len, value_off, value_len;
};

struct http_conn;

/* Open connections per client address (server_ipcount.c). */
struct http_ipcount_slot {
    uint8_t addr[16]; /* IPv6, or IPv4 mapped (::ffff:a.b.c.d) */
    uint32_t count;   /* 0 = empty slot */
};
struct http_ipcount {
    struct http_ipcount_slot *slots; /* cap entries, a power of two */
    uint32_t cap, used;
};
int http_ipcount_init(struct http_ipcount *t, uint32_t entries_max);
void http_ipcount_free(struct http_ipcount *t);
uint32_t http_ipcount_get(const struct http_ipcount *t, const uint8_t addr[16]);
/* ST_ENOMEM when the table already holds entries_max addresses. */
int http_ipcount_add(struct http_ipcount *t, const uint8_t addr[16]);
void http_ipcount_del(struct http_ipcount *t, const uint8_t addr[16]);

struct http_slot {
    struct http_request req; /* first: req <-> slot */
    struct http_conn *conn;
    enum slot_state state;
    int close_after; /* close the connection once this response is written */
    int http10;      /* the request was HTTP/1.0 */
    /* Head: "<url>\0<name>\0<value>\0...", at most head_bytes_max + NULs. */
    char *head;
    uint32_t head_len, head_cap;
    uint32_t head_bytes; /* request line + header bytes received (without our NULs) */
    uint32_t url_len;
    int url_done;
    struct hdr_span *hdrs; /* headers_max entries */
    uint32_t n_hdrs;
    int in_value; /* last header callback was a value */
    uint8_t *body;
    size_t body_len, body_cap;
    char *out; /* serialized response */
    size_t out_len, out_cap;
    /* A streaming response (http_response_stream_begin) while the producer
     * holds req: its body bytes still owed, and whom to ask for more. */
    int streaming;
    int chunked; /* HTTP_STREAM_CHUNKED: pieces are chunks, stream_end ends it */
    uint64_t stream_left;
    http_stream_more_cb stream_more;
    void *stream_ctx;
};

struct http_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    http_parser parser;
    struct http_server *srv;
    struct st_list link;       /* on srv->conns */
    struct st_list dirty_link; /* on srv->dirty while it has responses to flush */
    int handles_open;
    int closing; /* uv_close called */
    int reading;
    int eof;     /* client sent FIN */
    int no_more; /* no further requests are parsed (error, Connection: close) */
    int in_execute;
    int lingering; /* final response sent, FIN sent, discarding input until EOF */
    int writing;
    uint32_t write_slots; /* slots in the in-flight uv_write */
    int err_status;       /* set by a parser callback that rejects the request */
    const char *err_msg;
    char *rbuf;
    size_t rstart, rlen;   /* unparsed bytes: rbuf[rstart, rstart + rlen) */
    struct http_slot *cur; /* slot being parsed, NULL between requests */
    uint64_t cur_start_ms; /* loop time when cur began (request_timeout_ms) */
    uint64_t active_ms;    /* loop time of the last activity (idle_timeout_ms) */
    uint64_t timer_due_ms; /* when the armed timer fires (valid while active) */
    uint32_t head, count;  /* ring */
    uint32_t in_handler;
    /* Sum of out_len over READY and WRITING slots: charged to the server's
     * stats.out_bytes and out_budget; 0 once closing. */
    uint64_t out_bytes;
    int out_paused; /* out_bytes >= conn_out_bytes_max stopped the reading */
    /* Stall stamp (util/outbudget.h): taken when out_bytes leaves 0 and on
     * every sign that the client takes bytes; the smallest is dropped first. */
    uint64_t out_stamp;
    uint64_t out_progress_ms; /* loop time of the same events (idle_timeout_ms) */
    size_t wq_seen;           /* libuv write queue bytes when last looked at */
    uint8_t peer[16];         /* client address (IPv4 mapped), for ipcount */
    int peer_counted;         /* peer is counted in srv->ipcount */
    int admitted;             /* counted in srv->conns_open */
    /* TLS (cfg.tls): the connection, the ciphertext read buffer
     * (HTTP_TLS_IN_BYTES), the ciphertext of the responses in flight
     * (reused across writes: no allocation per response; released above
     * HTTP_BUF_KEEP_BYTES once written), and the verified client's name. */
    struct st_tls_conn *tls;
    uint8_t *tls_in;
    char *tls_out;
    size_t tls_out_cap;
    int tls_pumping; /* inside http_conn_tls_pump (no reentry) */
    int tls_seen;    /* some ciphertext arrived (plain-HTTP detection) */
    char tls_user[ST_TLS_NAME_MAX];
    struct http_slot slots[];
};

struct http_server {
    uv_loop_t *loop;
    struct http_server_config cfg;
    char host[64];
    uv_tcp_t listener;
    int listening;
    int listener_open;
    uv_idle_t flush_idle; /* flushes dirty connections once per loop iteration */
    int idle_open;
    int idle_active;
    struct st_list dirty; /* connections to flush (http_conn.dirty_link), newest first */
    int closing;
    http_handler_cb handler;
    void *handler_ctx;
    http_server_closed_cb closed_cb;
    void *closed_ctx;
    struct st_list conns; /* every allocated connection (http_conn.link), newest first */
    uint64_t conns_alive; /* allocated connections (open or draining) */
    /* Admitted connections not yet closing: what connections_max bounds (a
     * connection closed to admit another leaves it at once, while its
     * handles close later). */
    uint32_t conns_open;
    struct http_ipcount ipcount; /* used when cfg.conns_per_ip_max > 0 */
    struct st_outbudget *budget; /* cfg.out_budget, registered while the server lives */
    uv_timer_t trim_timer;
    int trim_open;
    uint64_t freed_bytes;  /* large buffers of closed connections freed since the last trim */
    uint64_t last_trim_ms; /* loop time of the last trim */
    int memory_trimmed;    /* last_trim_ms is valid */
    uint16_t port;
    uint64_t accept_warned_ms; /* last "accept failed" trace line (one a second at most) */
    struct http_server_stats stats;
    struct st_membuf err_body; /* http_response_error()'s JSON, reused */
};

/* server.c: helpers, configuration, the output bound, accepting, the server */
int http_ascii_casecmp_n(const char *a, size_t alen, const char *b);
void http_server_maybe_closed(struct http_server *srv);

/* server_response.c: request slots and response serialization */
int http_buf_reserve(char **data, size_t *cap, size_t need);
void http_conn_out_check_progress(struct http_conn *c);
int http_conn_out_full(const struct http_conn *c);
void http_conn_out_release(struct http_conn *c, size_t bytes);
void http_conn_out_stamp(struct http_conn *c);
size_t http_slot_free_buffers(struct http_slot *s);
void http_slot_release_head(struct http_conn *c);
int http_slot_done(const struct http_slot *s);
void http_conn_streams_orphan(struct http_conn *c);
struct http_slot *http_slot_take(struct http_conn *c);

/* server_conn.c: connection lifecycle, writing and reading */
void http_conn_close(struct http_conn *c);
/* The client's EOF (or TLS close_notify): no more input. */
void http_conn_eof(struct http_conn *c);
void http_conn_finish(struct http_conn *c);
int http_conn_flush(struct http_conn *c);
void http_conn_free(struct http_conn *c);
void http_conn_kick(struct http_conn *c);
void http_conn_touch(struct http_conn *c);
void http_conn_update_reading(struct http_conn *c);

/* server_tls.c: TLS on a connection (cfg.tls). Ciphertext in:
 * http_conn_tls_on_read() feeds what on_alloc/on_read received into
 * c->tls_in; plaintext goes to c->rbuf, where the parser takes it as
 * without TLS. Out: responses are encrypted into c->tls_out by
 * http_conn_tls_encrypt(); TLS's own records (handshake, tickets, alerts)
 * leave in writes of their own, in order with the responses (libuv keeps
 * writes in order). */
#define HTTP_TLS_IN_BYTES (17u * 1024u) /* a whole TLS record and its header */
int http_conn_tls_start(struct http_conn *c);
void http_conn_tls_free(struct http_conn *c);
void http_conn_tls_on_read(struct http_conn *c, size_t n);
/* Decrypts buffered input into rbuf while there is room and parses it. */
void http_conn_tls_pump(struct http_conn *c);
/* Encrypts bufs[0..n) into c->tls_out; 0 and *len, or ST_ENOMEM/ST_EPROTO. */
int http_conn_tls_encrypt(struct http_conn *c, const uv_buf_t *bufs, uint32_t n, size_t *len);
/* Sends len bytes outside the response ring (100 Continue): through TLS
 * when on. 0, or a negative code (the caller rejects the request). */
int http_conn_write_raw(struct http_conn *c, const char *data, size_t len);

/* server_parse.c: http_parser callbacks and the request pipeline */
void http_conn_parse_error(struct http_conn *c, enum http_errno e);
void http_conn_process(struct http_conn *c);

#endif
