/* The command table, its dispatch and the helpers of the RESP front end
 * (resp/cmd.h lists the files of the handlers). Behaviour follows Redis 7.0 command by command
 * (reply types, error texts); where stcache differs, docs/REDIS.md says so.
 *
 * Every command runs through node/node.h: writes are proposed (and
 * forwarded by a follower to the leader inside the cluster), reads are
 * linearizable (ReadIndex) unless the connection said READONLY. A command
 * over several keys reads them all after ONE linearizable barrier (a
 * ReadIndex read): once it returns, the local state is at least as new as
 * the read index, so reading the other keys locally at that moment is
 * linearizable too, and the keys are read at one point of the history. */
#include "resp/cmd.h"
#include "resp/cmd_scan.h"

#include <ctype.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stcache/errors.h"
#include "util/assert.h"
#include "util/trace.h"

/* ------------------------------------------------------------ helpers */

bool resp_arg_is(const struct resp_arg *a, const char *s)
{
    size_t n = strlen(s);
    if (a->len != n) return false;
    for (size_t i = 0; i < n; i++)
        if (tolower(a->p[i]) != s[i]) return false;
    return true;
}

void resp_reply_done_error(struct resp_slot *s, const char *msg)
{
    struct resp_out o = resp_slot_out(s);
    resp_reply_error(&o, msg);
    resp_slot_done(s);
}

void resp_reply_done_ok(struct resp_slot *s)
{
    struct resp_out o = resp_slot_out(s);
    resp_reply_simple(&o, "OK");
    resp_slot_done(s);
}

void resp_reply_syntax(struct resp_slot *s)
{
    resp_reply_done_error(s, "ERR syntax error");
}

void resp_reply_not_integer(struct resp_slot *s)
{
    resp_reply_done_error(s, "ERR value is not an integer or out of range");
}

void resp_reply_arity(struct resp_slot *s, const char *name)
{
    struct resp_out o = resp_slot_out(s);
    resp_reply_errorf(&o, "wrong number of arguments for '%s' command", name);
    resp_slot_done(s);
}

/* The Redis error of a node failure. `write`: the command proposed a
 * write, whose outcome a timeout leaves unknown. */
void resp_reply_node_error(struct resp_out *o, int rc, bool write)
{
    switch (rc) {
    case ST_ENOTLEADER:
        resp_reply_error(o, "TRYAGAIN no leader: the cluster is electing one");
        break;
    case ST_ECANCELED:
        resp_reply_error(o, "TRYAGAIN leadership changed before the write was committed: "
                            "it was not applied");
        break;
    case ST_ETIMEDOUT:
        if (write)
            resp_reply_error(o, "ERR timeout: the outcome of the write is unknown "
                                "(it may or may not have been applied)");
        else
            resp_reply_error(o, "TRYAGAIN read timed out");
        break;
    case ST_ECLOSED:
        if (write)
            resp_reply_error(o, "ERR the node is shutting down: the outcome of the write is "
                                "unknown");
        else
            resp_reply_error(o, "TRYAGAIN the node is shutting down");
        break;
    case ST_EBUSY:
    case ST_ECONFCHANGE:
    case ST_ETRANSFER:
        resp_reply_error(o, "TRYAGAIN the node is busy");
        break;
    case ST_EMEMLIMIT:
        resp_reply_error(o, "OOM command not allowed when used memory > 'maxmemory'.");
        break;
    case ST_ETOOBIG:
        resp_reply_error(o, "ERR key or value too large (--max-key-bytes, --max-value-bytes)");
        break;
    case ST_ENOSPC:
        resp_reply_error(o, "ERR the node's disk is full: writes are refused");
        break;
    case ST_EIO:
        resp_reply_error(o, "ERR storage failed: the node stopped serving");
        break;
    case ST_EINVAL:
        resp_reply_error(o, "ERR empty keys are not supported");
        break;
    default:
        resp_reply_errorf(o, "%s", st_strerror(rc));
        break;
    }
}

void resp_done_node_error(struct resp_slot *s, int rc, bool write)
{
    struct resp_out o = resp_slot_out(s);
    resp_reply_node_error(&o, rc, write);
    resp_slot_done(s);
}

