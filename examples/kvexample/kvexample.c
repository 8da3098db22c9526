/* kvexample: a replicated key-value service on libstcache-raft, in one file.
 *
 * Modelled on etcd's raftexample. Each process is one member: the Raft core
 * (stcache/raft.h), the library's WAL (stcache/storage.h) and its libuv TCP
 * transport (stcache/transport.h), plus a line-oriented TCP API for clients:
 *
 *     PUT key value    -> "OK index" once committed and applied here (leader only,
 *                         else "ERR notleader <leader id>")
 *     GET key          -> "VALUE v" or "NOTFOUND": linearizable (ReadIndex), on
 *                         any member
 *     ADD id host:port -> "OK index": adds a voter (leader only)
 *     REMOVE id        -> "OK index": removes a member (leader only)
 *     WAITLEADER       -> "LEADER id" as soon as this member knows a leader
 *     STATUS           -> "STATUS id=.. role=.. leader=.. term=.. commit=.. applied=.."
 *
 * Start three members (the same --peers everywhere), then add a fourth:
 *     kvexample --id 1 --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003 \
 *               --api 127.0.0.1:8001 --data /tmp/kv1
 *     ... --id 2 / --id 3 likewise ...
 *     kvexample --id 4 --join --peers 1=...,2=...,3=...,4=127.0.0.1:7004 \
 *               --api 127.0.0.1:8004 --data /tmp/kv4
 *     printf 'ADD 4 127.0.0.1:7004\n' | nc -q1 127.0.0.1 8001      (on the leader)
 *
 * Simplifications a real service would not make (docs/RAFT.md says how):
 * the WAL is written and synced on the loop thread (st_log_writer does group
 * commit on a thread of its own); no snapshots are taken, so the log grows
 * without bound and a restart replays all of it; the state machine is a
 * linked list. Build: make (pkg-config --cflags --libs stcache-raft). */
#include <stcache/raft.h>
#include <stcache/storage.h>
#include <stcache/transport.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define TICK_MS 50
#define CLUSTER_ID 0x6b76u
#define LINE_BYTES_MAX 1024
#define PENDING_MAX 1024

/* ------------------------------------------------------ the state machine */

struct kv_item {
    struct kv_item *next;
    char *key;
    char *value;
};

static struct kv_item *kv_items;

static struct kv_item *kv_find(const char *key)
{
    for (struct kv_item *it = kv_items; it; it = it->next)
        if (strcmp(it->key, key) == 0) return it;
    return NULL;
}

/* Applies "key value" (the payload of a PUT entry). */
static void kv_apply(const uint8_t *data, uint32_t len)
{
    char *cmd = strndup((const char *)data, len);
    char *sp = cmd ? strchr(cmd, ' ') : NULL;
    if (!sp) {
        free(cmd);
        return;
    }
    *sp = '\0';
    struct kv_item *it = kv_find(cmd);
    if (!it) {
        it = calloc(1, sizeof(*it));
        if (!it) abort();
        it->key = strdup(cmd);
        it->next = kv_items;
        kv_items = it;
    }
    free(it->value);
    it->value = strdup(sp + 1);
    free(cmd);
}

/* ---------------------------------------------------------------- state */

static struct {
    raft_id id;
    bool join;
    char api_addr[64];
    char data_dir[512];
    struct raft_conf peers; /* from --peers: id and "host:port" as context */
    uv_loop_t *loop;
    uv_timer_t tick;
    uv_tcp_t api;
    struct raft *r;
    struct st_storage *storage;
    struct st_tr *tr;
    raft_index applied;
    uint64_t next_read_ctx;
} g;

/* --------------------------------------------------------------- clients */

struct client {
    uv_tcp_t tcp;
    char line[LINE_BYTES_MAX];
    size_t len;
    int waiting; /* pending requests naming this client */
    bool closed;
};

enum pending_kind { P_NONE = 0, P_WRITE, P_READ, P_LEADER };
struct pending {
    enum pending_kind kind;
    struct client *c;
    raft_index index; /* WRITE: the entry; READ: the read index once known */
    raft_term term;   /* WRITE: the entry's term (another term there: lost) */
    uint64_t ctx;     /* READ: context given to raft_read_index */
    bool index_known; /* READ */
    char key[LINE_BYTES_MAX];
};
static struct pending pending[PENDING_MAX];

static void on_client_closed(uv_handle_t *h)
{
    struct client *c = h->data;
    c->closed = true;
    if (c->waiting == 0) free(c);
}

static void on_written(uv_write_t *w, int status)
{
    free(w->data);
    free(w);
}

