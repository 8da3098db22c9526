/* TLS over memory BIOs (OpenSSL 3), for the peer transport and the HTTP
 * server and client. The loop never waits on TLS: no socket is ever given to
 * OpenSSL. The owner of the socket feeds the ciphertext it read with
 * st_tls_conn_feed(), pulls plaintext with st_tls_conn_read(), pushes
 * plaintext with st_tls_conn_write() and writes whatever
 * st_tls_conn_take_output() hands it, in order, to the socket (the handshake
 * and TLS 1.3 session tickets produce output too: take it after every call).
 *
 * Contexts (struct st_tls_ctx) hold an SSL_CTX built from PEM files: a
 * certificate chain, its key and a CA bundle to verify the other side with.
 * TLS 1.3, 1.2 allowed, nothing older; renegotiation refused
 * (SSL_OP_NO_RENEGOTIATION); session tickets on (peers resume). Reloading
 * builds a new SSL_CTX and swaps it in only if everything loaded and the key
 * matches the certificate; connections made before keep the SSL_CTX they were
 * made with (OpenSSL counts its references), so a reload drops nothing.
 *
 * Peer identity: a node's certificate names it "stcache-node-<id>" in its
 * Common Name or in a DNS subjectAltName (scripts/gen-certs.sh makes such
 * certificates); st_tls_conn_peer_node_id() extracts the id once the
 * handshake has verified the chain.
 *
 * Error codes: ST_EINVAL (a file is unreadable or not what it must be; the
 * reason string says which), ST_EPERM (the other side's certificate failed
 * verification, or none was given where one is required), ST_EPROTO (TLS
 * protocol failure), ST_ENOMEM. Reason strings name files and OpenSSL's
 * reason, never key material.
 *
 * Not thread-safe: one context and its connections belong to one thread
 * (the node's loop), except that a context may be shared read-only by
 * threads that do not reload it. */
#ifndef ST_TLS_TLS_H
#define ST_TLS_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ST_TLS_REASON_MAX 256 /* bytes of a reason string, with the NUL */
#define ST_TLS_NODE_CN_PREFIX "stcache-node-"
#define ST_TLS_NAME_MAX 128 /* bytes of a certificate name (user), with the NUL */

enum st_tls_side { ST_TLS_SERVER, ST_TLS_CLIENT };

enum st_tls_verify {
    ST_TLS_VERIFY_NONE,     /* client: do not check the server (tests only) */
    ST_TLS_VERIFY_OPTIONAL, /* server: ask for a client certificate, verify it if given */
    ST_TLS_VERIFY_REQUIRE,  /* require a certificate from the other side and verify it */
};

struct st_tls_files {
    const char *cert_file; /* PEM chain; NULL: none (a client without a certificate) */
    const char *key_file;  /* PEM key of cert_file; NULL iff cert_file is NULL */
    const char *ca_file;   /* PEM CA bundle; NULL: the system's default paths */
};

struct st_tls_ctx;
struct st_tls_conn;

/* Builds a context. files' strings are copied (reload reads the same paths).
 * A server needs cert_file; REQUIRE and OPTIONAL need a CA (ca_file or the
 * system's). Returns 0 and *out, or ST_EINVAL/ST_ENOMEM with a reason in
 * `reason` (ST_TLS_REASON_MAX bytes; may be NULL). */
int st_tls_ctx_create(enum st_tls_side side, enum st_tls_verify verify,
                      const struct st_tls_files *files, struct st_tls_ctx **out, char *reason);

/* Re-reads the files named at creation. On success the new SSL_CTX serves
 * every connection created from now on; on failure (ST_EINVAL, ST_ENOMEM,
 * reason set) the old one stays in place untouched. */
int st_tls_ctx_reload(struct st_tls_ctx *ctx, char *reason);

/* Drops the caller's reference; connections still open keep what they use. */
void st_tls_ctx_destroy(struct st_tls_ctx *ctx);

/* Warns (returns true and fills reason) when the key file of ctx can be read
 * by others than its owner (mode & 077); false otherwise. */
bool st_tls_ctx_key_file_too_open(const struct st_tls_ctx *ctx, char *reason);

/* A new connection on the current SSL_CTX of ctx (it takes a reference).
 * For a client, sni may name the server (NULL: none): a host name (sent as
 * SNI) or an IP address, which the server's certificate must then carry in
 * its subjectAltName (checked with the chain unless VERIFY_NONE). The client starts the
 * handshake at the first st_tls_conn_handshake(). ST_ENOMEM. */
int st_tls_conn_create(struct st_tls_ctx *ctx, const char *sni, struct st_tls_conn **out);

void st_tls_conn_destroy(struct st_tls_conn *c);

/* Resumption (clients): hands an opaque session taken from an earlier
 * connection to the same server (st_tls_conn_take_session) to c before its
 * handshake; c takes its own reference. session may be NULL. */
void st_tls_conn_set_session(struct st_tls_conn *c, void *session);
/* The session of c, with a reference for the caller (free with
 * st_tls_session_free), or NULL when there is none worth keeping. */
void *st_tls_conn_take_session(struct st_tls_conn *c);
void st_tls_session_free(void *session);
/* true once a handshake resumed a session. */
bool st_tls_conn_resumed(const struct st_tls_conn *c);

/* Ciphertext read from the socket; the connection keeps it until read. */
int st_tls_conn_feed(struct st_tls_conn *c, const void *data, size_t len);

/* Advances the handshake. 0: done (or already done); ST_EBUSY: needs more
 * input (write the output first); ST_EPERM/ST_EPROTO: failed, with a reason
 * for the log in st_tls_conn_reason(). */
int st_tls_conn_handshake(struct st_tls_conn *c);
bool st_tls_conn_established(const struct st_tls_conn *c);

/* Plaintext out: > 0 bytes copied into buf, 0 when nothing is available yet
 * (feed more), ST_ECLOSED when the other side closed TLS, ST_EPROTO on a
 * failure (reason set). */
long st_tls_conn_read(struct st_tls_conn *c, void *buf, size_t cap);

/* Plaintext in: all len bytes are encrypted into the output (memory BIOs
 * grow; the caller bounds what it writes). 0, ST_EPROTO, ST_ENOMEM. */
int st_tls_conn_write(struct st_tls_conn *c, const void *data, size_t len);

/* Bytes of ciphertext waiting to go to the socket. */
size_t st_tls_conn_output_len(const struct st_tls_conn *c);
/* Moves up to cap bytes of output into buf; returns how many. */
size_t st_tls_conn_take_output(struct st_tls_conn *c, void *buf, size_t cap);

/* The last failure, for logs; "" if none. */
const char *st_tls_conn_reason(const struct st_tls_conn *c);

/* The node id the verified peer certificate names ("stcache-node-<id>" in
 * its CN or a DNS SAN): 0 and *id, ST_ENOENT when there is no verified
 * certificate or it names no node. */
int st_tls_conn_peer_node_id(const struct st_tls_conn *c, uint64_t *id);

/* The Common Name of the verified peer certificate (a client's user name):
 * 0 with name (NUL-terminated, at most cap bytes), ST_ENOENT when none,
 * ST_ETOOBIG when it does not fit. */
int st_tls_conn_peer_name(const struct st_tls_conn *c, char *name, size_t cap);

#endif
