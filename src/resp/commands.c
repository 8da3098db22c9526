/* The command table and the connection, server and string/key commands of
 * the RESP front end. Behaviour follows Redis 7.0 command by command
 * (reply types, error texts); where stcache differs, docs/REDIS.md says so.
 *
 * Every command runs through node/node.h: writes are proposed (and
 * forwarded by a follower to the leader inside the cluster), reads are
 * linearizable (ReadIndex) unless the connection said READONLY. A command
 * over several keys reads them all after ONE linearizable barrier (a
 * ReadIndex read): once it returns, the local state is at least as new as
 * the read index, so reading the other keys locally at that moment is
 * linearizable too, and the keys are read at one point of the history. */
#include "resp/resp_int.h"
#include "resp/cmd_scan.h"

#include <ctype.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "node/node.h"
#include "stcache/errors.h"
#include "util/assert.h"
#include "util/trace.h"

#define RESP_VERSION "7.0.0"

enum {
    CMD_WRITE = 1u << 0,
    CMD_READONLY = 1u << 1,
    CMD_FAST = 1u << 2,
    CMD_CONN = 1u << 3, /* connection state, no keys */
    CMD_ADMIN = 1u << 4,
};

typedef void (*resp_cmd_fn)(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                            uint32_t argc);

struct resp_cmd {
    const char *name; /* lower case */
    int arity;        /* Redis's: > 0 exactly, < 0 at least -arity */
    uint32_t flags;
    int first_key, last_key, step;
    resp_cmd_fn fn;
};

static const struct resp_cmd *cmd_lookup(const uint8_t *p, size_t len);

/* ------------------------------------------------------------ helpers */

static bool arg_is(const struct resp_arg *a, const char *s)
{
    size_t n = strlen(s);
    if (a->len != n) return false;
    for (size_t i = 0; i < n; i++)
        if (tolower(a->p[i]) != s[i]) return false;
    return true;
}

static void reply_done_error(struct resp_slot *s, const char *msg)
{
    struct resp_out o = resp_slot_out(s);
    resp_reply_error(&o, msg);
    resp_slot_done(s);
}

/* For the command files besides this one (resp_int.h). */
bool resp_arg_is(const struct resp_arg *a, const char *s)
{
    return arg_is(a, s);
}

void resp_reply_done_error(struct resp_slot *s, const char *msg)
{
    reply_done_error(s, msg);
}

static void reply_done_ok(struct resp_slot *s)
{
    struct resp_out o = resp_slot_out(s);
    resp_reply_simple(&o, "OK");
    resp_slot_done(s);
}

static void reply_syntax(struct resp_slot *s)
{
    reply_done_error(s, "ERR syntax error");
}

static void reply_not_integer(struct resp_slot *s)
{
    reply_done_error(s, "ERR value is not an integer or out of range");
}

static void reply_arity(struct resp_slot *s, const char *name)
{
    struct resp_out o = resp_slot_out(s);
    resp_reply_errorf(&o, "wrong number of arguments for '%s' command", name);
    resp_slot_done(s);
}

/* The Redis error of a node failure. `write`: the command proposed a
 * write, whose outcome a timeout leaves unknown. */
static void reply_node_error(struct resp_out *o, int rc, bool write)
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

static void done_node_error(struct resp_slot *s, int rc, bool write)
{
    struct resp_out o = resp_slot_out(s);
    reply_node_error(&o, rc, write);
    resp_slot_done(s);
}

