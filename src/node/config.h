/* The server's configuration: what `stcache server` flags and config files
 * produce, and what node_create() consumes. Pure parsing, no IO except
 * node_config_load_file().
 *
 * Addresses are "HOST:PORT" strings (IPv4 dotted quad or a name resolvable
 * with getaddrinfo; IPv6 as "[::1]:7001"). Member context stored in the raft
 * configuration (struct raft_member.context) is "raft=HOST:PORT http=HOST:PORT"
 * with the advertised addresses; "http=" may be absent (static --peers start
 * without HTTP addresses). */
#ifndef ST_NODE_CONFIG_H
#define ST_NODE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stcache/raft.h"

struct st_fs;

#define NODE_ADDR_MAX 80            /* bytes of a "host:port" string, NUL included */
#define NODE_PATH_MAX 512           /* bytes of the data directory path, NUL included */
#define NODE_ALLOWED_HOSTS_MAX 1024 /* bytes of the --allowed-hosts list, NUL included */

enum node_start_mode {
    NODE_START_RESTART = 0, /* from the data directory (error if it is empty) */
    NODE_START_BOOTSTRAP,   /* new single-node cluster: conf = {self voter} */
    NODE_START_PEERS,       /* static initial membership, all voters */
    NODE_START_JOIN,        /* ask a member's HTTP API to add us as a learner */
};

struct node_peer_addr {
    raft_id id;
    char raft[NODE_ADDR_MAX];
    char http[NODE_ADDR_MAX]; /* "" when unknown */
};

/* What the leader does when a write would take used memory (kv_used_bytes)
 * past max_memory; Redis's names. */
enum node_eviction_policy {
    NODE_EVICT_NONE = 0,       /* noeviction: refuse the write (507 out_of_memory) */
    NODE_EVICT_ALLKEYS_LRU,    /* evict the least recently used keys (approximated) */
    NODE_EVICT_VOLATILE_LRU,   /* ... among keys with a TTL */
    NODE_EVICT_ALLKEYS_RANDOM, /* evict random keys */
    NODE_EVICT_VOLATILE_TTL,   /* evict the keys with a TTL that expire soonest */
};
/* "noeviction", "allkeys-lru", ... */
const char *node_eviction_policy_name(enum node_eviction_policy p);

struct node_config {
    raft_id id;
    char data_dir[NODE_PATH_MAX];
    /* Peer mutual TLS (docs/SECURITY.md): all three or none ("" = none).
     * Re-read on SIGHUP (node_tls_reload). */
    char peer_cert_file[NODE_PATH_MAX];
    char peer_key_file[NODE_PATH_MAX];
    char peer_trusted_ca_file[NODE_PATH_MAX];
    /* Client-port TLS (HTTPS and the Redis port; docs/SECURITY.md):
     * cert_file and key_file together; trusted_ca_file verifies client
     * certificates (required with client_cert_auth, whose Common Name is
     * then the user) and the certificates of the other members' client
     * ports when this node calls them (forwarding, join; "" = the system's
     * CAs). Re-read on SIGHUP (node_tls_reload). */
    char cert_file[NODE_PATH_MAX];
    char key_file[NODE_PATH_MAX];
    char trusted_ca_file[NODE_PATH_MAX];
    bool client_cert_auth;
    char raft_listen[NODE_ADDR_MAX];
    char http_listen[NODE_ADDR_MAX];
    char advertise_raft[NODE_ADDR_MAX]; /* "" = raft_listen */
    char advertise_http[NODE_ADDR_MAX]; /* "" = http_listen */
    char redis_listen[NODE_ADDR_MAX];   /* --redis: RESP front end; "" = none */
    char notify_keyspace_events[32];    /* --notify-keyspace-events (Redis's letters); "" = off */

    enum node_start_mode mode;
    char join_http[NODE_ADDR_MAX];                 /* NODE_START_JOIN */
    struct node_peer_addr peers[RAFT_MEMBERS_MAX]; /* NODE_START_PEERS, self included */
    uint32_t n_peers;

