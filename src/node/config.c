#include "node/config.h"

#include "stcache/errors.h"
#include "util/assert.h"
#include "util/trace.h"
#include "util/url.h"
#include "kv/txn.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void node_config_default(struct node_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->id = 1;
    snprintf(cfg->data_dir, sizeof cfg->data_dir, "%s", "./data");
    snprintf(cfg->raft_listen, sizeof cfg->raft_listen, "%s", "127.0.0.1:7001");
    snprintf(cfg->http_listen, sizeof cfg->http_listen, "%s", "127.0.0.1:8001");
    cfg->mode = NODE_START_RESTART;
    cfg->tick_ms = 10;
    cfg->election_ticks = 10;
    cfg->heartbeat_ticks = 1;
    cfg->raft_inflight = 1;
    cfg->snapshot_threshold = 65536;
    cfg->snapshot_interval_s = 0;
    cfg->snapshot_log_bytes = UINT64_C(64) << 20;
    cfg->max_key_bytes = 1024;
    cfg->watch_history_bytes = 16u << 20;
    cfg->watch_history_entries = 100000;
    cfg->watch_max = 1024;
    cfg->max_value_bytes = 1u << 20;
    cfg->max_txn_ops = 1024;
    cfg->max_sessions = 4096;
    cfg->request_timeout_ms = 5000;
    cfg->purge_interval_ms = 100;
    cfg->idempotency_keys_max = 100000;
    cfg->idempotency_ttl_s = 3600;
    cfg->waiters_max = 65536;
    cfg->promote_lag_entries = 64;
    cfg->seed = 0;
    cfg->snapshot_step_bytes = 1u << 20;
    cfg->snapshot_recv_bytes_max = 64ull << 30;
    cfg->wal_inline_max_us = 2000;
    cfg->wal_segment_bytes = 64ull << 20;
    cfg->client_output_bytes_max = 64u << 20;
    cfg->conn_output_bytes_max = 1u << 20;
    cfg->conns_per_ip_max = 256;
}

static const char *const eviction_names[] = {
    [NODE_EVICT_NONE] = "noeviction",           [NODE_EVICT_ALLKEYS_LRU] = "allkeys-lru",
    [NODE_EVICT_VOLATILE_LRU] = "volatile-lru", [NODE_EVICT_ALLKEYS_RANDOM] = "allkeys-random",
    [NODE_EVICT_VOLATILE_TTL] = "volatile-ttl",
};

const char *node_eviction_policy_name(enum node_eviction_policy p)
{
    return (size_t)p < ST_ARRAY_LEN(eviction_names) ? eviction_names[p] : "unknown";
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int node_addr_split(const char *addr, char *host, size_t hostlen, uint16_t *port)
{
    return st_url_hostport_split(addr, host, hostlen, port);
}

static int addr_valid(const char *a)
{
    char host[NODE_ADDR_MAX];
    uint16_t port;
    return strlen(a) < NODE_ADDR_MAX && node_addr_split(a, host, sizeof host, &port) == 0;
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!s || !*s || !isdigit((unsigned char)*s)) return ST_EINVAL;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < min || v > max) return ST_EINVAL;
    *out = v;
    return 0;
}