bool resp_barrier_passed(struct resp_slot *s, const struct node_read_result *res)
{
    if (resp_slot_unhold(s)) return false;
    if (res->status != 0 && res->status != ST_ENOENT) {
        resp_done_node_error(s, res->status, false);
        return false;
    }
    return true;
}

enum node_consistency resp_read_mode(const struct resp_conn *c)
{
    return c->readonly ? NODE_READ_STALE : NODE_READ_LINEARIZABLE;
}

uint64_t resp_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Copies the keys argv[first], argv[first + step], ... into s->keys as
 * (u32 length, bytes) records. Returns false when out of memory. */
bool resp_keys_save(struct resp_slot *s, const struct resp_arg *argv, uint32_t first, uint32_t argc,
                    uint32_t step)
{
    st_membuf_reset(&s->keys);
    s->nkeys = 0;
    for (uint32_t i = first; i < argc; i += step) {
        uint32_t len = (uint32_t)argv[i].len;
        st_membuf_append(&s->keys, &len, sizeof len);
        st_membuf_append(&s->keys, argv[i].p, len);
        s->nkeys++;
    }
    return !s->keys.oom;
}

/* The i-th saved key: sequential walk with a cursor (offset). */
const uint8_t *resp_keys_next(struct resp_slot *s, size_t *off, size_t *len)
{
    uint32_t l;
    memcpy(&l, s->keys.data + *off, sizeof l);
    const uint8_t *p = (const uint8_t *)s->keys.data + *off + sizeof l;
    *off += sizeof l + l;
    *len = l;
    return p;
}

/* --------------------------------------------------------------- table */