static void reply(struct client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply(struct client *c, const char *fmt, ...)
{
    if (c->closed || uv_is_closing((uv_handle_t *)&c->tcp)) return;
    char *buf = malloc(LINE_BYTES_MAX + 2);
    uv_write_t *w = malloc(sizeof(*w));
    if (!buf || !w) abort();
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, LINE_BYTES_MAX, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if (n >= LINE_BYTES_MAX) n = LINE_BYTES_MAX - 1;
    buf[n++] = '\n';
    w->data = buf;
    uv_buf_t b = uv_buf_init(buf, (unsigned)n);
    if (uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
        free(buf);
        free(w);
    }
}

static struct pending *pending_add(enum pending_kind kind, struct client *c)
{
    for (int i = 0; i < PENDING_MAX; i++)
        if (pending[i].kind == P_NONE) {
            memset(&pending[i], 0, sizeof(pending[i]));
            pending[i].kind = kind;
            pending[i].c = c;
            c->waiting++;
            return &pending[i];
        }
    return NULL;
}

static void pending_done(struct pending *p)
{
    struct client *c = p->c;
    p->kind = P_NONE;
    if (--c->waiting == 0 && c->closed) free(c);
}

/* Completes what the latest apply or leader change allows. */
static void pending_progress(void)
{
    for (int i = 0; i < PENDING_MAX; i++) {
        struct pending *p = &pending[i];
        if (p->kind == P_WRITE && g.applied >= p->index) {
            /* Another entry at that index means the proposal was lost with a
             * leader change: the client may retry. */
            if (raft_term_at(g.r, p->index) == p->term || raft_term_at(g.r, p->index) == 0)
                reply(p->c, "OK %" PRIu64, p->index);
            else
                reply(p->c, "ERR lost");
            pending_done(p);
        } else if (p->kind == P_READ && p->index_known && g.applied >= p->index) {
            struct kv_item *it = kv_find(p->key);
            if (it)
                reply(p->c, "VALUE %s", it->value);
            else
                reply(p->c, "NOTFOUND");
            pending_done(p);
        } else if (p->kind == P_LEADER && raft_leader(g.r) != RAFT_NONE) {
            reply(p->c, "LEADER %" PRIu64, raft_leader(g.r));
            pending_done(p);
        }
    }
}

/* ------------------------------------------------------------ the ready */

static void fatal(const char *what, int rc)
{
    fprintf(stderr, "kvexample %" PRIu64 ": %s: %s\n", g.id, what, st_strerror(rc));
    exit(1);
}

/* Sends one message. A peer the transport does not know yet (a member added
 * since we started) is added from its context in the configuration. */
static void send_msg(const struct raft_msg *m)
{
    int rc = st_tr_send(g.tr, m);
    if (rc == ST_ENOENT) {
        const struct raft_member *mb = raft_conf_find(raft_conf_get(g.r), m->to);
        if (mb && mb->context_len) {
            char addr[RAFT_MEMBER_CONTEXT_MAX + 1];
            memcpy(addr, mb->context, mb->context_len);
            addr[mb->context_len] = '\0';
            if (st_tr_peer_add(g.tr, m->to, addr) == 0) rc = st_tr_send(g.tr, m);
        }
    }
    /* Anything else (back-pressure, unknown peer): the message is lost, which
     * Raft tolerates; the leader probes again. */
    if (rc != 0) raft_report_unreachable(g.r, m->to);
}

static void apply_conf(const struct raft_entry *e)
{
    struct raft_conf_change cc;
    if (raft_conf_change_decode(e->data, e->len, &cc) != 0) return;
    printf("kvexample %" PRIu64 ": member %" PRIu64 " %s at index %" PRIu64 "\n", g.id, cc.id,
           cc.op == RAFT_CONF_REMOVE ? "removed" : "added", e->index);
    fflush(stdout);
    if (cc.id == g.id) return;
    if (cc.op == RAFT_CONF_REMOVE) {
        (void)st_tr_peer_remove(g.tr, cc.id);
    } else if (cc.context_len) {
        char addr[RAFT_MEMBER_CONTEXT_MAX + 1];
        memcpy(addr, cc.context, cc.context_len);
        addr[cc.context_len] = '\0';
        (void)st_tr_peer_add(g.tr, cc.id, addr); /* ST_EEXIST: known already */
    }
}

/* One ready, in the order of stcache/raft.h. */
static void handle_ready(void)
{
    struct raft_ready rd;
    raft_ready_get(g.r, &rd);
    if (rd.snapshot) {
        fprintf(stderr, "kvexample: snapshots are not supported by this example\n");
        exit(1);
    }
    /* 2. Persist entries and hard state: one batch, one fdatasync. */
    if (rd.n_entries || rd.hard_state_changed) {
        struct st_log_batch b = {
            .entries = rd.entries,
            .n_entries = rd.n_entries,
            .hard_state = rd.hard_state_changed ? &rd.hard_state : NULL,
        };
        struct st_log_store *log = &g.storage->log;
        int rc = log->ops->append(log->self, &b);
        if (rc == 0) rc = log->ops->sync(log->self);
        if (rc != 0) fatal("WAL write", rc); /* a failed sync is fatal: never retry */
    }
    /* 3. Messages that may precede the disk write; 4. the rest, which must
     * follow it (it is durable already: the write above was synchronous). */
    for (size_t i = 0; i < rd.n_msgs; i++)
        send_msg(&rd.msgs[i]);
    for (size_t i = 0; i < rd.n_msgs_after_persist; i++)
        send_msg(&rd.msgs_after_persist[i]);
    /* 5. Apply committed entries. */
    for (size_t i = 0; i < rd.n_committed; i++) {
        const struct raft_entry *e = &rd.committed[i];
        if (e->type == RAFT_ENTRY_NORMAL)
            kv_apply(e->data, e->len);
        else if (e->type == RAFT_ENTRY_CONF)
            apply_conf(e);
        g.applied = e->index;
    }
    if (rd.n_committed) raft_applied(g.r, g.applied);
    /* Read indexes the leader confirmed: serve once applied reaches them. */
    for (size_t i = 0; i < rd.n_reads; i++)
        for (int k = 0; k < PENDING_MAX; k++) {
            struct pending *p = &pending[k];
            if (p->kind != P_READ || p->ctx != rd.reads[i].context) continue;
            if (rd.reads[i].status != 0) {
                reply(p->c, "ERR %s", st_strerror(rd.reads[i].status));
                pending_done(p);
            } else {
                p->index = rd.reads[i].index;
                p->index_known = true;
            }
        }
    if (rd.soft_state_changed) {
        printf("kvexample %" PRIu64 ": %s, leader %" PRIu64 ", term %" PRIu64 "\n", g.id,
               raft_role_name(rd.role), rd.leader, rd.term);
        fflush(stdout);
    }
    /* 6. Done with the batch; 7. report what is durable. */
    raft_ready_ack(g.r, &rd);
    if (rd.persist_index) raft_persisted(g.r, rd.persist_index, rd.persist_term);
}

/* Called after every input (tick, peer message, client request). */
static void process(void)
{
    while (raft_has_ready(g.r))
        handle_ready();
    pending_progress();
}

/* ---------------------------------------------------------- transport */

static void on_peer_msg(void *ctx, raft_id from, const struct raft_msg *msg)
{
    (void)raft_step(g.r, msg); /* dropped input is counted, never fatal */
    process();
}

static void on_send_failed(void *ctx, raft_id peer, uint8_t msg_type, int status)
{
    raft_report_unreachable(g.r, peer);
}

static void on_tick(uv_timer_t *t)
{
    raft_tick(g.r);
    process();
}

/* -------------------------------------------------------- client API */

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        reply(c, __VA_ARGS__);                                                                     \
        return;                                                                                    \
    } while (0)

