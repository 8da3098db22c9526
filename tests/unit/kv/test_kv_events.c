/* kv change events (kv.h): every change a command makes is reported once,
 * with the command's index, in the order it was made; failed conditions and
 * restores report nothing; the events never change the state. */
#include "test.h"

#include <stdio.h>

#include "kvtest.h"

#define EV_MAX 64

struct rec {
    int n;
    struct {
        enum kv_event_type type;
        char key[32];
        char value[32];
        uint64_t version, expire;
        uint8_t op;
    } e[EV_MAX];
};

static void rec_cb(void *ctx, const struct kv_event *ev)
{
    struct rec *r = ctx;
    if (r->n >= EV_MAX) return;
    r->e[r->n].type = ev->type;
    snprintf(r->e[r->n].key, sizeof r->e[r->n].key, "%.*s", (int)ev->key_len, ev->key);
    snprintf(r->e[r->n].value, sizeof r->e[r->n].value, "%.*s", (int)ev->value_len,
             ev->value ? (const char *)ev->value : "");
    r->e[r->n].version = ev->version;
    r->e[r->n].expire = ev->expire_at_ms;
    r->e[r->n].op = ev->op;
    r->n++;
}

static struct kv *kv_with(struct rec *r)
{
    struct kv_config cfg;
    kv_config_default(&cfg);
    cfg.event_cb = rec_cb;
    cfg.event_ctx = r;
    struct kv *kv = NULL;
    ASSERT_EQ(kv_create(&cfg, &kv), 0);
    return kv;
}

#define EXPECT_EV(r, i, t, k, v, ver)                                                              \
    do {                                                                                           \
        ASSERT_EQ((r)->e[i].type, t);                                                              \
        ASSERT_STREQ((r)->e[i].key, k);                                                            \
        ASSERT_STREQ((r)->e[i].value, v);                                                          \
        ASSERT_EQ((r)->e[i].version, (uint64_t)(ver));                                             \
    } while (0)

TEST(puts_and_deletes_report_key_value_and_the_commands_index)
{
    struct rec r = {0};
    struct kv *kv = kv_with(&r);
    struct kv_result res;
    ASSERT_EQ(kvt_put(kv, 1, 100, "a", "1", 0, KV_COND_NONE, 0, &res), 0);
    ASSERT_EQ(kvt_put(kv, 2, 100, "a", "a longer value than before", 0, KV_COND_NONE, 0, &res), 0);
    ASSERT_EQ(kvt_put(kv, 3, 100, "b", "2", 5000, KV_COND_NONE, 0, &res), 0);
    ASSERT_EQ(kvt_del(kv, 4, 100, "a", KV_COND_NONE, 0, &res), 0);
    ASSERT_EQ(r.n, 4);
    EXPECT_EV(&r, 0, KV_EVENT_PUT, "a", "1", 1);
    EXPECT_EV(&r, 1, KV_EVENT_PUT, "a", "a longer value than before", 2);
    EXPECT_EV(&r, 2, KV_EVENT_PUT, "b", "2", 3);
    ASSERT_EQ(r.e[2].expire, 5100u);
    EXPECT_EV(&r, 3, KV_EVENT_DELETE, "a", "", 4);
    kv_destroy(kv);
}

TEST(failed_conditions_and_absent_keys_report_nothing)
{
    struct rec r = {0};
    struct kv *kv = kv_with(&r);
    struct kv_result res;
    ASSERT_EQ(kvt_put(kv, 1, 100, "a", "1", 0, KV_COND_NONE, 0, &res), 0);
    ASSERT_EQ(kvt_put(kv, 2, 100, "a", "2", 0, KV_COND_IF_ABSENT, 0, &res), 0);
    ASSERT_EQ(res.status, KV_STATUS_PRECONDITION_FAILED);
    ASSERT_EQ(kvt_del(kv, 3, 100, "zz", KV_COND_NONE, 0, &res), 0);
    ASSERT_EQ(res.status, KV_STATUS_NOT_FOUND);
    ASSERT_EQ(r.n, 1);
    kv_destroy(kv);
}