/* Sorted by name (binary search). */
static const struct resp_cmd resp_cmds[] = {
    {"append", 3, CMD_WRITE, 1, 1, 1, resp_cmd_txn},
    {"auth", -2, CMD_CONN | CMD_FAST, 0, 0, 0, resp_cmd_auth},
    {"client", -2, CMD_CONN, 0, 0, 0, resp_cmd_client},
    {"command", -1, CMD_CONN, 0, 0, 0, resp_cmd_command},
    {"config", -2, CMD_ADMIN, 0, 0, 0, resp_cmd_config},
    {"dbsize", 1, CMD_READONLY | CMD_FAST, 0, 0, 0, resp_cmd_dbsize},
    {"decr", 2, CMD_WRITE | CMD_FAST, 1, 1, 1, resp_cmd_txn},
    {"decrby", 3, CMD_WRITE | CMD_FAST, 1, 1, 1, resp_cmd_txn},
    {"del", -2, CMD_WRITE, 1, -1, 1, resp_cmd_del},
    {"discard", 1, CMD_CONN | CMD_FAST, 0, 0, 0, resp_cmd_discard},
    {"echo", 2, CMD_FAST, 0, 0, 0, resp_cmd_echo},
    {"exec", 1, CMD_WRITE, 0, 0, 0, resp_cmd_exec},
    {"exists", -2, CMD_READONLY | CMD_FAST, 1, -1, 1, resp_cmd_exists},
    {"expire", -3, CMD_WRITE | CMD_FAST, 1, 1, 1, resp_cmd_txn},
    {"expireat", -3, CMD_WRITE | CMD_FAST, 1, 1, 1, resp_cmd_txn},
    {"expiretime", 2, CMD_READONLY | CMD_FAST, 1, 1, 1, resp_cmd_ttl},
    {"flushall", -1, CMD_WRITE | CMD_ADMIN, 0, 0, 0, resp_cmd_txn},
    {"flushdb", -1, CMD_WRITE | CMD_ADMIN, 0, 0, 0, resp_cmd_txn},
    {"get", 2, CMD_READONLY | CMD_FAST, 1, 1, 1, resp_cmd_get},
    {"getdel", 2, CMD_WRITE | CMD_FAST, 1, 1, 1, resp_cmd_txn},
    {"getex", -2, CMD_WRITE | CMD_FAST, 1, 1, 1, resp_cmd_txn},
    {"getrange", 4, CMD_READONLY, 1, 1, 1, resp_cmd_getrange},
    {"getset", 3, CMD_WRITE | CMD_FAST, 1, 1, 1, resp_cmd_txn},
    {"hdel", -3, CMD_WRITE | CMD_FAST, 1, 1, 1, resp_cmd_txn},
    {"hello", -1, CMD_CONN | CMD_FAST, 0, 0, 0, resp_cmd_hello},
    {"hexists", 3, CMD_READONLY | CMD_FAST, 1, 1, 1, resp_cmd_hread}, /* cmd_hash.c */
    {"hget", 3, CMD_READONLY | CMD_FAST, 1, 1, 1, resp_cmd_hread},
    {"hgetall", 2, CMD_READONLY, 1, 1, 1, resp_cmd_hread},
    {"hincrby", 4, CMD_WRITE | CMD_FAST, 1, 1, 1, resp_cmd_txn},
    {"hincrbyfloat", 4, CMD_WRITE | CMD_FAST, 1, 1, 1, resp_cmd_txn},
    {"hkeys", 2, CMD_READONLY, 1, 1, 1, resp_cmd_hread},
    {"hlen", 2, CMD_READONLY | CMD_FAST, 1, 1, 1, resp_cmd_hread},
    {"hmget", -3, CMD_READONLY | CMD_FAST, 1, 1, 1, resp_cmd_hread},
    {"hmset", -4, CMD_WRITE | CMD_FAST, 1, 1, 1, resp_cmd_txn},
    {"hscan", -3, CMD_READONLY, 1, 1, 1, resp_cmd_hscan},
    {"hset", -4, CMD_WRITE | CMD_FAST, 1, 1, 1, resp_cmd_txn},
    {"hsetnx", 4, CMD_WRITE | CMD_FAST, 1, 1, 1, resp_cmd_txn},
    {"hstrlen", 3, CMD_READONLY | CMD_FAST, 1, 1, 1, resp_cmd_hread},
    {"hvals", 2, CMD_READONLY, 1, 1, 1, resp_cmd_hread},
    {"incr", 2, CMD_WRITE | CMD_FAST, 1, 1, 1, resp_cmd_txn},
    {"incrby", 3, CMD_WRITE | CMD_FAST, 1, 1, 1, resp_cmd_txn},
    {"incrbyfloat", 3, CMD_WRITE | CMD_FAST, 1, 1, 1, resp_cmd_txn},
    {"info", -1, CMD_CONN, 0, 0, 0, resp_cmd_info},
    {"keys", 2, CMD_READONLY, 0, 0, 0, resp_cmd_keys}, /* cmd_scan.c */
    {"mget", -2, CMD_READONLY | CMD_FAST, 1, -1, 1, resp_cmd_mget},
    {"mset", -3, CMD_WRITE, 1, -1, 2, resp_cmd_txn},
    {"msetnx", -3, CMD_WRITE, 1, -1, 2, resp_cmd_msetnx},
    {"multi", 1, CMD_CONN | CMD_FAST, 0, 0, 0, resp_cmd_multi},
    {"persist", 2, CMD_WRITE | CMD_FAST, 1, 1, 1, resp_cmd_txn},
    {"pexpire", -3, CMD_WRITE | CMD_FAST, 1, 1, 1, resp_cmd_txn},
    {"pexpireat", -3, CMD_WRITE | CMD_FAST, 1, 1, 1, resp_cmd_txn},
    {"pexpiretime", 2, CMD_READONLY | CMD_FAST, 1, 1, 1, resp_cmd_ttl},
    {"ping", -1, CMD_FAST, 0, 0, 0, resp_cmd_ping},
    {"psetex", 4, CMD_WRITE, 1, 1, 1, resp_cmd_setex},
    {"psubscribe", -2, CMD_CONN, 0, 0, 0, resp_cmd_psubscribe},
    {"pttl", 2, CMD_READONLY | CMD_FAST, 1, 1, 1, resp_cmd_ttl},
    {"publish", 3, CMD_WRITE | CMD_FAST, 0, 0, 0, resp_cmd_publish},
    {"pubsub", -2, CMD_CONN, 0, 0, 0, resp_cmd_pubsub}, /* cmd_pubsub.c */
    {"punsubscribe", -1, CMD_CONN, 0, 0, 0, resp_cmd_punsubscribe},
    {"quit", -1, CMD_CONN | CMD_FAST, 0, 0, 0, resp_cmd_quit},
    {"randomkey", 1, CMD_READONLY, 0, 0, 0, resp_cmd_randomkey}, /* cmd_scan.c */
    {"readonly", 1, CMD_CONN | CMD_FAST, 0, 0, 0, resp_cmd_readonly},
    {"readwrite", 1, CMD_CONN | CMD_FAST, 0, 0, 0, resp_cmd_readonly},
    {"rename", 3, CMD_WRITE, 1, 2, 1, resp_cmd_txn},
    {"renamenx", 3, CMD_WRITE | CMD_FAST, 1, 2, 1, resp_cmd_txn},
    {"reset", 1, CMD_CONN | CMD_FAST, 0, 0, 0, resp_cmd_reset},
    {"scan", -2, CMD_READONLY, 0, 0, 0, resp_cmd_scan}, /* cmd_scan.c */
    {"select", 2, CMD_CONN | CMD_FAST, 0, 0, 0, resp_cmd_select},
    {"set", -3, CMD_WRITE, 1, 1, 1, resp_cmd_set},
    {"setex", 4, CMD_WRITE, 1, 1, 1, resp_cmd_setex},
    {"setnx", 3, CMD_WRITE | CMD_FAST, 1, 1, 1, resp_cmd_setnx},
    {"setrange", 4, CMD_WRITE, 1, 1, 1, resp_cmd_txn},
    {"strlen", 2, CMD_READONLY | CMD_FAST, 1, 1, 1, resp_cmd_ttl},
    {"subscribe", -2, CMD_CONN, 0, 0, 0, resp_cmd_subscribe},
    {"substr", 4, CMD_READONLY, 1, 1, 1, resp_cmd_getrange},
    {"time", 1, CMD_FAST, 0, 0, 0, resp_cmd_time},
    {"ttl", 2, CMD_READONLY | CMD_FAST, 1, 1, 1, resp_cmd_ttl},
    {"type", 2, CMD_READONLY | CMD_FAST, 1, 1, 1, resp_cmd_ttl},
    {"unlink", -2, CMD_WRITE | CMD_FAST, 1, -1, 1, resp_cmd_del},
    {"unsubscribe", -1, CMD_CONN, 0, 0, 0, resp_cmd_unsubscribe},
    {"unwatch", 1, CMD_CONN | CMD_FAST, 0, 0, 0, resp_cmd_unwatch},
    {"wait", 3, 0, 0, 0, 0, resp_cmd_wait},
    {"watch", -2, CMD_READONLY | CMD_FAST, 1, -1, 1, resp_cmd_watch},
};
static const size_t resp_n_cmds = sizeof resp_cmds / sizeof resp_cmds[0];

