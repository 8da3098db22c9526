/* RESP connection, server and introspection commands: PING, ECHO, HELLO,
 * AUTH, SELECT, QUIT, RESET, READONLY/READWRITE, CLIENT, COMMAND, CONFIG,
 * TIME, WAIT, INFO (Redis 7.0 behaviour; docs/REDIS.md). */
#include "node/auth.h"
#include "resp/cmd.h"

#include <ctype.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "stcache/errors.h"
#include "util/assert.h"
#include "util/trace.h"

/* ---------------------------------------------- connection and server */

void resp_cmd_ping(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                   uint32_t argc)
{
    if (argc > 2) {
        resp_reply_arity(s, "ping");
        return;
    }
    struct resp_out o = resp_slot_out(s);
    if (resp_pubsub_mode(c)) { /* RESP2 subscribed mode: ["pong", arg or ""] */
        resp_reply_array(&o, 2);
        resp_reply_bulk_str(&o, "pong");
        resp_reply_bulk(&o, argc == 2 ? argv[1].p : (const uint8_t *)"",
                        argc == 2 ? argv[1].len : 0);
    } else if (argc == 2) {
        resp_reply_bulk(&o, argv[1].p, argv[1].len);
    } else {
        resp_reply_simple(&o, "PONG");
    }
    resp_slot_done(s);
}