TEST(expiry_purge_eviction_and_dead_keys_report_expire_or_evict)
{
    struct rec r = {0};
    struct kv *kv = kv_with(&r);
    struct kv_result res;
    ASSERT_EQ(kvt_put(kv, 1, 100, "t1", "x", 10, KV_COND_NONE, 0, &res), 0);
    ASSERT_EQ(kvt_put(kv, 2, 100, "t2", "y", 10, KV_COND_NONE, 0, &res), 0);
    ASSERT_EQ(kvt_put(kv, 3, 100, "t3", "z", 10, KV_COND_NONE, 0, &res), 0);
    ASSERT_EQ(kvt_put(kv, 4, 100, "e", "w", 0, KV_COND_NONE, 0, &res), 0);
    r.n = 0;
    /* purge at 200: t1, t2, t3 are due; at most 1 */
    ASSERT_EQ(kvt_purge(kv, 5, 200, 1, &res), 0);
    ASSERT_EQ(r.n, 1);
    ASSERT_EQ(r.e[0].type, KV_EVENT_EXPIRE);
    ASSERT_EQ(r.e[0].version, 5u);
    /* a put over a dead key: its expiry first, then the put */
    ASSERT_EQ(kvt_put(kv, 6, 200, "t2", "new", 0, KV_COND_NONE, 0, &res), 0);
    ASSERT_EQ(r.n, 3);
    EXPECT_EV(&r, 1, KV_EVENT_EXPIRE, "t2", "", 6);
    EXPECT_EV(&r, 2, KV_EVENT_PUT, "t2", "new", 6);
    /* a delete of a dead key reports its expiry */
    ASSERT_EQ(kvt_del(kv, 7, 200, "t3", KV_COND_NONE, 0, &res), 0);
    ASSERT_EQ(res.status, KV_STATUS_NOT_FOUND);
    ASSERT_EQ(r.n, 4);
    EXPECT_EV(&r, 3, KV_EVENT_EXPIRE, "t3", "", 7);
    struct kv_evict_key ek = {.key = (const uint8_t *)"e", .key_len = 1, .version = 4};
    ASSERT_EQ(kvt_evict(kv, 8, &ek, 1, &res), 0);
    ASSERT_EQ(r.n, 5);
    EXPECT_EV(&r, 4, KV_EVENT_EVICT, "e", "", 8);
    kv_destroy(kv);
}

static int sink_cb(void *ctx, const void *data, size_t len)
{
    struct st_membuf_like {
        uint8_t *p;
        size_t len, cap;
    } *b = ctx;
    if (b->len + len > b->cap) {
        size_t cap = (b->len + len) * 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) return ST_ENOMEM;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
    return 0;
}

TEST(events_do_not_change_the_state_and_a_restore_reports_none)
{
    struct rec r = {0};
    struct kv *a = kv_with(&r), *b = NULL;
    ASSERT_EQ(kv_create(NULL, &b), 0);
    struct kv_result res;
    for (uint64_t i = 1; i <= 40; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%llu", (unsigned long long)(i % 7));
        if (i % 5 == 0) {
            ASSERT_EQ(kvt_del(a, i, 100 + i, k, KV_COND_NONE, 0, &res), 0);
            ASSERT_EQ(kvt_del(b, i, 100 + i, k, KV_COND_NONE, 0, &res), 0);
        } else {
            ASSERT_EQ(kvt_put(a, i, 100 + i, k, "v", i % 3 ? 0 : 20, KV_COND_NONE, 0, &res), 0);
            ASSERT_EQ(kvt_put(b, i, 100 + i, k, "v", i % 3 ? 0 : 20, KV_COND_NONE, 0, &res), 0);
        }
    }
    ASSERT_EQ(kv_digest(a), kv_digest(b));
    struct {
        uint8_t *p;
        size_t len, cap;
    } snap = {0};
    ASSERT_EQ(kv_snapshot_write(a, kv_applied_index(a), NULL, 0, sink_cb, &snap), 0);
    int before = r.n;
    struct kv_restore *rs = NULL;
    ASSERT_EQ(kv_restore_begin(a, &rs), 0);
    ASSERT_EQ(kv_restore_feed(rs, snap.p, snap.len), 0);
    ASSERT_EQ(kv_restore_finish(rs, NULL), 0);
    ASSERT_EQ(r.n, before);
    ASSERT_EQ(kv_digest(a), kv_digest(b));
    /* events resume with the next command */
    ASSERT_EQ(kvt_put(a, 41, 200, "after", "x", 0, KV_COND_NONE, 0, &res), 0);
    ASSERT_EQ(r.n, before + 1);
    free(snap.p);
    kv_destroy(a);
    kv_destroy(b);
}