int node_peers_parse(const char *list, struct node_peer_addr *peers, uint32_t cap, char *err,
                     size_t errlen)
{
    uint32_t n = 0;
    const char *p = list;
    if (!list || !*list) {
        set_err(err, errlen, "empty peer list");
        return ST_EINVAL;
    }
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[2 * NODE_ADDR_MAX + 32];
        if (len == 0 || len >= sizeof item) {
            set_err(err, errlen, "bad peer entry in '%s' (want ID=HOST:PORT[/HTTPHOST:PORT])",
                    list);
            return ST_EINVAL;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        char *eq = strchr(item, '=');
        if (!eq) {
            set_err(err, errlen, "bad peer entry '%s' (want ID=HOST:PORT[/HTTPHOST:PORT])", item);
            return ST_EINVAL;
        }
        *eq = '\0';
        uint64_t id;
        if (parse_u64(item, 1, UINT64_MAX, &id) != 0) {
            set_err(err, errlen, "bad peer id '%s' (want a positive integer)", item);
            return ST_EINVAL;
        }
        if (n == cap) {
            set_err(err, errlen, "too many peers (at most %u)", cap);
            return ST_EINVAL;
        }
        char *raft = eq + 1;
        char *slash = strchr(raft, '/');
        const char *http = "";
        if (slash) {
            *slash = '\0';
            http = slash + 1;
        }
        if (!addr_valid(raft) || (slash && !addr_valid(http))) {
            set_err(err, errlen, "bad address in peer %" PRIu64 " (want HOST:PORT)", id);
            return ST_EINVAL;
        }
        for (uint32_t i = 0; i < n; i++) {
            if (peers[i].id == id) {
                set_err(err, errlen, "peer id %" PRIu64 " listed twice", id);
                return ST_EINVAL;
            }
        }
        peers[n].id = id;
        snprintf(peers[n].raft, sizeof peers[n].raft, "%s", raft);
        snprintf(peers[n].http, sizeof peers[n].http, "%s", http);
        n++;
        p = end ? end + 1 : p + len;
        if (end && !*p) {
            set_err(err, errlen, "trailing comma in peer list");
            return ST_EINVAL;
        }
    }
    return (int)n;
}

uint64_t node_cluster_id_from_peers(const struct node_peer_addr *peers, uint32_t n)
{
    /* Selection order by id (n <= RAFT_MEMBERS_MAX, so quadratic is fine). */
    uint64_t h = 1469598103934665603ull;
    raft_id last = 0;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t bi = n; /* index of the next id above last; n = none yet */
        for (uint32_t i = 0; i < n; i++) {
            if (peers[i].id > last && (bi == n || peers[i].id < peers[bi].id)) bi = i;
        }
        ST_ASSERT(bi < n);
        const struct node_peer_addr *best = &peers[bi];
        last = best->id;
        char item[NODE_ADDR_MAX + 32];
        int len = snprintf(item, sizeof item, "%" PRIu64 "=%s;", best->id, best->raft);
        for (int i = 0; i < len && (size_t)i < sizeof item; i++) {
            h ^= (uint8_t)item[i];
            h *= 1099511628211ull;
        }
    }
    return h ? h : 1;
}

size_t node_context_format(char *out, const char *raft_addr, const char *http_addr)
{
    int n;
    if (http_addr && *http_addr)
        n = snprintf(out, RAFT_MEMBER_CONTEXT_MAX, "raft=%s http=%s", raft_addr, http_addr);
    else
        n = snprintf(out, RAFT_MEMBER_CONTEXT_MAX, "raft=%s", raft_addr);
    ST_ASSERT(n > 0 && n < RAFT_MEMBER_CONTEXT_MAX);
    return (size_t)n;
}

static void context_field(const char *ctx, size_t len, const char *key, char *out)
{
    size_t kl = strlen(key);
    out[0] = '\0';
    size_t i = 0;
    while (i < len) {
        while (i < len && ctx[i] == ' ')
            i++;
        size_t start = i;
        while (i < len && ctx[i] != ' ')
            i++;
        size_t fl = i - start;
        if (fl > kl + 1 && memcmp(ctx + start, key, kl) == 0 && ctx[start + kl] == '=') {
            size_t vl = fl - kl - 1;
            if (vl >= NODE_ADDR_MAX) vl = NODE_ADDR_MAX - 1;
            memcpy(out, ctx + start + kl + 1, vl);
            out[vl] = '\0';
            return;
        }
    }
}

void node_context_parse(const char *ctx, size_t len, char *raft_addr, char *http_addr)
{
    context_field(ctx, len, "raft", raft_addr);
    context_field(ctx, len, "http", http_addr);
}