static enum node_consistency read_mode(const struct resp_conn *c)
{
    return c->readonly ? NODE_READ_STALE : NODE_READ_LINEARIZABLE;
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Copies the keys argv[first], argv[first + step], ... into s->keys as
 * (u32 length, bytes) records. Returns false when out of memory. */
static bool keys_save(struct resp_slot *s, const struct resp_arg *argv, uint32_t first,
                      uint32_t argc, uint32_t step)
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
static const uint8_t *keys_next(struct resp_slot *s, size_t *off, size_t *len)
{
    uint32_t l;
    memcpy(&l, s->keys.data + *off, sizeof l);
    const uint8_t *p = (const uint8_t *)s->keys.data + *off + sizeof l;
    *off += sizeof l + l;
    *len = l;
    return p;
}

/* ---------------------------------------------- connection and server */

static void cmd_ping(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                     uint32_t argc)
{
    (void)c;
    if (argc > 2) {
        reply_arity(s, "ping");
        return;
    }
    struct resp_out o = resp_slot_out(s);
    if (argc == 2)
        resp_reply_bulk(&o, argv[1].p, argv[1].len);
    else
        resp_reply_simple(&o, "PONG");
    resp_slot_done(s);
}

static void cmd_echo(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                     uint32_t argc)
{
    (void)c;
    (void)argc;
    struct resp_out o = resp_slot_out(s);
    resp_reply_bulk(&o, argv[1].p, argv[1].len);
    resp_slot_done(s);
}

static bool name_valid(const struct resp_arg *a)
{
    for (size_t i = 0; i < a->len; i++)
        if (a->p[i] < '!' || a->p[i] > '~') return false;
    return true;
}

static void set_name(char *dst, size_t cap, const struct resp_arg *a)
{
    size_t n = a->len < cap - 1 ? a->len : cap - 1;
    memcpy(dst, a->p, n);
    dst[n] = '\0';
}

static void reply_hello_map(struct resp_conn *c, struct resp_slot *s)
{
    struct resp_out o = resp_slot_out(s);
    struct node_info *ni = malloc(sizeof *ni);
    bool leader = true;
    if (ni) {
        node_info_get(c->srv->node, ni);
        leader = ni->role == RAFT_LEADER;
        free(ni);
    }
    resp_reply_map(&o, 7);
    resp_reply_bulk_str(&o, "server");
    resp_reply_bulk_str(&o, "redis");
    resp_reply_bulk_str(&o, "version");
    resp_reply_bulk_str(&o, RESP_VERSION);
    resp_reply_bulk_str(&o, "proto");
    resp_reply_integer(&o, c->proto);
    resp_reply_bulk_str(&o, "id");
    resp_reply_integer(&o, (long long)c->id);
    resp_reply_bulk_str(&o, "mode");
    resp_reply_bulk_str(&o, "standalone");
    resp_reply_bulk_str(&o, "role");
    resp_reply_bulk_str(&o, leader ? "master" : "replica");
    resp_reply_bulk_str(&o, "modules");
    resp_reply_array(&o, 0);
    resp_slot_done(s);
}

/* AUTH and HELLO AUTH: auth.c (a token with --auth; without, Redis's
 * passwordless default user). */
static bool auth_ok(struct resp_conn *c, const struct resp_arg *user, const struct resp_arg *pass)
{
    return resp_auth_login(c, user, pass) == 0;
}

static void cmd_hello(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                      uint32_t argc)
{
    int proto = c->proto;
    uint32_t i = 1;
    if (argc >= 2) {
        long long v;
        if (!resp_parse_ll(argv[1].p, argv[1].len, &v)) {
            reply_done_error(s, "ERR Protocol version is not an integer or out of range");
            return;
        }
        if (v < 2 || v > 3) {
            reply_done_error(s, "NOPROTO unsupported protocol version");
            return;
        }
        proto = (int)v;
        i = 2;
    }
    const struct resp_arg *name = NULL;
    for (; i < argc; i++) {
        uint32_t left = argc - i - 1;
        if (arg_is(&argv[i], "auth") && left >= 2) {
            if (!auth_ok(c, &argv[i + 1], &argv[i + 2])) {
                reply_done_error(s, "WRONGPASS invalid username-password pair or user is "
                                    "disabled.");
                return;
            }
            i += 2;
        } else if (arg_is(&argv[i], "setname") && left >= 1) {
            name = &argv[i + 1];
            if (!name_valid(name)) {
                reply_done_error(s, "ERR Client names cannot contain spaces, newlines or special "
                                    "characters.");
                return;
            }
            i++;
        } else {
            struct resp_out o = resp_slot_out(s);
            resp_reply_errorf(&o, "Syntax error in HELLO option '%.*s'", (int)argv[i].len,
                              (const char *)argv[i].p);
            resp_slot_done(s);
            return;
        }
    }
    if (name) set_name(c->name, sizeof c->name, name);
    c->proto = proto;
    reply_hello_map(c, s);
}

static void cmd_auth(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                     uint32_t argc)
{
    if (argc > 3) {
        reply_syntax(s);
        return;
    }
    if (argc == 2 && !node_auth_enabled(c->srv->node)) {
        reply_done_error(s, "ERR AUTH <password> called without any password configured for "
                            "the default user. Are you sure your configuration is correct?");
        return;
    }
    if (!auth_ok(c, argc == 3 ? &argv[1] : NULL, &argv[argc - 1])) {
        reply_done_error(s, "WRONGPASS invalid username-password pair or user is disabled.");
        return;
    }
    reply_done_ok(s);
}

static void cmd_select(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                       uint32_t argc)
{
    (void)c;
    (void)argc;
    long long db;
    if (!resp_parse_ll(argv[1].p, argv[1].len, &db) || db < INT_MIN || db > INT_MAX) {
        reply_not_integer(s);
        return;
    }
    if (db != 0) {
        reply_done_error(s, "ERR DB index is out of range");
        return;
    }
    reply_done_ok(s);
}

static void cmd_quit(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                     uint32_t argc)
{
    (void)argv;
    (void)argc;
    resp_conn_close_after(c);
    reply_done_ok(s);
}

static void cmd_reset(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                      uint32_t argc)
{
    (void)argv;
    (void)argc;
    c->proto = 2;
    c->readonly = false;
    c->name[0] = '\0';
    resp_auth_conn_init(c); /* as Redis: RESET logs the connection out */
    struct resp_out o = resp_slot_out(s);
    resp_reply_simple(&o, "RESET");
    resp_slot_done(s);
}

static void cmd_readonly(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                         uint32_t argc)
{
    (void)argc;
    c->readonly = arg_is(&argv[0], "readonly");
    reply_done_ok(s);
}

/* One CLIENT LIST / CLIENT INFO line (Redis's field set, values we keep). */
static void client_line(const struct resp_conn *c, char *buf, size_t cap)
{
    uint64_t now = resp_now_ms(c->srv);
    uv_os_fd_t ofd;
    int fd = uv_fileno((const uv_handle_t *)&c->tcp, &ofd) == 0 ? (int)ofd : -1;
    snprintf(buf, cap,
             "id=%" PRIu64 " addr=%s laddr=%s fd=%d name=%s age=%" PRIu64 " idle=%" PRIu64
             " flags=%s db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=%zu qbuf-free=%zu argv-mem=0 "
             "multi-mem=0 rbs=%zu rbp=0 obl=0 oll=0 omem=%" PRIu64 " tot-mem=0 events=r cmd=%s "
             "user=default redir=-1 resp=%d lib-name=%s lib-ver=%s\n",
             c->id, c->addr, c->laddr, fd, c->name, (now - c->created_ms) / 1000,
             (now - c->last_cmd_ms) / 1000, c->readonly ? "r" : "N", c->rlen, c->rcap - c->rlen,
             c->rcap, c->out_bytes, c->last_cmd, c->proto, c->lib_name, c->lib_ver);
}

static void cmd_client(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                       uint32_t argc)
{
    struct resp_out o = resp_slot_out(s);
    const struct resp_arg *sub = &argv[1];
    if (arg_is(sub, "id") && argc == 2) {
        resp_reply_integer(&o, (long long)c->id);
    } else if (arg_is(sub, "getname") && argc == 2) {
        if (c->name[0])
            resp_reply_bulk_str(&o, c->name);
        else
            resp_reply_null(&o);
    } else if (arg_is(sub, "setname") && argc == 3) {
        if (!name_valid(&argv[2])) {
            resp_reply_error(&o, "ERR Client names cannot contain spaces, newlines or special "
                                 "characters.");
        } else {
            set_name(c->name, sizeof c->name, &argv[2]);
            resp_reply_simple(&o, "OK");
        }
    } else if (arg_is(sub, "setinfo") && argc == 4) {
        if (arg_is(&argv[2], "lib-name")) {
            set_name(c->lib_name, sizeof c->lib_name, &argv[3]);
            resp_reply_simple(&o, "OK");
        } else if (arg_is(&argv[2], "lib-ver")) {
            set_name(c->lib_ver, sizeof c->lib_ver, &argv[3]);
            resp_reply_simple(&o, "OK");
        } else {
            resp_reply_errorf(&o, "Unrecognized option '%.*s'", (int)argv[2].len,
                              (const char *)argv[2].p);
        }
    } else if (arg_is(sub, "info") && argc == 2) {
        char line[768];
        client_line(c, line, sizeof line);
        resp_reply_verbatim(&o, "txt", line, strlen(line));
    } else if (arg_is(sub, "list") && argc == 2) {
        struct st_membuf b;
        st_membuf_init(&b);
        struct st_list *e;
        ST_LIST_FOREACH(e, &c->srv->conns)
        {
            char line[768];
            client_line(ST_CONTAINER_OF(e, struct resp_conn, link), line, sizeof line);
            st_membuf_append(&b, line, strlen(line));
        }
        if (b.oom)
            resp_reply_error(&o, "ERR out of memory");
        else
            resp_reply_verbatim(&o, "txt", b.data ? b.data : "", b.len);
        st_membuf_free(&b);
    } else if (arg_is(sub, "id") || arg_is(sub, "getname") || arg_is(sub, "setname") ||
               arg_is(sub, "info") || arg_is(sub, "list") || arg_is(sub, "setinfo")) {
        char name[40];
        snprintf(name, sizeof name, "client|%.*s", (int)sub->len, (const char *)sub->p);
        for (char *p = name; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        resp_reply_errorf(&o, "wrong number of arguments for '%s' command", name);
    } else {
        resp_reply_errorf(&o, "unknown subcommand '%.*s'. Try CLIENT HELP.",
                          sub->len > 128 ? 128 : (int)sub->len, (const char *)sub->p);
    }
    resp_slot_done(s);
}

/* The command table (defined at the end) and its length. */
static const struct resp_cmd *cmd_table(size_t *n);

static void flags_reply(struct resp_out *o, uint32_t f)
{
    const char *names[6];
    size_t n = 0;
    if (f & CMD_WRITE) names[n++] = "write";
    if (f & CMD_READONLY) names[n++] = "readonly";
    if (f & CMD_FAST) names[n++] = "fast";
    if (f & CMD_ADMIN) names[n++] = "admin";
    if (f & CMD_CONN) names[n++] = "loading";
    if (f & CMD_CONN) names[n++] = "stale";
    resp_reply_array(o, n); /* Redis replies a set (~) in RESP3; an array reads the same */
    for (size_t i = 0; i < n; i++)
        resp_reply_simple(o, names[i]);
}

/* One COMMAND INFO entry: name, arity, flags, first key, last key, step,
 * ACL categories, tips, key specs, subcommands. */
static void command_entry(struct resp_out *o, const struct resp_cmd *k)
{
    resp_reply_array(o, 10);
    resp_reply_bulk_str(o, k->name);
    resp_reply_integer(o, k->arity);
    flags_reply(o, k->flags);
    resp_reply_integer(o, k->first_key);
    resp_reply_integer(o, k->last_key);
    resp_reply_integer(o, k->step);
    resp_reply_array(o, 0);
    resp_reply_array(o, 0);
    resp_reply_array(o, 0);
    resp_reply_array(o, 0);
}

static void cmd_command(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                        uint32_t argc)
{
    (void)c;
    size_t resp_n_cmds;
    const struct resp_cmd *resp_cmds = cmd_table(&resp_n_cmds);
    struct resp_out o = resp_slot_out(s);
    if (argc == 1) {
        resp_reply_array(&o, resp_n_cmds);
        for (size_t i = 0; i < resp_n_cmds; i++)
            command_entry(&o, &resp_cmds[i]);
    } else if (arg_is(&argv[1], "count") && argc == 2) {
        resp_reply_integer(&o, (long long)resp_n_cmds);
    } else if (arg_is(&argv[1], "info")) {
        if (argc == 2) {
            resp_reply_array(&o, resp_n_cmds);
            for (size_t i = 0; i < resp_n_cmds; i++)
                command_entry(&o, &resp_cmds[i]);
        } else {
            resp_reply_array(&o, argc - 2);
            for (uint32_t i = 2; i < argc; i++) {
                const struct resp_cmd *k = cmd_lookup(argv[i].p, argv[i].len);
                if (k)
                    command_entry(&o, k);
                else
                    resp_reply_null_array(&o);
            }
        }
    } else if (arg_is(&argv[1], "docs")) {
        /* Documentation is docs/REDIS.md; clients (redis-cli) accept an
         * empty answer and fall back to their own hints. */
        resp_reply_map(&o, 0);
    } else {
        resp_reply_errorf(&o, "unknown subcommand '%.*s'. Try COMMAND HELP.",
                          argv[1].len > 128 ? 128 : (int)argv[1].len, (const char *)argv[1].p);
    }
    resp_slot_done(s);
}

/* Redis's stringmatchlen, without the nocase flag. */
static bool glob_match(const char *p, size_t plen, const char *s, size_t slen)
{
    while (plen > 0) {
        switch (*p) {
        case '*':
            while (plen > 1 && p[1] == '*') {
                p++;
                plen--;
            }
            if (plen == 1) return true;
            for (size_t i = 0; i <= slen; i++)
                if (glob_match(p + 1, plen - 1, s + i, slen - i)) return true;
            return false;
        case '?':
            if (slen == 0) return false;
            s++;
            slen--;
            break;
        case '[': {
            if (slen == 0) return false;
            p++;
            plen--;
            bool neg = plen > 0 && *p == '^';
            if (neg) {
                p++;
                plen--;
            }
            bool match = false;
            while (plen > 0 && *p != ']') {
                if (*p == '\\' && plen >= 2) {
                    p++;
                    plen--;
                    if (*p == *s) match = true;
                } else if (plen >= 3 && p[1] == '-') {
                    char lo = p[0], hi = p[2];
                    if (lo > hi) {
                        char t = lo;
                        lo = hi;
                        hi = t;
                    }
                    if (*s >= lo && *s <= hi) match = true;
                    p += 2;
                    plen -= 2;
                } else if (*p == *s) {
                    match = true;
                }
                p++;
                plen--;
            }
            if (neg) match = !match;
            if (!match) return false;
            s++;
            slen--;
            if (plen == 0) return slen == 0;
            break;
        }
        case '\\':
            if (plen >= 2) {
                p++;
                plen--;
            }
            /* fall through */
        default:
            if (slen == 0 || *p != *s) return false;
            s++;
            slen--;
            break;
        }
        p++;
        plen--;
    }
    return slen == 0;
}

static void cmd_config(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                       uint32_t argc)
{
    struct resp_out o = resp_slot_out(s);
    if (!arg_is(&argv[1], "get")) {
        if (arg_is(&argv[1], "set") || arg_is(&argv[1], "resetstat") || arg_is(&argv[1], "rewrite"))
            resp_reply_error(&o, "ERR CONFIG SET, RESETSTAT and REWRITE are not supported: "
                                 "stcache is configured by its flags");
        else
            resp_reply_errorf(&o, "unknown subcommand '%.*s'. Try CONFIG HELP.",
                              argv[1].len > 128 ? 128 : (int)argv[1].len, (const char *)argv[1].p);
        resp_slot_done(s);
        return;
    }
    if (argc < 3) {
        resp_reply_error(&o, "ERR wrong number of arguments for 'config|get' command");
        resp_slot_done(s);
        return;
    }
    const struct node_config *nc = node_config_get(c->srv->node);
    char maxmem[32], maxclients[32], bulk[32], policy[32];
    snprintf(maxmem, sizeof maxmem, "%" PRIu64, nc->max_memory);
    snprintf(maxclients, sizeof maxclients, "%u", c->srv->cfg.connections_max);
    snprintf(bulk, sizeof bulk, "%" PRIu64, c->srv->lim.bulk_bytes_max);
    snprintf(policy, sizeof policy, "%s", node_eviction_policy_name(nc->eviction_policy));
    const char *params[][2] = {
        {"maxmemory", maxmem},      {"maxmemory-policy", policy},
        {"maxclients", maxclients}, {"proto-max-bulk-len", bulk},
        {"databases", "1"},         {"save", ""},
        {"appendonly", "no"},       {"timeout", "0"},
        {"cluster-enabled", "no"},
    };
    size_t n = sizeof params / sizeof params[0];
    bool hit[sizeof params / sizeof params[0]] = {false};
    size_t nhit = 0;
    for (uint32_t a = 2; a < argc; a++)
        for (size_t i = 0; i < n; i++)
            if (!hit[i] && glob_match((const char *)argv[a].p, argv[a].len, params[i][0],
                                      strlen(params[i][0]))) {
                hit[i] = true;
                nhit++;
            }
    resp_reply_map(&o, nhit);
    for (size_t i = 0; i < n; i++) {
        if (!hit[i]) continue;
        resp_reply_bulk_str(&o, params[i][0]);
        resp_reply_bulk_str(&o, params[i][1]);
    }
    resp_slot_done(s);
}

static void cmd_time(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                     uint32_t argc)
{
    (void)c;
    (void)argv;
    (void)argc;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char sec[32], usec[32];
    snprintf(sec, sizeof sec, "%lld", (long long)ts.tv_sec);
    snprintf(usec, sizeof usec, "%ld", ts.tv_nsec / 1000);
    struct resp_out o = resp_slot_out(s);
    resp_reply_array(&o, 2);
    resp_reply_bulk_str(&o, sec);
    resp_reply_bulk_str(&o, usec);
    resp_slot_done(s);
}

static void cmd_wait(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                     uint32_t argc)
{
    (void)argc;
    long long nrep, timeout;
    if (!resp_parse_ll(argv[1].p, argv[1].len, &nrep) ||
        !resp_parse_ll(argv[2].p, argv[2].len, &timeout)) {
        reply_not_integer(s);
        return;
    }
    if (timeout < 0) {
        reply_done_error(s, "ERR timeout is negative");
        return;
    }
    /* Every acknowledged write is already on a majority: the replicas that
     * count are the other voters. */
    struct node_info *ni = malloc(sizeof *ni);
    if (!ni) {
        reply_done_error(s, "ERR out of memory");
        return;
    }
    node_info_get(c->srv->node, ni);
    long long voters = 0;
    for (uint32_t i = 0; i < ni->n_members; i++)
        if (ni->members[i].voter) voters++;
    free(ni);
    struct resp_out o = resp_slot_out(s);
    resp_reply_integer(&o, voters > 0 ? voters - 1 : 0);
    resp_slot_done(s);
}

static const char *role_name(enum raft_role r)
{
    switch (r) {
    case RAFT_LEADER:
        return "leader";
    case RAFT_CANDIDATE:
        return "candidate";
    case RAFT_FOLLOWER:
        return "follower";
    default:
        return "other";
    }
}

static bool section_wanted(const struct resp_arg *argv, uint32_t argc, const char *name,
                           bool in_default)
{
    if (argc < 2) return in_default;
    for (uint32_t i = 1; i < argc; i++)
        if (arg_is(&argv[i], name) || arg_is(&argv[i], "all") || arg_is(&argv[i], "everything") ||
            (in_default && arg_is(&argv[i], "default")))
            return true;
    return false;
}

static void cmd_info(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                     uint32_t argc)
{
    struct resp_server *srv = c->srv;
    struct node_info *ni = malloc(sizeof *ni);
    if (!ni) {
        reply_done_error(s, "ERR out of memory");
        return;
    }
    node_info_get(srv->node, ni);
    const struct node_config *nc = node_config_get(srv->node);
    struct st_membuf b;
    st_membuf_init(&b);
    char t[512];
    int n;
#define INFO_ADD(...)                                                                              \
    do {                                                                                           \
        n = snprintf(t, sizeof t, __VA_ARGS__);                                                    \
        st_membuf_append(&b, t, (size_t)n);                                                        \
    } while (0)
    if (section_wanted(argv, argc, "server", true)) {
        if (b.len) INFO_ADD("\r\n");
        INFO_ADD("# Server\r\nredis_version:%s\r\nredis_mode:standalone\r\nos:Linux\r\n"
                 "process_id:%d\r\ntcp_port:%d\r\nuptime_in_seconds:%" PRIu64
                 "\r\nstcache_node_id:%" PRIu64 "\r\nstcache_cluster_id:%016" PRIx64 "\r\n",
                 RESP_VERSION, (int)uv_os_getpid(), resp_server_port(srv),
                 (resp_now_ms(srv) - srv->start_ms) / 1000, (uint64_t)ni->id, ni->cluster_id);
    }
    if (section_wanted(argv, argc, "clients", true)) {
        if (b.len) INFO_ADD("\r\n");
        INFO_ADD("# Clients\r\nconnected_clients:%u\r\nmaxclients:%u\r\n", srv->n_conns,
                 srv->cfg.connections_max);
    }
    if (section_wanted(argv, argc, "memory", true)) {
        if (b.len) INFO_ADD("\r\n");
        INFO_ADD("# Memory\r\nused_memory:%" PRIu64 "\r\nmaxmemory:%" PRIu64
                 "\r\nmaxmemory_policy:%s\r\n",
                 ni->used_memory, ni->max_memory, node_eviction_policy_name(nc->eviction_policy));
    }
    if (section_wanted(argv, argc, "stats", true)) {
        if (b.len) INFO_ADD("\r\n");
        INFO_ADD("# Stats\r\ntotal_connections_received:%" PRIu64
                 "\r\ntotal_commands_processed:%" PRIu64 "\r\nrejected_connections:%" PRIu64
                 "\r\nclient_output_buffer_limit_disconnections:%" PRIu64
                 "\r\ntotal_error_replies:0\r\nprotocol_errors:%" PRIu64 "\r\n",
                 srv->connections_total, srv->commands_total, srv->connections_rejected,
                 srv->slow_dropped, srv->protocol_errors);
    }
    if (section_wanted(argv, argc, "replication", true)) {
        if (b.len) INFO_ADD("\r\n");
        INFO_ADD("# Replication\r\nrole:%s\r\nconnected_slaves:0\r\n",
                 ni->role == RAFT_LEADER ? "master" : "slave");
    }
    if (section_wanted(argv, argc, "raft", true)) {
        if (b.len) INFO_ADD("\r\n");
        INFO_ADD("# Raft\r\nrole:%s\r\nterm:%" PRIu64 "\r\nleader:%" PRIu64 "\r\ncommit:%" PRIu64
                 "\r\napplied:%" PRIu64 "\r\nmembers:%u\r\n",
                 role_name(ni->role), (uint64_t)ni->term, (uint64_t)ni->leader,
                 (uint64_t)ni->commit, (uint64_t)ni->applied, ni->n_members);
    }
    if (section_wanted(argv, argc, "keyspace", true)) {
        if (b.len) INFO_ADD("\r\n");
        INFO_ADD("# Keyspace\r\n");
        if (ni->keys > 0)
            INFO_ADD("db0:keys=%" PRIu64 ",expires=%" PRIu64 ",avg_ttl=0\r\n", ni->keys,
                     ni->keys_with_ttl);
    }
#undef INFO_ADD
    free(ni);
    struct resp_out o = resp_slot_out(s);
    if (b.oom)
        resp_reply_error(&o, "ERR out of memory");
    else
        resp_reply_verbatim(&o, "txt", b.data ? b.data : "", b.len);
    st_membuf_free(&b);
    resp_slot_done(s);
}

/* --------------------------------------------------------------- reads */

/* What a one-key read replies (s->cmd). */
enum {
    READ_GET = 0,
    READ_TTL,
    READ_PTTL,
    READ_EXPIRETIME,
    READ_PEXPIRETIME,
    READ_STRLEN,
    READ_GETRANGE,
    READ_TYPE
};

/* GETRANGE's reply over a value of len bytes (Redis 7.0's getrangeCommand). */
static void reply_range(struct resp_out *o, const uint8_t *v, size_t len, long long start,
                        long long end)
{
    long long n = (long long)len;
    if (start < 0 && end < 0 && start > end) {
        resp_reply_bulk(o, "", 0);
        return;
    }
    if (start < 0) start = n + start;
    if (end < 0) end = n + end;
    if (start < 0) start = 0;
    if (end < 0) end = 0;
    if (end >= n) end = n - 1;
    if (start > end || n == 0) {
        resp_reply_bulk(o, "", 0);
        return;
    }
    resp_reply_bulk(o, v + start, (size_t)(end - start + 1));
}

/* The reply of a one-key read; found == false: no such key. */
static void read_reply(struct resp_slot *s, struct resp_out *o, bool found, const uint8_t *v,
                       size_t len, uint64_t expire_at_ms)
{
    uint64_t clock = found && expire_at_ms ? node_log_clock_ms(s->conn->srv->node) : 0;
    long long left_ms = expire_at_ms > clock ? (long long)(expire_at_ms - clock) : 0;
    switch (s->cmd) {
    case READ_GET:
        if (found)
            resp_reply_bulk(o, v, len);
        else
            resp_reply_null(o);
        break;
    case READ_TTL:
    case READ_PTTL:
        if (!found)
            resp_reply_integer(o, -2);
        else if (!expire_at_ms)
            resp_reply_integer(o, -1);
        else
            resp_reply_integer(o, s->cmd == READ_PTTL ? left_ms : (left_ms + 500) / 1000);
        break;
    case READ_EXPIRETIME:
    case READ_PEXPIRETIME:
        if (!found)
            resp_reply_integer(o, -2);
        else if (!expire_at_ms)
            resp_reply_integer(o, -1);
        else
            resp_reply_integer(o, s->cmd == READ_PEXPIRETIME ? (long long)expire_at_ms
                                                             : (long long)(expire_at_ms / 1000));
        break;
    case READ_STRLEN:
        resp_reply_integer(o, found ? (long long)len : 0);
        break;
    case READ_GETRANGE:
        reply_range(o, v, found ? len : 0, s->a1, s->a2);
        break;
    case READ_TYPE:
        resp_reply_simple(o, found ? "string" : "none");
        break;
    default:
        ST_ASSERT(!"unknown read kind");
    }
}

static void get_cb(void *ctx, const struct node_read_result *res)
{
    struct resp_slot *s = ctx;
    if (resp_slot_unhold(s)) return;
    struct resp_out o = resp_slot_out(s);
    if (res->status == 0 || res->status == ST_ENOENT)
        read_reply(s, &o, res->status == 0, res->value, res->value_len, res->expire_at_ms);
    else
        reply_node_error(&o, res->status, false);
    resp_slot_done(s);
}

static void read_one(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *key,
                     uint8_t kind)
{
    s->cmd = kind;
    if (key->len == 0 || key->len > node_config_get(c->srv->node)->max_key_bytes) {
        /* No such key can exist. */
        struct resp_out o = resp_slot_out(s);
        read_reply(s, &o, false, NULL, 0, 0);
        resp_slot_done(s);
        return;
    }
    resp_slot_hold(s);
    int rc = node_get(c->srv->node, key->p, key->len, read_mode(c), get_cb, s);
    if (rc < 0) {
        resp_slot_unhold(s);
        done_node_error(s, rc, false);
    }
}

static void cmd_get(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                    uint32_t argc)
{
    (void)argc;
    read_one(c, s, &argv[1], READ_GET);
}

static void cmd_ttl(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                    uint32_t argc)
{
    (void)argc;
    uint8_t kind = arg_is(&argv[0], "ttl")           ? READ_TTL
                   : arg_is(&argv[0], "pttl")        ? READ_PTTL
                   : arg_is(&argv[0], "expiretime")  ? READ_EXPIRETIME
                   : arg_is(&argv[0], "pexpiretime") ? READ_PEXPIRETIME
                   : arg_is(&argv[0], "strlen")      ? READ_STRLEN
                                                     : READ_TYPE;
    read_one(c, s, &argv[1], kind);
}

static void cmd_getrange(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                         uint32_t argc)
{
    (void)argc;
    if (!resp_parse_ll(argv[2].p, argv[2].len, &s->a1) ||
        !resp_parse_ll(argv[3].p, argv[3].len, &s->a2)) {
        reply_not_integer(s);
        return;
    }
    read_one(c, s, &argv[1], READ_GETRANGE);
}

/* Multi-key reads: after the barrier, every key is read locally. */
enum { MULTI_MGET = 1, MULTI_EXISTS, MULTI_DBSIZE };

struct local_read {
    bool found;
    const uint8_t *value;
    size_t value_len;
};

static void local_cb(void *ctx, const struct node_read_result *res)
{
    struct local_read *lr = ctx;
    lr->found = res->status == 0;
    lr->value = res->value;
    lr->value_len = res->value_len;
}

static void multi_finish(struct resp_slot *s)
{
    struct resp_conn *c = s->conn;
    struct node *n = c->srv->node;
    struct resp_out o = resp_slot_out(s);
    if (s->cmd == MULTI_DBSIZE) {
        struct node_info *ni = malloc(sizeof *ni);
        if (!ni) {
            resp_reply_error(&o, "ERR out of memory");
        } else {
            node_info_get(n, ni);
            resp_reply_integer(&o, (long long)ni->keys);
            free(ni);
        }
        resp_slot_done(s);
        return;
    }
    if (s->cmd == MULTI_MGET) resp_reply_array(&o, s->nkeys);
    long long count = 0;
    size_t off = 0;
    for (uint32_t i = 0; i < s->nkeys; i++) {
        size_t len;
        const uint8_t *k = keys_next(s, &off, &len);
        struct local_read lr = {false, NULL, 0};
        /* A stale read is answered at once, inside the call. */
        if (len > 0 && node_get(n, k, len, NODE_READ_STALE, local_cb, &lr) != 0) lr.found = false;
        if (s->cmd == MULTI_MGET) {
            if (lr.found)
                resp_reply_bulk(&o, lr.value, lr.value_len);
            else
                resp_reply_null(&o);
        } else if (lr.found) {
            count++;
        }
    }
    if (s->cmd == MULTI_EXISTS) resp_reply_integer(&o, count);
    resp_slot_done(s);
}

static void barrier_cb(void *ctx, const struct node_read_result *res)
{
    struct resp_slot *s = ctx;
    if (resp_slot_unhold(s)) return;
    if (res->status != 0 && res->status != ST_ENOENT) {
        done_node_error(s, res->status, false);
        return;
    }
    multi_finish(s);
}

/* A linearizable barrier: a ReadIndex read of a key nothing writes
 * (a NUL byte: the RESP front end never reads it for a client), then
 * multi_finish. In READONLY mode, multi_finish at once. */
static void barrier_then_finish(struct resp_conn *c, struct resp_slot *s)
{
    if (c->readonly) {
        multi_finish(s);
        return;
    }
    static const uint8_t barrier_key[1] = {0};
    resp_slot_hold(s);
    int rc = node_get(c->srv->node, barrier_key, 1, NODE_READ_LINEARIZABLE, barrier_cb, s);
    if (rc < 0) {
        resp_slot_unhold(s);
        done_node_error(s, rc, false);
    }
}

static void multi_read(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                       uint32_t argc, uint8_t kind)
{
    s->cmd = kind;
    if (!keys_save(s, argv, 1, argc, 1)) {
        reply_done_error(s, "ERR out of memory");
        return;
    }
    barrier_then_finish(c, s);
}

static void cmd_mget(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                     uint32_t argc)
{
    multi_read(c, s, argv, argc, MULTI_MGET);
}

static void cmd_exists(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                       uint32_t argc)
{
    multi_read(c, s, argv, argc, MULTI_EXISTS);
}

static void cmd_dbsize(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                       uint32_t argc)
{
    (void)argv;
    (void)argc;
    s->cmd = MULTI_DBSIZE;
    s->nkeys = 0;
    barrier_then_finish(c, s);
}

/* -------------------------------------------------------------- writes */

enum { WRITE_OK = 1, WRITE_SETNX_INT, WRITE_NX_NULL, WRITE_DEL_COUNT, WRITE_MSET };

static void write_finish(struct resp_slot *s)
{
    struct resp_out o = resp_slot_out(s);
    if (s->status != 0) {
        reply_node_error(&o, s->status, true);
    } else if (s->cmd == WRITE_DEL_COUNT || s->cmd == WRITE_SETNX_INT) {
        resp_reply_integer(&o, s->count);
    } else if (s->cmd == WRITE_NX_NULL && s->count == 0) {
        resp_reply_null(&o);
    } else {
        resp_reply_simple(&o, "OK");
    }
    resp_slot_done(s);
}

static void write_cb(void *ctx, const struct node_write_result *res)
{
    struct resp_slot *s = ctx;
    if (resp_slot_unhold(s)) return;
    if (res->status == 0)
        s->count++;
    else if (res->status == ST_EPRECONDITION || res->status == ST_ENOENT)
        ; /* NX on an existing key, DEL of an absent key */
    else if (s->status == 0)
        s->status = res->status;
    if (s->pending == 0) write_finish(s);
}

/* Proposes one PUT for slot s; the caller finishes when nothing is
 * pending. Returns false if refused at once (s->status set). */
static bool put_one(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *key,
                    const struct resp_arg *val, uint64_t ttl_ms, enum node_cond cond)
{
    ST_ASSERT(key != NULL && val != NULL);
    struct node_put_args a;
    memset(&a, 0, sizeof a);
    a.key = key->p;
    a.key_len = key->len;
    a.value = val->p;
    a.value_len = val->len;
    a.ttl_ms = ttl_ms;
    a.cond = cond;
    resp_slot_hold(s);
    int rc = node_put(c->srv->node, &a, write_cb, s);
    if (rc < 0) {
        resp_slot_unhold(s);
        if (s->status == 0) s->status = rc;
        return false;
    }
    return true;
}

static bool del_one(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *key)
{
    if (key->len == 0 || key->len > node_config_get(c->srv->node)->max_key_bytes)
        return true; /* no such key can exist: nothing to delete */
    resp_slot_hold(s);
    int rc = node_delete(c->srv->node, key->p, key->len, NODE_COND_NONE, 0, write_cb, s);
    if (rc < 0) {
        resp_slot_unhold(s);
        if (s->status == 0) s->status = rc;
        return false;
    }
    return true;
}

/* After issuing: finish now if every callback already ran. */
static void write_issued(struct resp_slot *s)
{
    if (s->pending == 0 && !s->done) write_finish(s);
}

/* Expiry of SET/SETEX/PSETEX in ms from now; *gone when the absolute time
 * is already past (the key must not exist afterwards). Returns false after
 * replying the error. */
static bool expire_arg(struct resp_slot *s, const struct resp_arg *a, bool seconds, bool absolute,
                       const char *cmd, uint64_t *ttl_ms, bool *gone)
{
    long long v;
    *gone = false;
    if (!resp_parse_ll(a->p, a->len, &v)) {
        reply_not_integer(s);
        return false;
    }
    if (v <= 0 || (seconds && v > LLONG_MAX / 1000)) {
        struct resp_out o = resp_slot_out(s);
        resp_reply_errorf(&o, "invalid expire time in '%s' command", cmd);
        resp_slot_done(s);
        return false;
    }
    long long ms = seconds ? v * 1000 : v;
    long long now = (long long)wall_ms();
    if (!absolute && ms > LLONG_MAX - now) {
        /* Redis refuses a relative time whose absolute one overflows. */
        struct resp_out o = resp_slot_out(s);
        resp_reply_errorf(&o, "invalid expire time in '%s' command", cmd);
        resp_slot_done(s);
        return false;
    }
    if (absolute) {
        if (ms <= now) {
            *gone = true;
            *ttl_ms = 0;
            return true;
        }
        ms -= now;
    }
    *ttl_ms = (uint64_t)ms;
    return true;
}

static void cmd_set(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                    uint32_t argc)
{
    bool nx = false, xx = false, get = false, keepttl = false, has_exp = false;
    bool exp_sec = false, exp_abs = false;
    const struct resp_arg *exp = NULL;
    for (uint32_t i = 3; i < argc; i++) {
        const struct resp_arg *a = &argv[i];
        bool has_next = i + 1 < argc;
        if (arg_is(a, "nx") && !xx) {
            nx = true;
        } else if (arg_is(a, "xx") && !nx) {
            xx = true;
        } else if (arg_is(a, "get")) {
            get = true;
        } else if (arg_is(a, "keepttl") && !has_exp) {
            keepttl = true;
        } else if ((arg_is(a, "ex") || arg_is(a, "px") || arg_is(a, "exat") || arg_is(a, "pxat")) &&
                   !keepttl && !has_exp && has_next) {
            has_exp = true;
            exp_sec = arg_is(a, "ex") || arg_is(a, "exat");
            exp_abs = arg_is(a, "exat") || arg_is(a, "pxat");
            exp = &argv[++i];
        } else {
            reply_syntax(s);
            return;
        }
    }
    uint64_t ttl_ms = 0;
    bool gone = false;
    if (exp && !expire_arg(s, exp, exp_sec, exp_abs, "set", &ttl_ms, &gone)) return;
    if (xx || get || keepttl) {
        /* Read-modify-write options are decided by the state machine;
         * until it does, they are refused rather than imitated. */
        reply_done_error(s, xx    ? "ERR SET XX is not supported by stcache yet"
                            : get ? "ERR SET GET is not supported by stcache yet"
                                  : "ERR SET KEEPTTL is not supported by stcache yet");
        return;
    }
    s->cmd = nx ? WRITE_NX_NULL : WRITE_OK;
    if (gone) {
        /* Redis stores the key and it expires at once. */
        if (nx) {
            reply_done_error(s, "ERR SET NX with a time in the past is not supported by "
                                "stcache yet");
            return;
        }
        s->cmd = WRITE_OK;
        del_one(c, s, &argv[1]);
    } else {
        put_one(c, s, &argv[1], &argv[2], ttl_ms, nx ? NODE_COND_IF_ABSENT : NODE_COND_NONE);
    }
    write_issued(s);
}

static void cmd_setnx(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                      uint32_t argc)
{
    (void)argc;
    s->cmd = WRITE_SETNX_INT;
    put_one(c, s, &argv[1], &argv[2], 0, NODE_COND_IF_ABSENT);
    write_issued(s);
}

static void cmd_setex(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                      uint32_t argc)
{
    (void)argc;
    bool sec = arg_is(&argv[0], "setex");
    uint64_t ttl_ms;
    bool gone;
    if (!expire_arg(s, &argv[2], sec, false, sec ? "setex" : "psetex", &ttl_ms, &gone)) return;
    s->cmd = WRITE_OK;
    put_one(c, s, &argv[1], &argv[3], ttl_ms, NODE_COND_NONE);
    write_issued(s);
}

static void cmd_del(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                    uint32_t argc)
{
    s->cmd = WRITE_DEL_COUNT;
    for (uint32_t i = 1; i < argc; i++)
        if (!del_one(c, s, &argv[i])) break;
    write_issued(s);
}

static void cmd_mset(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                     uint32_t argc)
{
    if (argc % 2 == 0) {
        reply_arity(s, "mset");
        return;
    }
    s->cmd = WRITE_MSET;
    for (uint32_t i = 1; i + 1 < argc; i += 2)
        if (!put_one(c, s, &argv[i], &argv[i + 1], 0, NODE_COND_NONE)) break;
    write_issued(s);
}

/* --------------------------------------------------------------- table */

/* Sorted by name (binary search). */
static const struct resp_cmd resp_cmds[] = {
    {"auth", -2, CMD_CONN | CMD_FAST, 0, 0, 0, cmd_auth},
    {"client", -2, CMD_CONN, 0, 0, 0, cmd_client},
    {"command", -1, CMD_CONN, 0, 0, 0, cmd_command},
    {"config", -2, CMD_ADMIN, 0, 0, 0, cmd_config},
    {"dbsize", 1, CMD_READONLY | CMD_FAST, 0, 0, 0, cmd_dbsize},
    {"del", -2, CMD_WRITE, 1, -1, 1, cmd_del},
    {"echo", 2, CMD_FAST, 0, 0, 0, cmd_echo},
    {"exists", -2, CMD_READONLY | CMD_FAST, 1, -1, 1, cmd_exists},
    {"expiretime", 2, CMD_READONLY | CMD_FAST, 1, 1, 1, cmd_ttl},
    {"get", 2, CMD_READONLY | CMD_FAST, 1, 1, 1, cmd_get},
    {"getrange", 4, CMD_READONLY, 1, 1, 1, cmd_getrange},
    {"hello", -1, CMD_CONN | CMD_FAST, 0, 0, 0, cmd_hello},
    {"info", -1, CMD_CONN, 0, 0, 0, cmd_info},
    {"keys", 2, CMD_READONLY, 0, 0, 0, resp_cmd_keys}, /* cmd_scan.c */
    {"mget", -2, CMD_READONLY | CMD_FAST, 1, -1, 1, cmd_mget},
    {"mset", -3, CMD_WRITE, 1, -1, 2, cmd_mset},
    {"pexpiretime", 2, CMD_READONLY | CMD_FAST, 1, 1, 1, cmd_ttl},
    {"ping", -1, CMD_FAST, 0, 0, 0, cmd_ping},
    {"psetex", 4, CMD_WRITE, 1, 1, 1, cmd_setex},
    {"pttl", 2, CMD_READONLY | CMD_FAST, 1, 1, 1, cmd_ttl},
    {"quit", -1, CMD_CONN | CMD_FAST, 0, 0, 0, cmd_quit},
    {"randomkey", 1, CMD_READONLY, 0, 0, 0, resp_cmd_randomkey}, /* cmd_scan.c */
    {"readonly", 1, CMD_CONN | CMD_FAST, 0, 0, 0, cmd_readonly},
    {"readwrite", 1, CMD_CONN | CMD_FAST, 0, 0, 0, cmd_readonly},
    {"reset", 1, CMD_CONN | CMD_FAST, 0, 0, 0, cmd_reset},
    {"scan", -2, CMD_READONLY, 0, 0, 0, resp_cmd_scan}, /* cmd_scan.c */
    {"select", 2, CMD_CONN | CMD_FAST, 0, 0, 0, cmd_select},
    {"set", -3, CMD_WRITE, 1, 1, 1, cmd_set},
    {"setex", 4, CMD_WRITE, 1, 1, 1, cmd_setex},
    {"setnx", 3, CMD_WRITE | CMD_FAST, 1, 1, 1, cmd_setnx},
    {"strlen", 2, CMD_READONLY | CMD_FAST, 1, 1, 1, cmd_ttl},
    {"substr", 4, CMD_READONLY, 1, 1, 1, cmd_getrange},
    {"time", 1, CMD_FAST, 0, 0, 0, cmd_time},
    {"ttl", 2, CMD_READONLY | CMD_FAST, 1, 1, 1, cmd_ttl},
    {"type", 2, CMD_READONLY | CMD_FAST, 1, 1, 1, cmd_ttl},
    {"unlink", -2, CMD_WRITE | CMD_FAST, 1, -1, 1, cmd_del},
    {"wait", 3, 0, 0, 0, 0, cmd_wait},
};
static const size_t resp_n_cmds = sizeof resp_cmds / sizeof resp_cmds[0];

static const struct resp_cmd *cmd_table(size_t *n)
{
    *n = resp_n_cmds;
    return resp_cmds;
}

static const struct resp_cmd *cmd_lookup(const uint8_t *p, size_t len)
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

uint8_t resp_cmd_class(const struct resp_conn *c, const struct resp_arg *argv, uint32_t argc)
{
    (void)argc;
    const struct resp_cmd *k = cmd_lookup(argv[0].p, argv[0].len);
    if (!k) return RESP_OP_NONE;
    if (k->flags & CMD_WRITE) return RESP_OP_WRITE;
    /* READONLY reads are answered at once, in order by construction. */
    if ((k->flags & CMD_READONLY) && !c->readonly) return RESP_OP_READ;
    return RESP_OP_NONE;
}

void resp_cmd_dispatch(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                       uint32_t argc)
{
    if (arg_is(&argv[0], "post") || arg_is(&argv[0], "host:")) {
        /* An HTTP request: a web page making the browser talk to this port
         * (cross-protocol scripting). As Redis does, no answer; the
         * connection is closed. */
        ST_TRACE_WARN("resp", "client %s sent an HTTP request: connection closed", c->addr);
        resp_conn_close_after(c);
        resp_slot_done(s);
        return;
    }
    const struct resp_cmd *k = cmd_lookup(argv[0].p, argv[0].len);
    if (!k) {
        reply_unknown(s, argv, argc);
        return;
    }
    snprintf(c->last_cmd, sizeof c->last_cmd, "%s", k->name);
    if ((k->arity > 0 && argc != (uint32_t)k->arity) ||
        (k->arity < 0 && argc < (uint32_t)-k->arity)) {
        reply_arity(s, k->name);
        return;
    }
    struct resp_auth_cmd ak = {k->first_key, k->last_key, k->step, (k->flags & CMD_WRITE) != 0,
                               (k->flags & CMD_ADMIN) != 0};
    if (!resp_auth_admit(c, s, k->name, &ak, argv, argc)) return;
    k->fn(c, s, argv, argc);
}