const struct resp_cmd *resp_cmd_table(size_t *n)
{
    *n = resp_n_cmds;
    return resp_cmds;
}

const struct resp_cmd *resp_cmd_lookup(const uint8_t *p, size_t len)
{
    char name[24];
    if (len == 0 || len >= sizeof name) return NULL;
    for (size_t i = 0; i < len; i++)
        name[i] = (char)tolower(p[i]);
    name[len] = '\0';
    size_t lo = 0, hi = resp_n_cmds;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int d = strcmp(name, resp_cmds[mid].name);
        if (d == 0) return &resp_cmds[mid];
        if (d < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* Redis 7.0's text: unknown command 'x', with args beginning with: 'a' 'b' */
static void reply_unknown(struct resp_slot *s, const struct resp_arg *argv, uint32_t argc)
{
    char args[160] = "";
    size_t used = 0;
    for (uint32_t i = 1; i < argc && used < 128; i++) {
        int n = snprintf(args + used, sizeof args - used, "'%.*s' ",
                         (int)(argv[i].len < 128 - used ? argv[i].len : 128 - used),
                         (const char *)argv[i].p);
        if (n < 0) break;
        used += (size_t)n;
        if (used >= sizeof args) used = sizeof args - 1;
    }
    struct resp_out o = resp_slot_out(s);
    resp_reply_errorf(&o, "unknown command '%.*s', with args beginning with: %s",
                      argv[0].len > 128 ? 128 : (int)argv[0].len, (const char *)argv[0].p, args);
    resp_slot_done(s);
}

/* The commands RESP2's subscribed mode allows. */
static bool pubsub_allowed(const struct resp_cmd *k)
{
    static const char *const ok[] = {"subscribe", "unsubscribe", "psubscribe", "punsubscribe",
                                     "ping",      "quit",        "reset"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (strcmp(k->name, ok[i]) == 0) return true;
    return false;
}

uint8_t resp_cmd_class(const struct resp_conn *c, const struct resp_arg *argv, uint32_t argc,
                       const struct resp_cmd **kp)
{
    (void)argc;
    const struct resp_cmd *k = resp_cmd_lookup(argv[0].p, argv[0].len);
    *kp = k;
    if (!k || resp_multi_queues(c, argv)) return RESP_OP_NONE; /* queued: not run now */
    if (k->flags & CMD_WRITE) return RESP_OP_WRITE;
    /* READONLY reads are answered at once, in order by construction. */
    if ((k->flags & CMD_READONLY) && !c->readonly) return RESP_OP_READ;
    return RESP_OP_NONE;
}

void resp_cmd_dispatch(struct resp_conn *c, struct resp_slot *s, const struct resp_cmd *k,
                       const struct resp_arg *argv, uint32_t argc)
{
    if (resp_arg_is(&argv[0], "post") || resp_arg_is(&argv[0], "host:")) {
        /* An HTTP request: a web page making the browser talk to this port
         * (cross-protocol scripting). As Redis does, no answer; the
         * connection is closed. */
        ST_TRACE_WARN("resp", "client %s sent an HTTP request: connection closed", c->addr);
        resp_conn_close_after(c);
        resp_slot_done(s);
        return;
    }
    bool queue = resp_multi_queues(c, argv);
    if (!k) {
        if (queue) resp_multi_queue(c, s, NULL, argv, argc); /* EXEC will abort */
        reply_unknown(s, argv, argc);
        return;
    }
    c->last_cmd = k->name;
    if ((k->arity > 0 && argc != (uint32_t)k->arity) ||
        (k->arity < 0 && argc < (uint32_t)-k->arity)) {
        if (queue) resp_multi_queue(c, s, NULL, argv, argc);
        resp_reply_arity(s, k->name);
        return;
    }
    /* Permissions before queueing too: a command refused inside MULTI
     * answers NOAUTH/NOPERM at once and makes EXEC abort, as Redis's ACL. */
    struct resp_auth_cmd ak = {k->first_key, k->last_key, k->step, (k->flags & CMD_WRITE) != 0,
                               (k->flags & CMD_ADMIN) != 0};
    if (!resp_auth_admit(c, s, k->name, &ak, argv, argc)) {
        if (queue) resp_multi_queue(c, s, NULL, argv, argc); /* marks it: EXECABORT */
        return;
    }
    if (resp_pubsub_mode(c) && !pubsub_allowed(k)) {
        /* RESP2 subscribed mode (Redis 7.0's text). */
        struct resp_out o = resp_slot_out(s);
        char full[64];
        bool container = strcmp(k->name, "pubsub") == 0 || strcmp(k->name, "config") == 0 ||
                         strcmp(k->name, "client") == 0 || strcmp(k->name, "command") == 0;
        size_t n = (size_t)snprintf(full, sizeof full, "%s", k->name);
        if (container && argc >= 2 && argv[1].len < sizeof full - n - 1) {
            full[n++] = '|';
            for (size_t i = 0; i < argv[1].len; i++)
                full[n++] = (char)tolower(argv[1].p[i]);
            full[n] = '\0';
        }
        resp_reply_errorf(&o,
                          "Can't execute '%s': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / "
                          "QUIT / RESET are allowed in this context",
                          full);
        resp_slot_done(s);
        return;
    }
    if (queue) {
        resp_multi_queue(c, s, k, argv, argc);
        return;
    }
    k->fn(c, s, argv, argc);
}