int node_config_validate(const struct node_config *cfg, char *err, size_t errlen)
{
    if (cfg->id == 0) {
        set_err(err, errlen, "--id must be a positive integer");
        return ST_EINVAL;
    }
    if (!cfg->data_dir[0]) {
        set_err(err, errlen, "--data must name a directory");
        return ST_EINVAL;
    }
    if (!addr_valid(cfg->raft_listen) || !addr_valid(cfg->http_listen)) {
        set_err(err, errlen, "--raft and --http must be HOST:PORT");
        return ST_EINVAL;
    }
    if ((cfg->advertise_raft[0] && !addr_valid(cfg->advertise_raft)) ||
        (cfg->advertise_http[0] && !addr_valid(cfg->advertise_http))) {
        set_err(err, errlen, "--advertise-raft and --advertise-http must be HOST:PORT");
        return ST_EINVAL;
    }
    if (cfg->force_new_cluster && cfg->mode != NODE_START_RESTART) {
        set_err(err, errlen,
                "--force-new-cluster restarts a node from its own data directory: it takes "
                "no --bootstrap, --join or --peers");
        return ST_EINVAL;
    }
    int peer_tls =
        !!cfg->peer_cert_file[0] + !!cfg->peer_key_file[0] + !!cfg->peer_trusted_ca_file[0];
    if (peer_tls != 0 && peer_tls != 3) {
        set_err(err, errlen,
                "peer TLS needs all of --peer-cert-file, --peer-key-file and "
                "--peer-trusted-ca-file");
        return ST_EINVAL;
    }
    if (!!cfg->cert_file[0] != !!cfg->key_file[0] ||
        (!cfg->cert_file[0] && (cfg->trusted_ca_file[0] || cfg->client_cert_auth))) {
        set_err(err, errlen,
                "client TLS needs --cert-file and --key-file (--trusted-ca-file and "
                "--client-cert-auth only with them)");
        return ST_EINVAL;
    }
    if (cfg->client_cert_auth && !cfg->trusted_ca_file[0]) {
        set_err(err, errlen, "--client-cert-auth needs --trusted-ca-file (the clients' CA)");
        return ST_EINVAL;
    }
    if (cfg->tick_ms == 0 || cfg->election_ticks < 2 || cfg->heartbeat_ticks == 0 ||
        cfg->heartbeat_ticks >= cfg->election_ticks) {
        set_err(err, errlen,
                "need --tick-ms >= 1, --election-ticks >= 2 and 1 <= --heartbeat-ticks < "
                "--election-ticks");
        return ST_EINVAL;
    }
    if (cfg->max_key_bytes == 0 || cfg->max_value_bytes == 0) {
        set_err(err, errlen, "--max-key-bytes and --max-value-bytes must be positive");
        return ST_EINVAL;
    }
    /* one entry (the largest command plus record framing) fits a segment */
    uint64_t entry_max = (uint64_t)cfg->max_value_bytes + cfg->max_key_bytes + (64u << 10);
    if (cfg->wal_segment_bytes % 4096 != 0 || cfg->wal_segment_bytes < entry_max) {
        set_err(err, errlen,
                "--wal-segment-bytes must be a multiple of 4096 and at least "
                "--max-value-bytes + --max-key-bytes + 64 KiB (%" PRIu64 ")",
                entry_max);
        return ST_EINVAL;
    }
    if (cfg->max_txn_bytes > (uint64_t)cfg->max_value_bytes + cfg->max_key_bytes) {
        set_err(err, errlen, "--max-txn-bytes must not exceed --max-value-bytes + --max-key-bytes");
        return ST_EINVAL;
    }
    if (cfg->request_timeout_ms == 0) {
        set_err(err, errlen, "--request-timeout-ms must be positive");
        return ST_EINVAL;
    }
    if (cfg->conn_output_bytes_max > cfg->client_output_bytes_max) {
        set_err(err, errlen, "--conn-output-bytes-max must not exceed --client-output-bytes-max");
        return ST_EINVAL;
    }
    /* Else a client reading a large value could be dropped for its size. */
    if (cfg->client_output_bytes_max < 2 * (uint64_t)cfg->max_value_bytes) {
        set_err(err, errlen, "--client-output-bytes-max must be at least twice --max-value-bytes");
        return ST_EINVAL;
    }
    if (cfg->mode == NODE_START_JOIN && !addr_valid(cfg->join_http)) {
        set_err(err, errlen, "--join needs the HTTP address of a member (HOST:PORT)");
        return ST_EINVAL;
    }
    if (cfg->mode == NODE_START_PEERS) {
        bool self = false;
        for (uint32_t i = 0; i < cfg->n_peers; i++)
            self |= cfg->peers[i].id == cfg->id;
        if (!self) {
            set_err(err, errlen, "--peers must include this node's --id %" PRIu64, cfg->id);
            return ST_EINVAL;
        }
    }
    return 0;
}

