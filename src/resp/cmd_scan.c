/* KEYS, SCAN and RANDOMKEY over the ordered index (node_list), docs/REDIS.md.
 *
 * Patterns have the glob semantics of Redis's stringmatchlen (*, ?, [...],
 * [^...], ranges, backslash escapes); the literal bytes before the first
 * special character become a prefix range of the index, so `MATCH user:*`
 * walks only the keys under user:.
 *
 * SCAN cursors: 0 starts; a nonzero cursor names the last key the previous
 * call visited, kept in a bounded table (RESP_SCAN_CURSORS_MAX, the oldest
 * replaced first) of the node that answered. The walk continues strictly
 * after that key in byte order, so a key present for the whole iteration is
 * returned exactly once whatever is written meanwhile (Redis promises at
 * least once). A cursor unknown to the node (another node's, or replaced)
 * is refused with "ERR invalid cursor". */
#include "node/auth.h"
#include "resp/cmd.h"
#include "resp/resp_int.h"
#include "resp/cmd_scan.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/node.h"
#include "stcache/errors.h"

#define RESP_SCAN_CURSORS_MAX 1024u
#define RESP_SCAN_COUNT_DEFAULT 10u
#define RESP_SCAN_COUNT_MAX 100000u
#define RESP_KEYS_PAGE 10000u

enum { SCAN_KEYS = 1, SCAN_SCAN, SCAN_RANDOMKEY };

/* ---------------------------------------------------------------- glob */

int resp_glob_match(const uint8_t *p, size_t plen, const uint8_t *s, size_t slen, int nesting)
{
    if (nesting > 1000) return 0; /* Redis's bound on '*' recursion */
    while (plen && slen) {
        switch (p[0]) {
        case '*':
            while (plen > 1 && p[1] == '*') {
                p++;
                plen--;
            }
            if (plen == 1) return 1;
            while (slen) {
                if (resp_glob_match(p + 1, plen - 1, s, slen, nesting + 1)) return 1;
                s++;
                slen--;
            }
            return 0;
        case '?':
            s++;
            slen--;
            break;
        case '[': {
            int neg, match = 0;
            p++;
            plen--;
            neg = plen && p[0] == '^';
            if (neg) {
                p++;
                plen--;
            }
            for (;;) {
                if (plen >= 2 && p[0] == '\\') {
                    p++;
                    plen--;
                    if (p[0] == s[0]) match = 1;
                } else if (plen == 0) {
                    p--; /* an unterminated '[': the step below lands at the end */
                    plen++;
                    break;
                } else if (p[0] == ']') {
                    break;
                } else if (plen >= 3 && p[1] == '-') {
                    int lo = p[0], hi = p[2], ch = s[0];
                    if (lo > hi) {
                        int t = lo;
                        lo = hi;
                        hi = t;
                    }
                    p += 2;
                    plen -= 2;
                    if (ch >= lo && ch <= hi) match = 1;
                } else if (p[0] == s[0]) {
                    match = 1;
                }
                p++;
                plen--;
            }
            if (neg) match = !match;
            if (!match) return 0;
            s++;
            slen--;
            break;
        }
        case '\\':
            if (plen >= 2) {
                p++;
                plen--;
            }
            /* fall through */
        default:
            if (p[0] != s[0]) return 0;
            s++;
            slen--;
            break;
        }
        p++;
        plen--;
        if (slen == 0) {
            while (plen && p[0] == '*') {
                p++;
                plen--;
            }
            break;
        }
    }
    return plen == 0 && slen == 0;
}

size_t resp_glob_literal_prefix(const uint8_t *p, size_t plen)
{
    size_t i = 0;
    while (i < plen && p[i] != '*' && p[i] != '?' && p[i] != '[' && p[i] != '\\')
        i++;
    return i;
}

/* ------------------------------------------------------------- cursors */

/* Cursor ids and RANDOMKEY's points: splitmix64 over the clock; not a
 * secret (a cursor only names a position in the key order). */