TEST(a_publish_reports_its_message_and_changes_nothing)
{
    struct rec r = {0};
    struct kv *kv = kv_with(&r);
    struct kv_result res;
    struct kv_command c = {.type = KV_CMD_PUBLISH,
                           .timestamp_ms = 100,
                           .key = (const uint8_t *)"news",
                           .key_len = 4,
                           .value = (const uint8_t *)"hi",
                           .value_len = 2};
    ASSERT_EQ(kvt_apply_cmd(kv, 1, &c, &res), 0);
    ASSERT_EQ(res.status, KV_STATUS_OK);
    ASSERT_EQ(r.n, 1);
    EXPECT_EV(&r, 0, KV_EVENT_MESSAGE, "news", "hi", 1);
    struct kv_stats st;
    kv_stats(kv, &st);
    ASSERT_EQ(st.keys, 0);
    ASSERT_EQ(st.applied_index, 1);
    c.value_len = 0; /* an empty message and channel are messages too */
    c.key_len = 0;
    ASSERT_EQ(kvt_apply_cmd(kv, 2, &c, &res), 0);
    ASSERT_EQ(r.n, 2);
    EXPECT_EV(&r, 1, KV_EVENT_MESSAGE, "", "", 2);
    kv_destroy(kv);
}

TEST(transaction_changes_name_the_item_that_made_them)
{
    struct rec r = {0};
    struct kv *kv = kv_with(&r);
    struct kv_result res;
    ASSERT_EQ(kvt_put(kv, 1, 100, "a", "1", 0, KV_COND_NONE, 0, &res), 0);
    struct kv_txn_item items[] = {
        {.kind = KV_TXN_INCRBY, .key = (const uint8_t *)"a", .key_len = 1, .num = 2},
        {.kind = KV_TXN_RENAME,
         .key = (const uint8_t *)"a",
         .key_len = 1,
         .val = (const uint8_t *)"b",
         .val_len = 1},
        {.kind = KV_TXN_PUT,
         .flags = KV_TXN_F_KEEPTTL,
         .key = (const uint8_t *)"b",
         .key_len = 1,
         .val = (const uint8_t *)"x",
         .val_len = 1},
    };
    struct kv_command c = {.type = KV_CMD_TXN,
                           .timestamp_ms = 100,
                           .txn_items = items,
                           .txn_success = 3,
                           .txn_value_bytes_max = 1024};
    ASSERT_EQ(kvt_apply_cmd(kv, 2, &c, &res), 0);
    ASSERT_EQ(r.n, 5);
    ASSERT_EQ(r.e[0].op, 0); /* a single command */
    EXPECT_EV(&r, 1, KV_EVENT_PUT, "a", "3", 2);
    ASSERT_EQ(r.e[1].op, KV_TXN_INCRBY);
    EXPECT_EV(&r, 2, KV_EVENT_DELETE, "a", "", 2);
    ASSERT_EQ(r.e[2].op, KV_TXN_RENAME);
    EXPECT_EV(&r, 3, KV_EVENT_PUT, "b", "3", 2);
    ASSERT_EQ(r.e[3].op, KV_TXN_RENAME);
    EXPECT_EV(&r, 4, KV_EVENT_PUT, "b", "x", 2);
    ASSERT_EQ(r.e[4].op, KV_TXN_PUT | KV_EVENT_OP_KEEPTTL);
    ASSERT_EQ(kvt_put(kv, 3, 100, "c", "1", 0, KV_COND_NONE, 0, &res), 0);
    ASSERT_EQ(r.e[5].op, 0); /* reset after the transaction */
    kv_destroy(kv);
}

TEST_MAIN()
