/* What the command files of resp/ share: the command table's row type
 * and flags, the reply and argument helpers (commands.c), and every
 * command handler. The table (one, sorted) and the dispatch live in
 * commands.c; handlers live in cmd_conn.c (connection, server,
 * introspection), cmd_string.c (string reads and plain writes), cmd_txn.c
 * (read-modify-write commands and MULTI/EXEC, as kv transactions),
 * cmd_hash.c (hash reads; hash writes compile in cmd_txn.c); other
 * groups get their own file and a row in the table. */
#ifndef ST_RESP_CMD_H
#define ST_RESP_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "node/node.h"
#include "resp/resp_int.h"

#define RESP_VERSION "7.0.0"
#define RESP_E_WRONGTYPE "WRONGTYPE Operation against a key holding the wrong kind of value"

enum {
    CMD_WRITE = 1u << 0,
    CMD_READONLY = 1u << 1,
    CMD_FAST = 1u << 2,
    CMD_CONN = 1u << 3,  /* connection state, no keys */
    CMD_ADMIN = 1u << 4, /* administrative (FLUSHDB, CONFIG): gated by authorisation */
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

/* The table, sorted by name, and its length; a command by name (any case),
 * or NULL. */
const struct resp_cmd *resp_cmd_table(size_t *n);
const struct resp_cmd *resp_cmd_lookup(const uint8_t *p, size_t len);

/* ---- helpers (commands.c) ---- */
/* a equals the lower-case s, ignoring case. */
bool resp_arg_is(const struct resp_arg *a, const char *s);
/* Reply and complete the slot. */
void resp_reply_done_error(struct resp_slot *s, const char *msg);
void resp_reply_done_ok(struct resp_slot *s);
void resp_reply_syntax(struct resp_slot *s);
void resp_reply_not_integer(struct resp_slot *s);
void resp_reply_arity(struct resp_slot *s, const char *name);
/* The Redis error of a node failure. `write`: the command proposed a
 * write, whose outcome a timeout leaves unknown. */
void resp_reply_node_error(struct resp_out *o, int rc, bool write);
void resp_done_node_error(struct resp_slot *s, int rc, bool write);
/* The first step of a linearizable read barrier's node callback (a read
 * whose value is not used, on a slot held with resp_slot_hold): unholds s
 * and, when the read failed (ST_ENOENT is no failure), answers the node's
 * error. Returns true when the caller goes on to finish s; false when s is
 * answered or its connection is closing (then s must not be touched). */
bool resp_barrier_passed(struct resp_slot *s, const struct node_read_result *res);
/* The read consistency of the connection (READONLY: stale). */
enum node_consistency resp_read_mode(const struct resp_conn *c);
uint64_t resp_wall_ms(void);
/* Copies argv[first], argv[first + step], ... into s->keys; false when out
 * of memory. resp_keys_next walks them with a cursor (offset). */
bool resp_keys_save(struct resp_slot *s, const struct resp_arg *argv, uint32_t first, uint32_t argc,
                    uint32_t step);
const uint8_t *resp_keys_next(struct resp_slot *s, size_t *off, size_t *len);
/* cmd_hash.c: HLEN, HGETALL, HKEYS, HVALS over a hash read whole: the
 * kind of a0 (>= 0), or -1 if a0 is none of them; the reply for a kind
 * over the encoded hash hv[0..len) (NULL: no such key). */
int resp_hash_whole_kind(const struct resp_arg *a0);
void resp_hash_reply_whole(struct resp_out *o, int kind, const uint8_t *hv, size_t len);
/* GETRANGE's reply over v[0..len) (Redis 7.0's getrangeCommand; cmd_string.c). */
void resp_reply_range(struct resp_out *o, const uint8_t *v, size_t len, long long start,
                      long long end);

/* ---- handlers ---- */
/* cmd_pubsub.c */
void resp_cmd_subscribe(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                        uint32_t argc);
void resp_cmd_psubscribe(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                         uint32_t argc);
void resp_cmd_unsubscribe(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                          uint32_t argc);
void resp_cmd_punsubscribe(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                           uint32_t argc);
void resp_cmd_publish(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                      uint32_t argc);
void resp_cmd_pubsub(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                     uint32_t argc);
/* cmd_conn.c */
void resp_cmd_ping(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                   uint32_t argc);
void resp_cmd_echo(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                   uint32_t argc);
void resp_cmd_hello(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                    uint32_t argc);
void resp_cmd_auth(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                   uint32_t argc);
void resp_cmd_select(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                     uint32_t argc);
void resp_cmd_quit(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                   uint32_t argc);
void resp_cmd_reset(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                    uint32_t argc);
void resp_cmd_readonly(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                       uint32_t argc);
void resp_cmd_client(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                     uint32_t argc);
void resp_cmd_command(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                      uint32_t argc);
void resp_cmd_config(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                     uint32_t argc);
void resp_cmd_time(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                   uint32_t argc);
void resp_cmd_wait(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                   uint32_t argc);
void resp_cmd_info(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                   uint32_t argc);
/* cmd_string.c */
void resp_cmd_get(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                  uint32_t argc);
void resp_cmd_ttl(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                  uint32_t argc);
void resp_cmd_getrange(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                       uint32_t argc);
void resp_cmd_mget(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                   uint32_t argc);
void resp_cmd_exists(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                     uint32_t argc);
void resp_cmd_dbsize(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                     uint32_t argc);
void resp_cmd_set(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                  uint32_t argc);
void resp_cmd_setnx(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                    uint32_t argc);
void resp_cmd_setex(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                    uint32_t argc);
void resp_cmd_del(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                  uint32_t argc);
/* cmd_txn.c */
/* The read-modify-write commands (one row each, one handler). */
void resp_cmd_txn(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                  uint32_t argc);
void resp_cmd_msetnx(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                     uint32_t argc);
void resp_cmd_multi(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                    uint32_t argc);
void resp_cmd_exec(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                   uint32_t argc);
void resp_cmd_discard(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                      uint32_t argc);
void resp_cmd_watch(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                    uint32_t argc);
void resp_cmd_unwatch(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                      uint32_t argc);
/* cmd_hash.c: the hash reads (one row each, one handler) and HSCAN */
void resp_cmd_hread(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                    uint32_t argc);
void resp_cmd_hscan(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                    uint32_t argc);
/* MULTI state of a connection: true if argv is to be queued (inside MULTI,
 * not EXEC/DISCARD/MULTI/WATCH/QUIT/RESET); queue it (k: its table row,
 * NULL for an unknown command, which the caller answers) answering QUEUED
 * or an error that makes EXEC abort. */
bool resp_multi_queues(const struct resp_conn *c, const struct resp_arg *argv);
void resp_multi_queue(struct resp_conn *c, struct resp_slot *s, const struct resp_cmd *k,
                      const struct resp_arg *argv, uint32_t argc);
/* Leaves MULTI and forgets WATCHed keys (RESET, DISCARD, EXEC). */
void resp_multi_reset(struct resp_conn *c);

#endif