static uint64_t scan_random(void)
{
    static uint64_t state;
    if (state == 0) state = node_now_us() | 1;
    uint64_t z = (state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

struct scan_cursor {
    uint64_t id; /* 0: free */
    uint8_t *key;
    size_t key_len;
};

/* One table for the process (every server runs on the loop thread). */
static struct scan_cursor cursors[RESP_SCAN_CURSORS_MAX];
static uint32_t cursor_next;

static const struct scan_cursor *cursor_find(uint64_t id)
{
    for (uint32_t i = 0; i < RESP_SCAN_CURSORS_MAX; i++)
        if (cursors[i].id == id) return &cursors[i];
    return NULL;
}

/* A new cursor for key (copied); 0 when out of memory. */
static uint64_t cursor_put(const uint8_t *key, size_t len)
{
    struct scan_cursor *c = &cursors[cursor_next];
    uint8_t *k = malloc(len ? len : 1);
    if (!k) return 0;
    if (len) memcpy(k, key, len);
    free(c->key);
    c->key = k;
    c->key_len = len;
    uint64_t id;
    do {
        id = scan_random() & (((uint64_t)1 << 62) - 1);
    } while (id == 0 || cursor_find(id));
    c->id = id;
    cursor_next = (cursor_next + 1) % RESP_SCAN_CURSORS_MAX;
    return id;
}

/* ---------------------------------------------------------------- walk */

/* s->keys holds: the pattern (u32 length, bytes), the start key (u32
 * length, bytes), then the keys found (u32 length, bytes each). */
static void put_span(struct st_membuf *b, const void *p, size_t len)
{
    uint32_t l = (uint32_t)len;
    st_membuf_append(b, &l, sizeof l);
    if (len) st_membuf_append(b, p, len);
}

static const uint8_t *get_span(const struct st_membuf *b, size_t *off, size_t *len)
{
    uint32_t l;
    memcpy(&l, b->data + *off, sizeof l);
    const uint8_t *p = (const uint8_t *)b->data + *off + sizeof l;
    *off += sizeof l + l;
    *len = l;
    return p;
}

struct walk {
    struct resp_slot *s;
    const uint8_t *pat;
    size_t pat_len;
    bool match_all;
    uint64_t found;
    int type_filter; /* SCAN TYPE: 0 any, else 1 + enum node_value_type */
};

static int walk_cb(void *ctx, const struct node_list_item *it)
{
    struct walk *w = ctx;
    if (w->type_filter && it->value_type != w->type_filter - 1) return 0;
    if (!w->match_all && !resp_glob_match(w->pat, w->pat_len, it->key, it->key_len, 0)) return 0;
    put_span(&w->s->keys, it->key, it->key_len);
    w->found++;
    return 0;
}

static void scan_finish(struct resp_slot *s)
{
    struct resp_conn *c = s->conn;
    struct node *n = c->srv->node;
    struct resp_out o = resp_slot_out(s);
    size_t off = 0, pat_len, start_len;
    const uint8_t *pat = get_span(&s->keys, &off, &pat_len);
    const uint8_t *start = get_span(&s->keys, &off, &start_len);
    /* copies: s->keys grows below */
    uint8_t *patc = malloc(pat_len + start_len + 1);
    if (!patc) {
        resp_reply_error(&o, "ERR out of memory");
        resp_slot_done(s);
        return;
    }
    memcpy(patc, pat, pat_len);
    memcpy(patc + pat_len, start, start_len);
    size_t keys_at = s->keys.len;
    struct walk w = {.s = s, .pat = patc, .pat_len = pat_len, .type_filter = (int)(s->a1 >> 1)};
    size_t lit = resp_glob_literal_prefix(patc, pat_len);
    w.match_all = pat_len == 1 && patc[0] == '*';
    struct node_list_args a = {0};
    a.prefix = patc;
    a.prefix_len = lit;
    a.start = patc + pat_len;
    a.start_len = start_len;
    a.start_after = (s->a1 & 1) != 0; /* a continuation: strictly after the cursor's key */
    struct node_list_result r;
    int rc = 0;
    uint64_t next = 0;
    if (s->cmd == SCAN_SCAN) {
        a.limit = (uint64_t)s->a2;
        rc = node_list(n, &a, walk_cb, &w, &r);
        if (rc == 0 && r.more && r.last_key) {
            next = cursor_put(r.last_key, r.last_key_len);
            if (next == 0) rc = ST_ENOMEM;
        }
    } else if (s->cmd == SCAN_RANDOMKEY) {
        /* The first live key at or after a random point of the key space
         * (of random first bytes), else the first key. */
        uint8_t rnd[8];
        uint64_t v = scan_random();
        memcpy(rnd, &v, sizeof rnd);
        a.start = rnd;
        a.start_len = sizeof rnd;
        a.start_after = 0;
        a.limit = 64;
        w.match_all = true;
        rc = node_list(n, &a, walk_cb, &w, &r);
        if (rc == 0 && w.found == 0) {
            a.start_len = 0;
            rc = node_list(n, &a, walk_cb, &w, &r);
        }
    } else { /* KEYS: every page */
        a.limit = RESP_KEYS_PAGE;
        for (;;) {
            rc = node_list(n, &a, walk_cb, &w, &r);
            if (rc != 0 || !r.more || !r.last_key) break;
            /* continue after the last key visited: it points into the kv,
             * which does not change during this synchronous loop */
            a.start = r.last_key;
            a.start_len = r.last_key_len;
            a.start_after = 1;
        }
    }
    free(patc);
    if (rc != 0 || s->keys.oom) {
        if (rc == ST_ENOMEM || s->keys.oom)
            resp_reply_error(&o, "ERR out of memory");
        else
            resp_reply_error(&o, "TRYAGAIN the node is shutting down");
        resp_slot_done(s);
        return;
    }
    off = keys_at;
    if (s->cmd == SCAN_RANDOMKEY) {
        if (w.found == 0) {
            resp_reply_null(&o);
        } else {
            size_t len;
            const uint8_t *k = get_span(&s->keys, &off, &len);
            resp_reply_bulk(&o, k, len);
        }
        resp_slot_done(s);
        return;
    }
    if (s->cmd == SCAN_SCAN) {
        char cur[24];
        snprintf(cur, sizeof cur, "%" PRIu64, next);
        resp_reply_array(&o, 2);
        resp_reply_bulk_str(&o, cur);
    }
    resp_reply_array(&o, (size_t)w.found);
    for (uint64_t i = 0; i < w.found; i++) {
        size_t len;
        const uint8_t *k = get_span(&s->keys, &off, &len);
        resp_reply_bulk(&o, k, len);
    }
    resp_slot_done(s);
}

static void scan_barrier_cb(void *ctx, const struct node_read_result *res)
{
    struct resp_slot *s = ctx;
    if (resp_slot_unhold(s)) return;
    if (res->status != 0 && res->status != ST_ENOENT) {
        struct resp_out o = resp_slot_out(s);
        resp_reply_error(&o, res->status == ST_ENOTLEADER
                                 ? "TRYAGAIN no leader: the cluster is electing one"
                                 : "TRYAGAIN read timed out");
        resp_slot_done(s);
        return;
    }
    scan_finish(s);
}

/* Linearizable unless READONLY, like the other multi-key reads. */
static void scan_start(struct resp_conn *c, struct resp_slot *s)
{
    if (s->keys.oom) {
        struct resp_out o = resp_slot_out(s);
        resp_reply_error(&o, "ERR out of memory");
        resp_slot_done(s);
        return;
    }
    if (c->readonly) {
        scan_finish(s);
        return;
    }
    static const uint8_t barrier_key[1] = {0};
    resp_slot_hold(s);
    int rc = node_get(c->srv->node, barrier_key, 1, NODE_READ_LINEARIZABLE, scan_barrier_cb, s);
    if (rc < 0) {
        resp_slot_unhold(s);
        struct resp_out o = resp_slot_out(s);
        resp_reply_error(&o, "TRYAGAIN the node cannot serve reads now");
        resp_slot_done(s);
    }
}

/* KEYS, SCAN and RANDOMKEY name keys of the whole keyspace: with --auth
 * only a user who may read every key runs them (one limited to prefixes
 * would learn the other keys' names). */
static bool keyspace_readable(struct resp_conn *c, struct resp_slot *s)
{
    if (node_auth_range_allowed(c->srv->node, &c->who, (const uint8_t *)"", 0, NULL, 0, NULL, 0))
        return true;
    resp_reply_done_error(s, "NOPERM this user has no permissions to access one of the keys "
                             "used as arguments");
    return false;
}

void resp_cmd_keys(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                   uint32_t argc)
{
    (void)argc;
    if (!keyspace_readable(c, s)) return;
    st_membuf_reset(&s->keys);
    s->cmd = SCAN_KEYS;
    s->a1 = 0;
    put_span(&s->keys, argv[1].p, argv[1].len);
    put_span(&s->keys, NULL, 0);
    scan_start(c, s);
}

void resp_cmd_randomkey(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                        uint32_t argc)
{
    (void)argv;
    (void)argc;
    if (!keyspace_readable(c, s)) return;
    st_membuf_reset(&s->keys);
    s->cmd = SCAN_RANDOMKEY;
    s->a1 = 0;
    put_span(&s->keys, "*", 1);
    put_span(&s->keys, NULL, 0);
    scan_start(c, s);
}

void resp_cmd_scan(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                   uint32_t argc)
{
    uint64_t cur = 0;
    if (!keyspace_readable(c, s)) return;
    if (argv[1].len == 0 || argv[1].len > 20) {
        resp_reply_done_error(s, "ERR invalid cursor");
        return;
    }
    for (size_t i = 0; i < argv[1].len; i++) {
        uint8_t ch = argv[1].p[i];
        if (ch < '0' || ch > '9' || cur > (UINT64_MAX - 9) / 10) {
            resp_reply_done_error(s, "ERR invalid cursor");
            return;
        }
        cur = cur * 10 + (uint64_t)(ch - '0');
    }
    const struct resp_arg *pat = NULL;
    long long count = RESP_SCAN_COUNT_DEFAULT;
    bool type_ok = true;
    long long type_filter = 0; /* walk.type_filter */
    for (uint32_t i = 2; i < argc; i += 2) {
        if (i + 1 >= argc) {
            resp_reply_done_error(s, "ERR syntax error");
            return;
        }
        if (resp_arg_is(&argv[i], "match")) {
            pat = &argv[i + 1];
        } else if (resp_arg_is(&argv[i], "count")) {
            char buf[24];
            if (argv[i + 1].len == 0 || argv[i + 1].len >= sizeof buf) {
                resp_reply_done_error(s, "ERR value is not an integer or out of range");
                return;
            }
            memcpy(buf, argv[i + 1].p, argv[i + 1].len);
            buf[argv[i + 1].len] = '\0';
            char *end;
            count = strtoll(buf, &end, 10);
            if (*end) {
                resp_reply_done_error(s, "ERR value is not an integer or out of range");
                return;
            }
            if (count < 1) {
                resp_reply_done_error(s, "ERR syntax error");
                return;
            }
            if (count > RESP_SCAN_COUNT_MAX) count = RESP_SCAN_COUNT_MAX;
        } else if (resp_arg_is(&argv[i], "type")) {
            /* strings and hashes exist; any other type: nothing */
            type_filter = resp_arg_is(&argv[i + 1], "string") ? 1 + NODE_VALUE_STRING
                          : resp_arg_is(&argv[i + 1], "hash") ? 1 + NODE_VALUE_HASH
                                                              : 0;
            type_ok = type_filter != 0;
        } else {
            resp_reply_done_error(s, "ERR syntax error");
            return;
        }
    }
    const struct scan_cursor *sc = NULL;
    if (cur != 0 && !(sc = cursor_find(cur))) {
        resp_reply_done_error(s, "ERR invalid cursor");
        return;
    }
    if (!type_ok) { /* nothing of another type: the iteration is over */
        struct resp_out o = resp_slot_out(s);
        resp_reply_array(&o, 2);
        resp_reply_bulk_str(&o, "0");
        resp_reply_array(&o, 0);
        resp_slot_done(s);
        return;
    }
    st_membuf_reset(&s->keys);
    s->cmd = SCAN_SCAN;
    s->a1 = (sc != NULL) | (type_filter << 1);
    s->a2 = count;
    if (pat)
        put_span(&s->keys, pat->p, pat->len);
    else
        put_span(&s->keys, "*", 1);
    put_span(&s->keys, sc ? sc->key : NULL, sc ? sc->key_len : 0);
    scan_start(c, s);
}