static void client_command(struct client *c, char *line)
{
    char *save = NULL;
    char *cmd = strtok_r(line, " ", &save);
    if (!cmd) return;
    if (strcmp(cmd, "PUT") == 0) {
        char *key = strtok_r(NULL, " ", &save);
        char *value = save;
        if (!key || !value || !*value) FAIL("ERR usage: PUT key value");
        size_t len = strlen(key) + 1 + strlen(value);
        struct raft_buf *buf = raft_buf_create(len);
        if (!buf) FAIL("ERR %s", st_strerror(ST_ENOMEM));
        memcpy(buf->data, key, strlen(key));
        buf->data[strlen(key)] = ' ';
        memcpy(buf->data + strlen(key) + 1, value, strlen(value));
        raft_index index = 0;
        raft_term term = 0;
        int rc = ST_ENOTLEADER;
        if (raft_role_get(g.r) == RAFT_LEADER)
            rc = raft_propose(g.r, buf, buf->data, (uint32_t)len, &index, &term);
        raft_buf_unref(buf); /* the core holds its own reference */
        if (rc == ST_ENOTLEADER) FAIL("ERR notleader %" PRIu64, raft_leader(g.r));
        if (rc != 0) FAIL("ERR %s", st_strerror(rc));
        struct pending *p = pending_add(P_WRITE, c);
        if (!p) FAIL("ERR %s", st_strerror(ST_EBUSY));
        p->index = index;
        p->term = term;
    } else if (strcmp(cmd, "GET") == 0) {
        char *key = strtok_r(NULL, " ", &save);
        if (!key) FAIL("ERR usage: GET key");
        struct pending *p = pending_add(P_READ, c);
        if (!p) FAIL("ERR %s", st_strerror(ST_EBUSY));
        snprintf(p->key, sizeof p->key, "%s", key);
        p->ctx = ++g.next_read_ctx;
        int rc = raft_read_index(g.r, p->ctx, RAFT_READ_SAFE);
        if (rc != 0) {
            reply(c, "ERR %s", st_strerror(rc));
            pending_done(p);
        }
    } else if (strcmp(cmd, "ADD") == 0 || strcmp(cmd, "REMOVE") == 0) {
        char *id = strtok_r(NULL, " ", &save);
        char *addr = strtok_r(NULL, " ", &save);
        struct raft_conf_change cc = {.op = cmd[0] == 'A' ? RAFT_CONF_ADD_VOTER : RAFT_CONF_REMOVE};
        cc.id = id ? strtoull(id, NULL, 10) : 0;
        if (cc.id == 0 || (cc.op == RAFT_CONF_ADD_VOTER && !addr))
            FAIL("ERR usage: ADD id host:port | REMOVE id");
        if (addr) {
            cc.context_len = (uint16_t)strnlen(addr, RAFT_MEMBER_CONTEXT_MAX);
            memcpy(cc.context, addr, cc.context_len);
        }
        raft_index index = 0;
        int rc = raft_propose_conf_change(g.r, &cc, &index);
        if (rc == ST_ENOTLEADER) FAIL("ERR notleader %" PRIu64, raft_leader(g.r));
        if (rc != 0) FAIL("ERR %s", st_strerror(rc));
        struct pending *p = pending_add(P_WRITE, c);
        if (!p) FAIL("ERR %s", st_strerror(ST_EBUSY));
        p->index = index;
        p->term = raft_term_get(g.r);
    } else if (strcmp(cmd, "WAITLEADER") == 0) {
        if (!pending_add(P_LEADER, c)) FAIL("ERR %s", st_strerror(ST_EBUSY));
    } else if (strcmp(cmd, "STATUS") == 0) {
        reply(c,
              "STATUS id=%" PRIu64 " role=%s leader=%" PRIu64 " term=%" PRIu64 " commit=%" PRIu64
              " applied=%" PRIu64,
              g.id, raft_role_name(raft_role_get(g.r)), raft_leader(g.r), raft_term_get(g.r),
              raft_commit_index(g.r), g.applied);
    } else {
        reply(c, "ERR unknown command %s", cmd);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char slab[64 * 1024];
    *buf = uv_buf_init(slab, sizeof slab);
}

static void on_client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct client *c = s->data;
    if (n < 0) {
        uv_close((uv_handle_t *)s, on_client_closed);
        return;
    }
    for (ssize_t i = 0; i < n; i++) {
        char ch = buf->base[i];
        if (ch == '\n') {
            c->line[c->len] = '\0';
            if (c->len && c->line[c->len - 1] == '\r') c->line[c->len - 1] = '\0';
            c->len = 0;
            client_command(c, c->line);
        } else if (c->len + 1 < sizeof c->line) {
            c->line[c->len++] = ch;
        }
    }
    process();
}