    uint32_t tick_ms;
    uint32_t election_ticks;
    uint32_t heartbeat_ticks;
    /* Appends carrying entries in flight per follower (raft
     * inflight_msgs_max). 1 by default: a follower syncs its WAL one group
     * at a time, so a second append would wait behind the sync anyway; held
     * at the leader, the entries of that wait join one larger append (fewer
     * messages and fewer follower syncs). Raise it on high-latency links. */
    uint32_t raft_inflight;
    uint64_t snapshot_threshold;  /* entries applied since the last snapshot; 0 = never by count */
    uint32_t snapshot_interval_s; /* 0 = check the threshold after every apply batch */
    /* Payload bytes of the entries applied since the last snapshot that
     * trigger one (whatever the count or the interval); 0 = never by bytes.
     * A quarter of it bounds the trailing log kept behind a snapshot. */
    uint64_t snapshot_log_bytes;
    uint64_t max_memory; /* bytes of kv_used_bytes the leader admits; 0 = no limit */
    enum node_eviction_policy eviction_policy;
    uint32_t max_key_bytes;
    /* Watches (docs/HTTP-API.md "Watches"): the history's bounds and the
     * open watches at most. */
    uint64_t watch_history_bytes;
    uint64_t watch_history_entries;
    uint32_t watch_max;
    uint32_t max_value_bytes;
    uint32_t max_txn_ops;   /* guards + ops of one transaction (node_txn.h) */
    uint32_t max_sessions;  /* sessions in the table (node_session.h) */
    uint64_t max_txn_bytes; /* its encoded bytes; 0 = --max-value-bytes + --max-key-bytes */
    uint32_t request_timeout_ms;
    uint32_t purge_interval_ms; /* leader proposes PURGE_EXPIRED this often */
    /* Idempotency records (docs/KV.md): the bounds a write with an
     * Idempotency-Key proposed here carries into the log, where they apply
     * to the replicated table at that write. */
    uint32_t idempotency_keys_max; /* records kept, oldest dropped first */
    uint32_t idempotency_ttl_s;    /* a record's life, judged by the log clock */
    uint32_t waiters_max;          /* pending client writes and reads per node */
    uint64_t promote_lag_entries;  /* a learner within this many entries of commit is promoted */
    uint64_t seed;                 /* election jitter seed; 0 = from /dev/urandom */
    uint32_t snapshot_step_bytes;  /* snapshot bytes written per loop pass (1 MiB) */
    /* A leader's snapshot announced larger than this is refused before any
     * byte is received (and one larger than the free space of the data
     * directory's file system, less NODE_SNAPSHOT_DISK_MARGIN_BYTES). */
    uint64_t snapshot_recv_bytes_max;
    /* A lone client's WAL batch (and a follower's append while no client
     * waits on it) is written and synced on the loop thread
     * itself while the writer is idle and batches complete within this many
     * microseconds on average (default 2000; the policy: node/wal_inline.h);
     * 0: always through the writer's threads. */
    uint32_t wal_inline_max_us;
    /* Size of each preallocated WAL segment (default 64 MiB). A multiple of
     * 4096 that holds the largest entry the limits allow. */
    uint64_t wal_segment_bytes;
    /* Response bytes generated but not yet written, all client connections
     * of all front ends together; past it the slowest readers are dropped
     * (util/outbudget.h). Default 64 MiB. */
    uint64_t client_output_bytes_max;
    /* Queued response bytes at which one connection stops being read until
     * its output drains. Default 1 MiB; <= client_output_bytes_max. */
    uint64_t conn_output_bytes_max;
    /* Open HTTP connections per client address; more are refused at once
     * (503) without taking from the global bound. Default 256; 0 = none. */
    uint32_t conns_per_ip_max;
    /* Serve the seed's state-changing GET /set and GET /join (off by
     * default: any web page could trigger them, docs/SECURITY.md). */
    bool seed_api;
    /* Client authentication (docs/SECURITY.md): every request needs a
     * token with the right permission (node/auth.h). */
    bool auth;
    /* A file holding the first admin's token "USER.SECRET", proposed by a
     * leader while the user table is empty ("" = none). */
    char initial_admin_token_file[NODE_PATH_MAX];
    /* A file holding an admin's token that --join sends with its request
     * to a cluster running --auth ("" = none). */
    char join_token_file[NODE_PATH_MAX];
    /* Allow listening on non-loopback addresses without auth and TLS
     * (`stcache server` refuses otherwise). */
    bool insecure;
    /* Comma-separated Host header values the HTTP API answers ("name" or
     * "name:port"; "*" = any); "" = the default of api_host_allowed(). */
    char allowed_hosts[NODE_ALLOWED_HOSTS_MAX];
    /* Recovery from a lost quorum: restart from DATA with the configuration
     * rewritten to this node alone, through conf entries in its log
     * (raft_bootstrap_state.force_self; docs/OPERATIONS.md, runbook). Needs
     * an existing data directory; no start mode flag. */
    bool force_new_cluster;
    const struct st_fs *fs; /* tests: a simulated file system; NULL = the real one */
    /* Simulation (tests/wsim): every WAL batch is written on the loop thread,
     * never by the writer's threads, so that a run does not depend on how
     * fast a thread ran. Not a flag of `stcache server`. */
    bool wal_inline_always;
    bool bootstrap_if_empty; /* restart mode, but bootstrap an empty data directory
                              * (`stcache server` without any flag) */
};

