/* Joining a running cluster: asking a seed to add us (retried), and the
 * join seeds kept in DATA/join-peers until the log teaches the
 * configuration. */
#include "node/node.h"

#include "http/client.h"
#include "util/json.h"
#include "node/node_int.h"
#include "stcache/errors.h"
#include "util/assert.h"
#include "util/trace.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define MOD "node"

/* ------------------------------------------------------------ join seeds
 *
 * A node that joined knows the cluster's members from the join answer only
 * until its log or a snapshot teaches it the configuration. Killed in
 * between, it restarted with no member to accept or dial and refused its
 * leader forever ("unknown peer id"). The answer's members are therefore
 * kept in DATA/join-peers (written before DATA/meta, which makes the
 * directory a node's, and so before the node first talks to a peer)
 * and loaded again on every restart; the configuration, once known, takes
 * precedence over them (want_peer). Format: one line per member,
 * "ID RAFT_ADDR HTTP_ADDR" ("-" for an unknown HTTP address). */
#define NODE_JOIN_PEERS_FILE "join-peers"

int node_seeds_save(struct node *n)
{
    char buf[RAFT_MEMBERS_MAX * (2 * NODE_ADDR_MAX + 32)];
    size_t off = 0;
    for (uint32_t i = 0; i < n->n_seed_peers; i++) {
        const struct node_peer_addr *p = &n->seed_peers[i];
        int w = snprintf(buf + off, sizeof buf - off, "%" PRIu64 " %s %s\n", p->id, p->raft,
                         p->http[0] ? p->http : "-");
        if (w < 0 || (size_t)w >= sizeof buf - off) return ST_ETOOBIG;
        off += (size_t)w;
    }
    return st_small_file_write(n->cfg.fs, n->cfg.data_dir, NODE_JOIN_PEERS_FILE, buf, off);
}

int node_seeds_load(struct node *n)
{
    char buf[RAFT_MEMBERS_MAX * (2 * NODE_ADDR_MAX + 32) + 1];
    char errtext[256] = "";
    struct st_errbuf eb = {errtext, sizeof errtext};
    size_t len = 0;
    int rc = st_small_file_read(n->cfg.fs, n->cfg.data_dir, NODE_JOIN_PEERS_FILE, buf,
                                sizeof buf - 1, &len, &eb);
    if (rc == ST_ENOENT) return 0;
    if (rc) {
        ST_TRACE_ERROR(MOD, "node %" PRIu64 ": %s/%s: %s%s%s", n->cfg.id, n->cfg.data_dir,
                       NODE_JOIN_PEERS_FILE, st_strerror(rc), errtext[0] ? ": " : "", errtext);
        return rc;
    }
    buf[len] = '\0';
    n->n_seed_peers = 0;
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line && n->n_seed_peers < RAFT_MEMBERS_MAX;
         line = strtok_r(NULL, "\n", &save)) {
        struct node_peer_addr *p = &n->seed_peers[n->n_seed_peers];
        char raft[NODE_ADDR_MAX], http[NODE_ADDR_MAX];
        char *end = NULL;
        errno = 0;
        unsigned long long id = strtoull(line, &end, 10);
        if (errno || end == line || *end != ' ' || id == 0 ||
            sscanf(end, "%79s %79s", raft, http) != 2) {
            ST_TRACE_ERROR(MOD, "node %" PRIu64 ": %s/%s: malformed line '%.80s'", n->cfg.id,
                           n->cfg.data_dir, NODE_JOIN_PEERS_FILE, line);
            return ST_ECORRUPT;
        }
        p->id = id;
        snprintf(p->raft, sizeof p->raft, "%s", raft);
        snprintf(p->http, sizeof p->http, "%s", strcmp(http, "-") == 0 ? "" : http);
        n->n_seed_peers++;
    }
    if (n->n_seed_peers)
        ST_TRACE_INFO(MOD, "node %" PRIu64 ": %u member(s) known from the join answer", n->cfg.id,
                      n->n_seed_peers);
    return 0;
}

static void join_timer_cb(uv_timer_t *t)
{
    node_join_send(t->data);
}