void resp_cmd_echo(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
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

/* AUTH as a server whose default user has no password (until client
 * authentication exists): "default" with any password succeeds. */
static bool auth_ok(struct resp_conn *c, const struct resp_arg *user, const struct resp_arg *pass)
{
    return resp_auth_login(c, user, pass) == 0;
}

void resp_cmd_hello(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                    uint32_t argc)
{
    int proto = c->proto;
    uint32_t i = 1;
    if (argc >= 2) {
        long long v;
        if (!resp_parse_ll(argv[1].p, argv[1].len, &v)) {
            resp_reply_done_error(s, "ERR Protocol version is not an integer or out of range");
            return;
        }
        if (v < 2 || v > 3) {
            resp_reply_done_error(s, "NOPROTO unsupported protocol version");
            return;
        }
        proto = (int)v;
        i = 2;
    }
    const struct resp_arg *name = NULL;
    for (; i < argc; i++) {
        uint32_t left = argc - i - 1;
        if (resp_arg_is(&argv[i], "auth") && left >= 2) {
            if (!auth_ok(c, &argv[i + 1], &argv[i + 2])) {
                resp_reply_done_error(s, "WRONGPASS invalid username-password pair or user is "
                                         "disabled.");
                return;
            }
            i += 2;
        } else if (resp_arg_is(&argv[i], "setname") && left >= 1) {
            name = &argv[i + 1];
            if (!name_valid(name)) {
                resp_reply_done_error(s,
                                      "ERR Client names cannot contain spaces, newlines or special "
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
    s->proto = (uint8_t)proto; /* HELLO answers in the protocol it selects */
    reply_hello_map(c, s);
}

void resp_cmd_auth(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                   uint32_t argc)
{
    if (argc > 3) {
        resp_reply_syntax(s);
        return;
    }
    if (argc == 2 && !node_auth_enabled(c->srv->node)) {
        resp_reply_done_error(s, "ERR AUTH <password> called without any password configured for "
                                 "the default user. Are you sure your configuration is correct?");
        return;
    }
    if (!auth_ok(c, argc == 3 ? &argv[1] : NULL, &argv[argc - 1])) {
        resp_reply_done_error(s, "WRONGPASS invalid username-password pair or user is disabled.");
        return;
    }
    resp_reply_done_ok(s);
}

void resp_cmd_select(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                     uint32_t argc)
{
    (void)c;
    (void)argc;
    long long db;
    if (!resp_parse_ll(argv[1].p, argv[1].len, &db) || db < INT_MIN || db > INT_MAX) {
        resp_reply_not_integer(s);
        return;
    }
    if (db != 0) {
        resp_reply_done_error(s, "ERR DB index is out of range");
        return;
    }
    resp_reply_done_ok(s);
}

void resp_cmd_quit(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                   uint32_t argc)
{
    (void)argv;
    (void)argc;
    resp_conn_close_after(c);
    resp_reply_done_ok(s);
}

void resp_cmd_reset(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                    uint32_t argc)
{
    (void)argv;
    (void)argc;
    c->proto = 2;
    s->proto = 2;
    c->readonly = false;
    c->name[0] = '\0';
    resp_auth_conn_init(c); /* as Redis: RESET logs the connection out */
    resp_multi_reset(c);
    resp_pubsub_reset(c); /* leaves subscribed mode */
    struct resp_out o = resp_slot_out(s);
    resp_reply_simple(&o, "RESET");
    resp_slot_done(s);
}

void resp_cmd_readonly(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                       uint32_t argc)
{
    (void)argc;
    c->readonly = resp_arg_is(&argv[0], "readonly");
    resp_reply_done_ok(s);
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

void resp_cmd_client(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                     uint32_t argc)
{
    struct resp_out o = resp_slot_out(s);
    const struct resp_arg *sub = &argv[1];
    if (resp_arg_is(sub, "id") && argc == 2) {
        resp_reply_integer(&o, (long long)c->id);
    } else if (resp_arg_is(sub, "getname") && argc == 2) {
        if (c->name[0])
            resp_reply_bulk_str(&o, c->name);
        else
            resp_reply_null(&o);
    } else if (resp_arg_is(sub, "setname") && argc == 3) {
        if (!name_valid(&argv[2])) {
            resp_reply_error(&o, "ERR Client names cannot contain spaces, newlines or special "
                                 "characters.");
        } else {
            set_name(c->name, sizeof c->name, &argv[2]);
            resp_reply_simple(&o, "OK");
        }
    } else if (resp_arg_is(sub, "setinfo") && argc == 4) {
        if (resp_arg_is(&argv[2], "lib-name")) {
            set_name(c->lib_name, sizeof c->lib_name, &argv[3]);
            resp_reply_simple(&o, "OK");
        } else if (resp_arg_is(&argv[2], "lib-ver")) {
            set_name(c->lib_ver, sizeof c->lib_ver, &argv[3]);
            resp_reply_simple(&o, "OK");
        } else {
            resp_reply_errorf(&o, "Unrecognized option '%.*s'", (int)argv[2].len,
                              (const char *)argv[2].p);
        }
    } else if (resp_arg_is(sub, "info") && argc == 2) {
        char line[768];
        client_line(c, line, sizeof line);
        resp_reply_verbatim(&o, "txt", line, strlen(line));
    } else if (resp_arg_is(sub, "list") && argc == 2) {
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
    } else if (resp_arg_is(sub, "id") || resp_arg_is(sub, "getname") ||
               resp_arg_is(sub, "setname") || resp_arg_is(sub, "info") ||
               resp_arg_is(sub, "list") || resp_arg_is(sub, "setinfo")) {
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

void resp_cmd_command(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                      uint32_t argc)
{
    (void)c;
    size_t resp_n_cmds;
    const struct resp_cmd *resp_cmds = resp_cmd_table(&resp_n_cmds);
    struct resp_out o = resp_slot_out(s);
    if (argc == 1) {
        resp_reply_array(&o, resp_n_cmds);
        for (size_t i = 0; i < resp_n_cmds; i++)
            command_entry(&o, &resp_cmds[i]);
    } else if (resp_arg_is(&argv[1], "count") && argc == 2) {
        resp_reply_integer(&o, (long long)resp_n_cmds);
    } else if (resp_arg_is(&argv[1], "info")) {
        if (argc == 2) {
            resp_reply_array(&o, resp_n_cmds);
            for (size_t i = 0; i < resp_n_cmds; i++)
                command_entry(&o, &resp_cmds[i]);
        } else {
            resp_reply_array(&o, argc - 2);
            for (uint32_t i = 2; i < argc; i++) {
                const struct resp_cmd *k = resp_cmd_lookup(argv[i].p, argv[i].len);
                if (k)
                    command_entry(&o, k);
                else
                    resp_reply_null_array(&o);
            }
        }
    } else if (resp_arg_is(&argv[1], "docs")) {
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

/* Redis's memtoull: a byte count with an optional b, k, kb, m, mb, g, gb
 * unit; false when malformed. */
static bool mem_parse(const uint8_t *p, size_t len, uint64_t *out)
{
    char tmp[32];
    if (len == 0 || len >= sizeof tmp) return false;
    memcpy(tmp, p, len);
    tmp[len] = '\0';
    char *end;
    unsigned long long v = strtoull(tmp, &end, 10);
    if (end == tmp || tmp[0] == '-') return false;
    static const struct {
        const char *u;
        uint64_t mul;
    } units[] = {{"", 1},        {"b", 1},         {"k", 1000},          {"kb", 1024},
                 {"m", 1000000}, {"mb", 1u << 20}, {"g", 1000000000ull}, {"gb", 1ull << 30}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcasecmp(end, units[i].u) == 0) {
            if (v > UINT64_MAX / units[i].mul) return false;
            *out = v * units[i].mul;
            return true;
        }
    return false;
}

/* client-output-buffer-limit "pubsub HARD SOFT SECONDS" (other classes:
 * false; stcache's normal bound is --conn-output-bytes-max). */
static bool cobl_parse(struct resp_server *srv, const struct resp_arg *v)
{
    const uint8_t *f[4];
    size_t fl[4];
    size_t n = 0, i = 0;
    while (i < v->len && n < 5) {
        while (i < v->len && v->p[i] == ' ')
            i++;
        if (i == v->len) break;
        size_t b = i;
        while (i < v->len && v->p[i] != ' ')
            i++;
        if (n == 4) return false;
        f[n] = v->p + b;
        fl[n] = i - b;
        n++;
    }
    uint64_t hard, soft, secs;
    if (n != 4 || fl[0] != 6 || strncasecmp((const char *)f[0], "pubsub", 6) != 0 ||
        !mem_parse(f[1], fl[1], &hard) || !mem_parse(f[2], fl[2], &soft) ||
        !mem_parse(f[3], fl[3], &secs))
        return false;
    srv->pubsub_hard_bytes = hard ? hard : UINT64_MAX;
    srv->pubsub_soft_bytes = soft ? soft : UINT64_MAX;
    srv->pubsub_soft_s = secs;
    return true;
}

/* CONFIG SET of the node-local pub/sub settings: answers and returns true
 * when every parameter is one of them. */
static bool config_set(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                       uint32_t argc)
{
    if (argc < 4 || argc % 2 != 0) {
        if (argc < 4) return false;
        resp_reply_done_error(s, "ERR wrong number of arguments for 'config|set' command");
        return true;
    }
    for (uint32_t i = 2; i < argc; i += 2)
        if (!resp_arg_is(&argv[i], "notify-keyspace-events") &&
            !resp_arg_is(&argv[i], "client-output-buffer-limit"))
            return false;
    struct resp_server *srv = c->srv;
    for (uint32_t i = 2; i < argc; i += 2) {
        const struct resp_arg *v = &argv[i + 1];
        bool ok;
        if (resp_arg_is(&argv[i], "notify-keyspace-events")) {
            uint32_t flags;
            ok = resp_notify_flags_parse((const char *)v->p, v->len, &flags) == 0;
            int rc = ok ? resp_notify_set(srv, (const char *)v->p, v->len) : 0;
            if (rc != 0) {
                struct resp_out o = resp_slot_out(s);
                resp_reply_errorf(&o,
                                  "CONFIG SET failed: keyspace notifications cannot watch "
                                  "the node's changes: %s",
                                  st_strerror(rc));
                resp_slot_done(s);
                return true;
            }
            if (!ok) {
                resp_reply_done_error(s, "ERR CONFIG SET failed (possibly related to argument "
                                         "'notify-keyspace-events') - Invalid event class "
                                         "character. Use 'Ag$lshzxeKEtmdn'.");
                return true;
            }
        } else if (!cobl_parse(srv, v)) {
            resp_reply_done_error(s, "ERR CONFIG SET failed (possibly related to argument "
                                     "'client-output-buffer-limit') - stcache sets only the "
                                     "pubsub class: 'pubsub HARD SOFT SECONDS'");
            return true;
        }
    }
    resp_reply_done_ok(s);
    return true;
}

void resp_cmd_config(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                     uint32_t argc)
{
    struct resp_out o = resp_slot_out(s);
    if (resp_arg_is(&argv[1], "set") && config_set(c, s, argv, argc)) return;
    if (!resp_arg_is(&argv[1], "get")) {
        if (resp_arg_is(&argv[1], "set") || resp_arg_is(&argv[1], "resetstat") ||
            resp_arg_is(&argv[1], "rewrite"))
            resp_reply_error(&o, "ERR CONFIG SET (but for notify-keyspace-events and "
                                 "client-output-buffer-limit), RESETSTAT and REWRITE are not "
                                 "supported: stcache is configured by its flags");
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
    char maxmem[32], maxclients[32], bulk[32], policy[32], nke[32], cobl[96];
    resp_notify_flags_format(c->srv->notify_flags, nke, sizeof nke);
    snprintf(cobl, sizeof cobl, "pubsub %" PRIu64 " %" PRIu64 " %" PRIu64,
             c->srv->pubsub_hard_bytes, c->srv->pubsub_soft_bytes, c->srv->pubsub_soft_s);
    snprintf(maxmem, sizeof maxmem, "%" PRIu64, nc->max_memory);
    snprintf(maxclients, sizeof maxclients, "%u", c->srv->cfg.connections_max);
    snprintf(bulk, sizeof bulk, "%" PRIu64, c->srv->lim.bulk_bytes_max);
    snprintf(policy, sizeof policy, "%s", node_eviction_policy_name(nc->eviction_policy));
    const char *params[][2] = {
        {"maxmemory", maxmem},
        {"maxmemory-policy", policy},
        {"maxclients", maxclients},
        {"proto-max-bulk-len", bulk},
        {"databases", "1"},
        {"save", ""},
        {"appendonly", "no"},
        {"timeout", "0"},
        {"cluster-enabled", "no"},
        {"notify-keyspace-events", nke},
        {"client-output-buffer-limit", cobl},
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

void resp_cmd_time(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
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

void resp_cmd_wait(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                   uint32_t argc)
{
    (void)argc;
    long long nrep, timeout;
    if (!resp_parse_ll(argv[1].p, argv[1].len, &nrep) ||
        !resp_parse_ll(argv[2].p, argv[2].len, &timeout)) {
        resp_reply_not_integer(s);
        return;
    }
    if (timeout < 0) {
        resp_reply_done_error(s, "ERR timeout is negative");
        return;
    }
    /* Every acknowledged write is already on a majority: the replicas that
     * count are the other voters. */
    struct node_info *ni = malloc(sizeof *ni);
    if (!ni) {
        resp_reply_done_error(s, "ERR out of memory");
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
        if (resp_arg_is(&argv[i], name) || resp_arg_is(&argv[i], "all") ||
            resp_arg_is(&argv[i], "everything") || (in_default && resp_arg_is(&argv[i], "default")))
            return true;
    return false;
}

void resp_cmd_info(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                   uint32_t argc)
{
    struct resp_server *srv = c->srv;
    struct node_info *ni = malloc(sizeof *ni);
    if (!ni) {
        resp_reply_done_error(s, "ERR out of memory");
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