/* Defaults: id 1, ./data, raft 127.0.0.1:7001, http 127.0.0.1:8001,
 * restart mode, tick 10 ms, election 10 ticks, heartbeat 1 tick, snapshot
 * threshold 65536 entries checked after every apply (no interval), keys 1024 bytes, values 1 MiB,
 * requests time out after 5000 ms, purge every 1000 ms. */
void node_config_default(struct node_config *cfg);

/* Checks that the configuration is usable; on error writes a one-line
 * reason into err (errlen bytes) and returns ST_EINVAL. */
int node_config_validate(const struct node_config *cfg, char *err, size_t errlen);

/* Sets one option by its flag name without dashes ("tick-ms", "peers", ...).
 * Boolean options ("bootstrap") take value NULL or "true"/"false".
 * Returns 0, or ST_EINVAL/ST_ENOENT (unknown name) with a reason in err. */
int node_config_set(struct node_config *cfg, const char *name, const char *value, char *err,
                    size_t errlen);

/* Reads `key = value` lines ('#' starts a comment) and applies them with
 * node_config_set(). Returns 0 or a negative code with "FILE:LINE: reason"
 * in err. */
int node_config_load_file(struct node_config *cfg, const char *path, char *err, size_t errlen);

/* Splits "host:port" (or "[v6]:port") into host (NUL-terminated, hostlen
 * bytes) and port. Returns 0 or ST_EINVAL. The node's name for
 * st_url_hostport_split (util/url.h), which it calls. */
int node_addr_split(const char *addr, char *host, size_t hostlen, uint16_t *port);

/* Parses "1=h:p,2=h:p" or "1=h:p/hh:hp,..." into peers (cap entries).
 * Returns the count (>= 1) or ST_EINVAL (with a reason in err). */
int node_peers_parse(const char *list, struct node_peer_addr *peers, uint32_t cap, char *err,
                     size_t errlen);

/* The cluster id of a static --peers cluster: a 64-bit FNV-1a hash of the
 * canonical list "id=raft;" sorted by id, so every node derives the same id.
 * Never 0. */
uint64_t node_cluster_id_from_peers(const struct node_peer_addr *peers, uint32_t n);

/* Member context "raft=R http=H" (http omitted when empty) into out
 * (RAFT_MEMBER_CONTEXT_MAX bytes); returns its length. */
size_t node_context_format(char *out, const char *raft_addr, const char *http_addr);
/* Extracts the raft and http addresses from a member context (either may
 * come back ""). */
void node_context_parse(const char *ctx, size_t len, char *raft_addr, char *http_addr);

#endif