static void join_retry(struct node *n, const char *why)
{
    if (++n->join_attempts >= NODE_JOIN_ATTEMPTS_MAX) {
        ST_TRACE_ERROR(MOD, "node %" PRIu64 ": giving up joining via %s: %s", n->cfg.id,
                       n->cfg.join_http, why);
        node_started(n, ST_ECONNECTION);
        return;
    }
    ST_TRACE_INFO(MOD, "node %" PRIu64 ": join via %s: %s; retrying", n->cfg.id, n->cfg.join_http,
                  why);
    uv_timer_start(&n->join_timer, join_timer_cb, NODE_JOIN_RETRY_MS, 0);
}

static int join_parse_reply(struct node *n, const char *body, size_t len)
{
    struct st_jsonr_span doc = {body, len}, v, members, m;
    char hex[32];
    if (st_jsonr_validate(body, len) != 0 || !st_jsonr_get(doc, "cluster_id", &v) ||
        st_jsonr_string(v, hex, sizeof hex) != 0)
        return ST_EPROTO;
    char *end;
    errno = 0;
    unsigned long long cid = strtoull(hex, &end, 16);
    if (errno || *end || cid == 0) return ST_EPROTO;
    n->cluster_id = cid;
    n->n_seed_peers = 0;
    if (st_jsonr_get(doc, "members", &members)) {
        size_t cur = 0;
        while (st_jsonr_array_next(members, &cur, &m) && n->n_seed_peers < RAFT_MEMBERS_MAX) {
            struct node_peer_addr *p = &n->seed_peers[n->n_seed_peers];
            uint64_t id;
            if (!st_jsonr_get(m, "id", &v) || st_jsonr_uint(v, &id) != 0 ||
                !st_jsonr_get(m, "raft", &v) || st_jsonr_string(v, p->raft, sizeof p->raft) != 0)
                continue;
            p->id = id;
            p->http[0] = '\0';
            if (st_jsonr_get(m, "http", &v)) (void)st_jsonr_string(v, p->http, sizeof p->http);
            if (id != n->cfg.id) n->n_seed_peers++;
        }
    }
    return 0;
}

static void join_reply_cb(void *ctx, int status, const char *body, size_t len, const char *head,
                          size_t head_len)
{
    (void)head;
    (void)head_len;
    struct node *n = ctx;
    n->join_req = NULL;
    if (n->stopping) return;
    if (status == 200 || status == 201) {
        int rc = join_parse_reply(n, body, len);
        if (rc) {
            ST_TRACE_ERROR(MOD, "node %" PRIu64 ": bad join reply from %s: %.*s", n->cfg.id,
                           n->cfg.join_http, (int)ST_MIN(len, 200), body);
            node_started(n, rc);
            return;
        }
        ST_TRACE_INFO(MOD, "node %" PRIu64 ": joined cluster %016" PRIx64 " as a learner via %s",
                      n->cfg.id, n->cluster_id, n->cfg.join_http);
        rc = node_open_and_run(n, NULL);
        node_started(n, rc);
        return;
    }
    char why[256];
    if (status < 0)
        snprintf(why, sizeof why, "%s", st_strerror(status));
    else
        snprintf(why, sizeof why, "HTTP %d %.*s", status, (int)ST_MIN(len, 160), body);
    if (status < 0 || status >= 500) {
        join_retry(n, why);
        return;
    }
    ST_TRACE_ERROR(MOD, "node %" PRIu64 ": join refused by %s: %s", n->cfg.id, n->cfg.join_http,
                   why);
    node_started(n, ST_EINVAL);
}

void node_join_send(struct node *n)
{
    char body[3 * NODE_ADDR_MAX + 64];
    int len = snprintf(body, sizeof body, "{\"id\":%" PRIu64 ",\"raft\":\"%s\",\"http\":\"%s\"}",
                       n->cfg.id, n->advertise_raft, n->advertise_http);
    /* With client TLS, the member's client port speaks HTTPS too. */
    int rc = http_client_request_tls(n->client_tls_client, n->loop, n->cfg.join_http, "POST",
                                     "/cluster/members", "application/json",
                                     node_auth_join_header(n), body, (size_t)len,
                                     n->cfg.request_timeout_ms, join_reply_cb, n, &n->join_req);
    if (rc) join_retry(n, st_strerror(rc));
}