static int set_addr(char *dst, const char *name, const char *value, char *err, size_t errlen)
{
    if (!value || strlen(value) >= NODE_ADDR_MAX || !addr_valid(value)) {
        set_err(err, errlen, "--%s: bad address '%s' (want HOST:PORT)", name, value ? value : "");
        return ST_EINVAL;
    }
    snprintf(dst, NODE_ADDR_MAX, "%s", value);
    return 0;
}

static int set_mode(struct node_config *cfg, enum node_start_mode mode, const char *name, char *err,
                    size_t errlen)
{
    if (cfg->mode != NODE_START_RESTART && cfg->mode != mode) {
        set_err(err, errlen, "--%s: only one of --bootstrap, --join, --peers may be given", name);
        return ST_EINVAL;
    }
    cfg->mode = mode;
    return 0;
}

int node_config_set(struct node_config *cfg, const char *name, const char *value, char *err,
                    size_t errlen)
{
    uint64_t v;
    struct {
        const char *name;
        uint64_t min, max;
        int width; /* 32 or 64 */
        void *dst;
    } nums[] = {
        {"id", 1, UINT64_MAX, 64, &cfg->id},
        {"tick-ms", 1, 60000, 32, &cfg->tick_ms},
        {"election-ticks", 2, 100000, 32, &cfg->election_ticks},
        {"heartbeat-ticks", 1, 100000, 32, &cfg->heartbeat_ticks},
        {"raft-inflight", 1, 4096, 32, &cfg->raft_inflight},
        {"snapshot-threshold", 0, UINT64_MAX, 64, &cfg->snapshot_threshold},
        {"snapshot-interval", 0, 86400 * 365, 32, &cfg->snapshot_interval_s},
        {"snapshot-log-bytes", 0, UINT64_MAX, 64, &cfg->snapshot_log_bytes},
        {"max-memory", 0, UINT64_MAX, 64, &cfg->max_memory},
        {"max-key-bytes", 1, 1u << 16, 32, &cfg->max_key_bytes},
        {"max-value-bytes", 1, 16u << 20, 32, &cfg->max_value_bytes}, /* < frame bound */
        {"max-txn-ops", 1, KV_TXN_ITEMS_HARD_MAX, 32, &cfg->max_txn_ops},
        {"max-sessions", 1, 65536, 32, &cfg->max_sessions},
        {"max-txn-bytes", 0, 17u << 20, 64, &cfg->max_txn_bytes},
        {"request-timeout-ms", 1, 3600000, 32, &cfg->request_timeout_ms},
        {"purge-interval-ms", 1, 3600000, 32, &cfg->purge_interval_ms},
        {"idempotency-keys-max", 1, 10000000, 32, &cfg->idempotency_keys_max},
        {"idempotency-ttl-s", 1, 86400 * 30, 32, &cfg->idempotency_ttl_s},
        {"seed", 0, UINT64_MAX, 64, &cfg->seed},
        {"wal-inline-max-us", 0, 1000000, 32, &cfg->wal_inline_max_us},
        {"wal-segment-bytes", 64u << 10, 1u << 30, 64, &cfg->wal_segment_bytes},
        {"snapshot-recv-bytes-max", 4096, UINT64_MAX, 64, &cfg->snapshot_recv_bytes_max},
        {"client-output-bytes-max", 1u << 20, UINT64_MAX, 64, &cfg->client_output_bytes_max},
        {"conn-output-bytes-max", 4096, UINT64_MAX, 64, &cfg->conn_output_bytes_max},
        {"max-conns-per-ip", 0, 1000000, 32, &cfg->conns_per_ip_max},
        {"watch-history-bytes", 4096, UINT64_C(1) << 40, 64, &cfg->watch_history_bytes},
        {"watch-history-entries", 16, UINT64_C(1) << 32, 64, &cfg->watch_history_entries},
        {"watch-max", 0, 1000000, 32, &cfg->watch_max},
    };
    for (size_t i = 0; i < ST_ARRAY_LEN(nums); i++) {
        if (strcmp(name, nums[i].name) != 0) continue;
        if (parse_u64(value, nums[i].min, nums[i].max, &v) != 0) {
            set_err(err, errlen, "--%s: want an integer in [%" PRIu64 ", %" PRIu64 "], got '%s'",
                    name, nums[i].min, nums[i].max, value ? value : "");
            return ST_EINVAL;
        }
        if (nums[i].width == 32)
            *(uint32_t *)nums[i].dst = (uint32_t)v;
        else
            *(uint64_t *)nums[i].dst = v;
        return 0;
    }
    struct {
        const char *name;
        char *dst;
    } paths[] = {
        {"peer-cert-file", cfg->peer_cert_file},
        {"peer-key-file", cfg->peer_key_file},
        {"peer-trusted-ca-file", cfg->peer_trusted_ca_file},
        {"cert-file", cfg->cert_file},
        {"key-file", cfg->key_file},
        {"trusted-ca-file", cfg->trusted_ca_file},
        {"initial-admin-token-file", cfg->initial_admin_token_file},
        {"join-token-file", cfg->join_token_file},
    };
    for (size_t i = 0; i < ST_ARRAY_LEN(paths); i++) {
        if (strcmp(name, paths[i].name) != 0) continue;
        if (!value || !*value || strlen(value) >= NODE_PATH_MAX) {
            set_err(err, errlen, "--%s: want a file path", name);
            return ST_EINVAL;
        }
        snprintf(paths[i].dst, NODE_PATH_MAX, "%s", value);
        return 0;
    }
    if (strcmp(name, "data") == 0) {
        if (!value || !*value || strlen(value) >= NODE_PATH_MAX) {
            set_err(err, errlen, "--data: want a directory path");
            return ST_EINVAL;
        }
        snprintf(cfg->data_dir, sizeof cfg->data_dir, "%s", value);
        return 0;
    }
    if (strcmp(name, "raft") == 0) return set_addr(cfg->raft_listen, name, value, err, errlen);
    if (strcmp(name, "http") == 0) return set_addr(cfg->http_listen, name, value, err, errlen);
    if (strcmp(name, "redis") == 0) return set_addr(cfg->redis_listen, name, value, err, errlen);
    if (strcmp(name, "notify-keyspace-events") == 0) {
        /* Redis's letters (resp/cmd_pubsub.c interprets them). */
        if (!value || strlen(value) >= sizeof cfg->notify_keyspace_events ||
            value[strspn(value, "Ag$lshzxeKEtmdn")] != '\0') {
            set_err(err, errlen,
                    "--notify-keyspace-events: want Redis's letters "
                    "(Ag$lshzxeKEtmdn), e.g. KEA");
            return ST_EINVAL;
        }
        snprintf(cfg->notify_keyspace_events, sizeof cfg->notify_keyspace_events, "%s", value);
        return 0;
    }
    if (strcmp(name, "advertise-raft") == 0)
        return set_addr(cfg->advertise_raft, name, value, err, errlen);
    if (strcmp(name, "advertise-http") == 0)
        return set_addr(cfg->advertise_http, name, value, err, errlen);
    if (strcmp(name, "join") == 0) {
        int rc = set_mode(cfg, NODE_START_JOIN, name, err, errlen);
        return rc ? rc : set_addr(cfg->join_http, name, value, err, errlen);
    }
    if (strcmp(name, "peers") == 0) {
        int rc = set_mode(cfg, NODE_START_PEERS, name, err, errlen);
        if (rc) return rc;
        char perr[160];
        rc = node_peers_parse(value, cfg->peers, RAFT_MEMBERS_MAX, perr, sizeof perr);
        if (rc < 0) {
            set_err(err, errlen, "--peers: %s", perr);
            return rc;
        }
        cfg->n_peers = (uint32_t)rc;
        return 0;
    }
    if (strcmp(name, "bootstrap") == 0) {
        if (value && strcmp(value, "true") != 0 && strcmp(value, "false") != 0) {
            set_err(err, errlen, "--bootstrap takes no value (config file: true/false)");
            return ST_EINVAL;
        }
        if (value && strcmp(value, "false") == 0) return 0;
        return set_mode(cfg, NODE_START_BOOTSTRAP, name, err, errlen);
    }
    if (strcmp(name, "force-new-cluster") == 0) {
        if (value && strcmp(value, "true") != 0 && strcmp(value, "false") != 0) {
            set_err(err, errlen, "--force-new-cluster takes no value (config file: true/false)");
            return ST_EINVAL;
        }
        cfg->force_new_cluster = !value || strcmp(value, "true") == 0;
        return 0;
    }
    if (strcmp(name, "seed-api") == 0) {
        if (value && strcmp(value, "true") != 0 && strcmp(value, "false") != 0) {
            set_err(err, errlen, "--seed-api takes no value (config file: true/false)");
            return ST_EINVAL;
        }
        cfg->seed_api = !value || strcmp(value, "true") == 0;
        return 0;
    }
    if (strcmp(name, "client-cert-auth") == 0) {
        if (value && strcmp(value, "true") != 0 && strcmp(value, "false") != 0) {
            set_err(err, errlen, "--client-cert-auth takes no value (config file: true/false)");
            return ST_EINVAL;
        }
        cfg->client_cert_auth = !value || strcmp(value, "true") == 0;
        return 0;
    }
    if (strcmp(name, "auth") == 0 || strcmp(name, "insecure") == 0) {
        if (value && strcmp(value, "true") != 0 && strcmp(value, "false") != 0) {
            set_err(err, errlen, "--%s takes no value (config file: true/false)", name);
            return ST_EINVAL;
        }
        *(name[0] == 'a' ? &cfg->auth : &cfg->insecure) = !value || strcmp(value, "true") == 0;
        return 0;
    }
    if (strcmp(name, "allowed-hosts") == 0) {
        if (!value || !*value || strlen(value) >= NODE_ALLOWED_HOSTS_MAX ||
            strpbrk(value, " \t\r\n")) {
            set_err(err, errlen, "--allowed-hosts: want HOST[:PORT],... or * (no spaces)");
            return ST_EINVAL;
        }
        snprintf(cfg->allowed_hosts, sizeof cfg->allowed_hosts, "%s", value);
        return 0;
    }
    if (strcmp(name, "eviction-policy") == 0) {
        for (size_t i = 0; i < ST_ARRAY_LEN(eviction_names); i++) {
            if (value && strcmp(value, eviction_names[i]) == 0) {
                cfg->eviction_policy = (enum node_eviction_policy)i;
                return 0;
            }
        }
        set_err(err, errlen,
                "--eviction-policy: want noeviction, allkeys-lru, volatile-lru, "
                "allkeys-random or volatile-ttl, got '%s'",
                value ? value : "");
        return ST_EINVAL;
    }
    if (strcmp(name, "log-level") == 0) {
        enum st_trace_level level;
        if (!value || st_trace_parse_level(value, &level) != 0) {
            set_err(err, errlen, "--log-level: want debug, info, warn or error");
            return ST_EINVAL;
        }
        st_trace_set_level(level);
        return 0;
    }
    set_err(err, errlen, "unknown option --%s", name);
    return ST_ENOENT;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

int node_config_load_file(struct node_config *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        int code = st_errno_to_code(errno);
        set_err(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return code;
    }
    char line[1024];
    int lineno = 0;
    int rc = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            set_err(err, errlen, "%s:%d: line too long", path, lineno);
            rc = ST_EINVAL;
            break;
        }
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        char *s = trim(line);
        if (!*s) continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            set_err(err, errlen, "%s:%d: want 'key = value'", path, lineno);
            rc = ST_EINVAL;
            break;
        }
        *eq = '\0';
        char *key = trim(s);
        char *value = trim(eq + 1);
        if (strcmp(key, "config") == 0) {
            set_err(err, errlen, "%s:%d: 'config' cannot be nested", path, lineno);
            rc = ST_EINVAL;
            break;
        }
        char e2[200];
        rc = node_config_set(cfg, key, value, e2, sizeof e2);
        if (rc) {
            set_err(err, errlen, "%s:%d: %s", path, lineno, e2);
            rc = ST_EINVAL;
            break;
        }
    }
    fclose(f);
    return rc;
}