static void on_client(uv_stream_t *server, int status)
{
    if (status != 0) return;
    struct client *c = calloc(1, sizeof(*c));
    if (!c) return;
    uv_tcp_init(g.loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_client_read) != 0)
        uv_close((uv_handle_t *)&c->tcp, on_client_closed);
}

/* ---------------------------------------------------------------- main */

static int split_host_port(const char *addr, char *host, size_t cap, int *port)
{
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= cap) return -1;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    *port = atoi(colon + 1);
    return 0;
}

/* "1=127.0.0.1:7001,2=127.0.0.1:7002" into g.peers. */
static int parse_peers(const char *s)
{
    char *copy = strdup(s), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq || g.peers.n == RAFT_MEMBERS_MAX) return free(copy), -1;
        struct raft_member *m = &g.peers.members[g.peers.n++];
        m->id = strtoull(tok, NULL, 10);
        m->role = RAFT_VOTER;
        m->context_len = (uint16_t)strnlen(eq + 1, RAFT_MEMBER_CONTEXT_MAX);
        memcpy(m->context, eq + 1, m->context_len);
    }
    free(copy);
    return 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--id") == 0 && v)
            g.id = strtoull(argv[++i], NULL, 10);
        else if (strcmp(a, "--peers") == 0 && v) {
            if (parse_peers(argv[++i]) != 0) return fprintf(stderr, "bad --peers\n"), 2;
        } else if (strcmp(a, "--api") == 0 && v)
            snprintf(g.api_addr, sizeof g.api_addr, "%s", argv[++i]);
        else if (strcmp(a, "--data") == 0 && v)
            snprintf(g.data_dir, sizeof g.data_dir, "%s", argv[++i]);
        else if (strcmp(a, "--join") == 0)
            g.join = true;
        else
            return fprintf(stderr,
                           "usage: %s --id N --peers ID=HOST:PORT,... --api HOST:PORT "
                           "--data DIR [--join]\n",
                           argv[0]),
                   2;
    }
    const struct raft_member *self = raft_conf_find(&g.peers, g.id);
    if (!g.id || !self || !g.api_addr[0] || !g.data_dir[0])
        return fprintf(stderr,
                       "kvexample: --id (listed in --peers), --api and --data are required\n"),
               2;
    g.loop = uv_default_loop();

    /* Storage: identity, WAL and snapshot directory in --data; what was durable. */
    char why[512] = "";
    struct st_errbuf err = {why, sizeof why};
    struct st_storage_config scfg = {
        .dir = g.data_dir, .node_id = g.id, .cluster_id = CLUSTER_ID, .segment_bytes = 4u << 20};
    struct st_storage_state state;
    int rc = st_storage_open(&scfg, &g.storage, &state, &err);
    if (rc != 0) return fprintf(stderr, "kvexample: storage: %s %s\n", st_strerror(rc), why), 1;

    /* The core, from what the WAL holds; a new cluster starts from --peers
     * (every founding member with the same list), a joining member from
     * nothing: it learns the membership from the leader's log. */
    struct raft_config cfg;
    raft_config_default(&cfg, g.id);
    cfg.seed = g.id * 7919u;
    struct raft_bootstrap_state bst = {
        .hard_state = state.log.hard_state,
        .entries = state.log.entries,
        .n_entries = state.log.n_entries,
        .initial_conf = g.join ? NULL : &g.peers,
    };
    rc = raft_create(&cfg, &bst, &g.r);
    st_storage_state_release(&state); /* the core took its own references */
    if (rc != 0) fatal("raft_create", rc);

    /* Transport: listen on our --peers address, know every listed peer. */
    struct st_tr_config tcfg;
    char listen[RAFT_MEMBER_CONTEXT_MAX + 1];
    memcpy(listen, self->context, self->context_len);
    listen[self->context_len] = '\0';
    st_tr_config_default(&tcfg, g.id, CLUSTER_ID, listen);
    struct st_tr_callbacks cbs = {.msg_cb = on_peer_msg, .send_failed_cb = on_send_failed};
    if ((rc = st_tr_create(g.loop, &tcfg, &cbs, &g.tr)) != 0) fatal("st_tr_create", rc);
    if ((rc = st_tr_start(g.tr)) != 0) fatal("st_tr_start", rc);
    for (uint32_t i = 0; i < g.peers.n; i++) {
        const struct raft_member *m = &g.peers.members[i];
        if (m->id == g.id) continue;
        char addr[RAFT_MEMBER_CONTEXT_MAX + 1];
        memcpy(addr, m->context, m->context_len);
        addr[m->context_len] = '\0';
        if ((rc = st_tr_peer_add(g.tr, m->id, addr)) != 0) fatal("st_tr_peer_add", rc);
    }

    /* Client API. */
    char host[64];
    int port;
    struct sockaddr_in sa;
    if (split_host_port(g.api_addr, host, sizeof host, &port) != 0 ||
        uv_ip4_addr(host, port, &sa) != 0)
        return fprintf(stderr, "kvexample: bad --api %s\n", g.api_addr), 2;
    uv_tcp_init(g.loop, &g.api);
    if ((rc = uv_tcp_bind(&g.api, (const struct sockaddr *)&sa, 0)) != 0 ||
        (rc = uv_listen((uv_stream_t *)&g.api, 64, on_client)) != 0)
        return fprintf(stderr, "kvexample: --api %s: %s\n", g.api_addr, uv_strerror(rc)), 1;

    uv_timer_init(g.loop, &g.tick);
    uv_timer_start(&g.tick, on_tick, TICK_MS, TICK_MS);
    printf("kvexample %" PRIu64 ": peers on %s, clients on %s\n", g.id, listen, g.api_addr);
    fflush(stdout);
    process(); /* the first ready: a founding member persists the membership */
    return uv_run(g.loop, UV_RUN_DEFAULT);
}
