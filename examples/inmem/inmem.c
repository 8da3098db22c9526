/* inmem: three stcache Raft cores in one process, over an in-memory network.
 *
 * No sockets, no files, no threads, no clock: the program is the ready
 * contract of stcache/raft.h and nothing else. Each round it
 *   1. ticks every core (the logical clock),
 *   2. delivers every message in flight (raft_step),
 *   3. handles each core's readies: persist (the library's in-memory log
 *      store), send, apply, acknowledge, report what is durable,
 *   4. proposes commands on whichever core leads,
 * until every core has applied ENTRIES commands; then it checks that all
 * three applied the same entries in the same order and exits 0.
 *
 * Build against the installed library:
 *     cc -o inmem inmem.c $(pkg-config --cflags --libs stcache-raft)
 */
#include <stcache/raft.h>
#include <stcache/storage.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NODES 3
#define ENTRIES 200
#define ROUNDS_MAX 10000

/* ------------------------------------------------------------- network */

/* A message in flight: a deep copy, because everything reachable from a
 * ready is valid only until raft_ready_ack(). Entry payloads are not copied:
 * the packet holds a raft_buf reference on each. */
struct packet {
    struct packet *next;
    struct raft_msg msg;
    struct raft_snapshot_meta snap;
};

static struct packet *net_head, *net_tail;

static void net_send(const struct raft_msg *m)
{
    struct packet *p = calloc(1, sizeof(*p));
    if (!p) abort();
    p->msg = *m;
    if (m->n_entries) {
        p->msg.entries = calloc(m->n_entries, sizeof(struct raft_entry));
        if (!p->msg.entries) abort();
        for (uint32_t i = 0; i < m->n_entries; i++) {
            p->msg.entries[i] = m->entries[i];
            if (m->entries[i].buf) raft_buf_ref(m->entries[i].buf);
        }
    }
    if (m->snapshot) {
        p->snap = *m->snapshot;
        p->msg.snapshot = &p->snap;
    }
    if (net_tail)
        net_tail->next = p;
    else
        net_head = p;
    net_tail = p;
}

static void packet_free(struct packet *p)
{
    for (uint32_t i = 0; i < p->msg.n_entries; i++)
        raft_buf_unref(p->msg.entries[i].buf);
    free(p->msg.entries);
    free(p);
}

/* ---------------------------------------------------------------- nodes */

struct node {
    raft_id id;
    struct raft *r;
    struct st_log_store log; /* the library's in-memory twin of the WAL */
    /* The "state machine": a running digest of every applied command. */
    uint64_t digest;
    uint64_t applied_cmds;
    raft_index applied;
};

static struct node nodes[NODES];

static struct node *node_get(raft_id id)
{
    return id >= 1 && id <= NODES ? &nodes[id - 1] : NULL;
}

static void check(int rc, const char *what)
{
    if (rc != 0) {
        fprintf(stderr, "inmem: %s: %s\n", what, st_strerror(rc));
        exit(1);
    }
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* One ready, in the order stcache/raft.h prescribes. */
static void handle_ready(struct node *n)
{
    struct raft_ready rd;
    raft_ready_get(n->r, &rd);

    /* 1. A snapshot to install: none here (nobody calls raft_snapshot_taken). */
    if (rd.snapshot) {
        fprintf(stderr, "inmem: unexpected snapshot\n");
        exit(1);
    }
    /* 2. Persist entries and hard state: one batch, one sync. The store
     * copies what it keeps; a suffix from rd.entries[0].index is replaced. */
    if (rd.n_entries || rd.hard_state_changed) {
        struct st_log_batch b = {
            .entries = rd.entries,
            .n_entries = rd.n_entries,
            .hard_state = rd.hard_state_changed ? &rd.hard_state : NULL,
        };
        check(n->log.ops->append(n->log.self, &b), "append");
        check(n->log.ops->sync(n->log.self), "sync");
    }
    /* 3. Messages that may go before the disk write. */
    for (size_t i = 0; i < rd.n_msgs; i++)
        net_send(&rd.msgs[i]);
    /* 4. The write above is already durable (synchronous): the held
     * messages (votes, a follower's acknowledgements) may go now. */
    for (size_t i = 0; i < rd.n_msgs_after_persist; i++)
        net_send(&rd.msgs_after_persist[i]);
    /* 5. Apply committed entries. Conf entries were applied by the core
     * itself (membership takes effect when appended); no-ops carry nothing. */
    for (size_t i = 0; i < rd.n_committed; i++) {
        const struct raft_entry *e = &rd.committed[i];
        if (e->type == RAFT_ENTRY_NORMAL) {
            n->digest = fnv1a(n->digest, &e->index, sizeof e->index);
            n->digest = fnv1a(n->digest, e->data, e->len);
            n->applied_cmds++;
        }
        n->applied = e->index;
    }
    if (rd.n_committed) raft_applied(n->r, n->applied);
    if (rd.soft_state_changed && rd.role == RAFT_LEADER)
        printf("node %" PRIu64 " leads term %" PRIu64 "\n", n->id, rd.term);
    /* 6. Done with the batch; its pointers are invalid from here on. */
    raft_ready_ack(n->r, &rd);
    /* 7. Report durability (here at once; a real disk answers later). */
    if (rd.persist_index) raft_persisted(n->r, rd.persist_index, rd.persist_term);
}

static void drain_readies(void)
{
    for (int progress = 1; progress;) {
        progress = 0;
        for (int i = 0; i < NODES; i++)
            while (raft_has_ready(nodes[i].r)) {
                handle_ready(&nodes[i]);
                progress = 1;
            }
    }
}

static void deliver_all(void)
{
    while (net_head) {
        struct packet *p = net_head;
        net_head = p->next;
        if (!net_head) net_tail = NULL;
        struct node *to = node_get(p->msg.to);
        /* raft_step references what it keeps; the packet stays ours. Dropped
         * input (stale term, ...) is a value, not an error. */
        if (to) (void)raft_step(to->r, &p->msg);
        packet_free(p);
        drain_readies();
    }
}

int main(void)
{
    struct raft_conf conf = {.n = NODES};
    for (int i = 0; i < NODES; i++) {
        conf.members[i].id = (raft_id)(i + 1);
        conf.members[i].role = RAFT_VOTER;
    }
    for (int i = 0; i < NODES; i++) {
        struct node *n = &nodes[i];
        n->id = (raft_id)(i + 1);
        n->digest = 14695981039346656037ull;
        check(st_mem_log_create(&n->log), "st_mem_log_create");
        struct raft_config cfg;
        raft_config_default(&cfg, n->id);
        cfg.seed = 1000 + n->id; /* election jitter: deterministic per node */
        /* A brand-new cluster: every node starts from the same membership. */
        struct raft_bootstrap_state st = {.initial_conf = &conf};
        check(raft_create(&cfg, &st, &n->r), "raft_create");
    }

    int proposed = 0;
    int rounds = 0;
    for (; rounds < ROUNDS_MAX; rounds++) {
        for (int i = 0; i < NODES; i++)
            raft_tick(nodes[i].r);
        drain_readies();
        deliver_all();
        for (int i = 0; i < NODES && proposed < ENTRIES; i++) {
            struct node *n = &nodes[i];
            if (raft_role_get(n->r) != RAFT_LEADER) continue;
            /* Up to 10 commands per round on the leader. */
            for (int k = 0; k < 10 && proposed < ENTRIES; k++) {
                char cmd[32];
                int len = snprintf(cmd, sizeof cmd, "set x=%d", proposed);
                struct raft_buf *buf = raft_buf_create((size_t)len);
                if (!buf) abort();
                memcpy(buf->data, cmd, (size_t)len);
                int rc = raft_propose(n->r, buf, buf->data, (uint32_t)len, NULL, NULL);
                raft_buf_unref(buf); /* the core took its own reference */
                if (rc != 0) break;  /* ST_EBUSY, ...: retry next round */
                proposed++;
            }
        }
        drain_readies();
        deliver_all();
        int done = 0;
        for (int i = 0; i < NODES; i++)
            done += nodes[i].applied_cmds == ENTRIES;
        if (done == NODES) break;
    }

    int ok = 1;
    for (int i = 0; i < NODES; i++) {
        struct node *n = &nodes[i];
        printf("node %" PRIu64 ": applied %" PRIu64 " commands up to index %" PRIu64
               ", digest %016" PRIx64 "\n",
               n->id, n->applied_cmds, n->applied, n->digest);
        if (n->applied_cmds != ENTRIES || n->digest != nodes[0].digest) ok = 0;
    }
    for (int i = 0; i < NODES; i++) {
        raft_destroy(nodes[i].r);
        nodes[i].log.ops->close(nodes[i].log.self);
    }
    while (net_head) {
        struct packet *p = net_head;
        net_head = p->next;
        packet_free(p);
    }
    printf("%s after %d rounds\n",
           ok ? "inmem: all nodes applied the same entries" : "inmem: nodes DIFFER", rounds);
    return ok ? 0 : 1;
}
