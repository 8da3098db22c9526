/* kv sessions (issue 20, item 4): sessions created, ended and bounded by
 * applied entries only; PUT_SESSION attaches (key, version); ending a
 * session deletes exactly the attached keys still at their attached
 * version; the table is in the digest and in a version 5 snapshot
 * section that restores it. */
#include "test.h"

#include "kv/kv_session.h"
#include "kvtest.h"

static struct kv *new_kv(void)
{
    struct kv *kv = NULL;
    if (kv_create(NULL, &kv) != 0) return NULL;
    return kv;
}

static int sess_create(struct kv *kv, uint64_t index, uint64_t ttl_ms, const char *name,
                       uint32_t sessions_max, struct kv_result *r)
{
    struct kv_command c = {.type = KV_CMD_SESSION_CREATE,
                           .req = {5, index},
                           .timestamp_ms = 100 + index,
                           .ttl_ms = ttl_ms,
                           .keys_max = sessions_max,
                           .value = (const uint8_t *)name,
                           .value_len = (uint32_t)strlen(name)};
    return kvt_apply_cmd(kv, index, &c, r);
}

static int sess_destroy(struct kv *kv, uint64_t index, uint64_t id, uint32_t reason,
                        struct kv_result *r)
{
    struct kv_command c = {.type = KV_CMD_SESSION_DESTROY,
                           .req = {5, index},
                           .timestamp_ms = 100 + index,
                           .session_id = id,
                           .reason = reason};
    return kvt_apply_cmd(kv, index, &c, r);
}

static int sess_put(struct kv *kv, uint64_t index, uint64_t id, const char *key, const char *value,
                    enum kv_cond cond, struct kv_result *r)
{
    struct kv_command c = {.type = KV_CMD_PUT_SESSION,
                           .cond = cond,
                           .req = {5, index},
                           .timestamp_ms = 100 + index,
                           .session_id = id,
                           .key = (const uint8_t *)key,
                           .key_len = (uint32_t)strlen(key),
                           .value = (const uint8_t *)value,
                           .value_len = (uint32_t)strlen(value)};
    return kvt_apply_cmd(kv, index, &c, r);
}

TEST(a_session_is_created_with_its_index_as_id_and_destroyed_once)
{
    struct kv *kv = new_kv();
    struct kv_result r;
    ASSERT_EQ(sess_create(kv, 1, 5000, "worker-1", 16, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_OK);
    ASSERT_EQ(r.version, 1);
    ASSERT_EQ(sess_create(kv, 2, 1000, "", 16, &r), 0);
    ASSERT_EQ(r.version, 2);
    ASSERT_EQ(kv_session_count(kv), 2);
    const struct kv_session *s = kv_session_find(kv, 1);
    ASSERT_TRUE(s != NULL);
    ASSERT_EQ(s->ttl_ms, 5000);
    ASSERT_EQ(s->name_len, 8);
    ASSERT_EQ(memcmp(s->name, "worker-1", 8), 0);
    ASSERT_EQ(kv_session_at(kv, 1)->id, 2);
    ASSERT_EQ(sess_destroy(kv, 3, 1, KV_SESSION_END_DESTROYED, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_OK);
    ASSERT_TRUE(kv_session_find(kv, 1) == NULL);
    ASSERT_EQ(sess_destroy(kv, 4, 1, KV_SESSION_END_EXPIRED, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_NO_SESSION);
    ASSERT_EQ(kv_session_count(kv), 1);
    ASSERT_EQ(kv_check_invariants(kv), 0);
    kv_destroy(kv);
}

TEST(ending_a_session_deletes_only_the_keys_still_at_their_attached_version)
{
    struct kv *kv = new_kv();
    struct kv_result r;
    ASSERT_EQ(sess_create(kv, 1, 5000, "s", 16, &r), 0);
    ASSERT_EQ(sess_put(kv, 2, 1, "lock/a", "h1", KV_COND_IF_ABSENT, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_OK);
    ASSERT_EQ(r.version, 2); /* the fencing token */
    ASSERT_EQ(sess_put(kv, 3, 1, "b", "1", KV_COND_NONE, &r), 0);
    ASSERT_EQ(sess_put(kv, 4, 1, "c", "1", KV_COND_NONE, &r), 0);
    ASSERT_EQ(sess_put(kv, 5, 1, "d", "1", KV_COND_NONE, &r), 0);
    /* b rewritten by a plain PUT, c deleted and recreated, d untouched */
    ASSERT_EQ(kvt_put(kv, 6, 106, "b", "2", 0, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(kvt_del(kv, 7, 107, "c", KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(kvt_put(kv, 8, 108, "c", "3", 0, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(kvt_put(kv, 9, 109, "other", "x", 0, KV_COND_NONE, 0, &r), 0);
    /* a second holder cannot take the lock while it is held */
    ASSERT_EQ(sess_create(kv, 10, 5000, "t", 16, &r), 0);
    ASSERT_EQ(sess_put(kv, 11, 10, "lock/a", "h2", KV_COND_IF_ABSENT, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_PRECONDITION_FAILED);
    ASSERT_EQ(r.version, 2);
    ASSERT_EQ(sess_destroy(kv, 12, 1, KV_SESSION_END_EXPIRED, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_OK);
    ASSERT_EQ(r.purged, 2);
    ASSERT_TRUE(!kvt_has(kv, "lock/a", "h1", 200));
    ASSERT_TRUE(!kvt_has(kv, "d", "1", 200));
    ASSERT_TRUE(kvt_has(kv, "b", "2", 200));
    ASSERT_TRUE(kvt_has(kv, "c", "3", 200));
    ASSERT_TRUE(kvt_has(kv, "other", "x", 200));
    /* now the other holder acquires, with a larger token */
    ASSERT_EQ(sess_put(kv, 13, 10, "lock/a", "h2", KV_COND_IF_ABSENT, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_OK);
    ASSERT_EQ(r.version, 13);
    ASSERT_TRUE(r.created);
    ASSERT_EQ(kv_check_invariants(kv), 0);
    kv_destroy(kv);
}

TEST(a_put_to_a_missing_session_changes_nothing)
{
    struct kv *kv = new_kv();
    struct kv_result r;
    ASSERT_EQ(sess_put(kv, 1, 77, "k", "v", KV_COND_NONE, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_NO_SESSION);
    ASSERT_TRUE(!kvt_has(kv, "k", "v", 200));
    struct kv_stats st;
    kv_stats(kv, &st);
    ASSERT_EQ(st.keys, 0);
    /* a session that ended is missing too */
    ASSERT_EQ(sess_create(kv, 2, 1000, "s", 16, &r), 0);
    ASSERT_EQ(sess_destroy(kv, 3, 2, KV_SESSION_END_DESTROYED, &r), 0);
    ASSERT_EQ(sess_put(kv, 4, 2, "k", "v", KV_COND_NONE, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_NO_SESSION);
    ASSERT_TRUE(!kvt_has(kv, "k", "v", 200));
    kv_destroy(kv);
}

TEST(bounds_on_sessions_ttl_and_attachments)
{
    struct kv *kv = new_kv();
    struct kv_result r;
    ASSERT_EQ(sess_create(kv, 1, 1000, "a", 2, &r), 0);
    ASSERT_EQ(sess_create(kv, 2, 1000, "b", 2, &r), 0);
    ASSERT_EQ(sess_create(kv, 3, 1000, "c", 2, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_SESSION_LIMIT);
    ASSERT_EQ(kv_session_count(kv), 2);
    /* a TTL out of its bounds does not encode (and does not decode) */
    uint8_t buf[256];
    size_t len = 0;
    struct kv_command c = {.type = KV_CMD_SESSION_CREATE,
                           .timestamp_ms = 1,
                           .ttl_ms = KV_SESSION_TTL_MS_MIN - 1,
                           .keys_max = 4};
    ASSERT_EQ(kv_command_encode(&c, buf, sizeof buf, &len), ST_EINVAL);
    c.ttl_ms = KV_SESSION_TTL_MS_MAX + 1;
    ASSERT_EQ(kv_command_encode(&c, buf, sizeof buf, &len), ST_EINVAL);
    c.ttl_ms = KV_SESSION_TTL_MS_MAX;
    ASSERT_EQ(kv_command_encode(&c, buf, sizeof buf, &len), 0);
    buf[KV_COMMAND_HEADER_BYTES + 3] = 0x7f; /* the ttl_ms field, far above the bound */
    struct kv_command d;
    ASSERT_EQ(kv_command_decode(buf, len, NULL, &d), ST_EPROTO);
    /* attachments: KV_SESSION_KEYS_MAX live keys, then the limit; a key
     * rewritten since frees its slot */
    uint64_t idx = 4;
    char key[32];
    for (uint32_t i = 0; i < KV_SESSION_KEYS_MAX; i++) {
        snprintf(key, sizeof key, "k%u", i);
        ASSERT_EQ(sess_put(kv, idx++, 1, key, "v", KV_COND_NONE, &r), 0);
        ASSERT_EQ(r.status, KV_STATUS_OK);
    }
    ASSERT_EQ(sess_put(kv, idx++, 1, "k0", "again", KV_COND_NONE, &r), 0); /* same key: ok */
    ASSERT_EQ(r.status, KV_STATUS_OK);
    ASSERT_EQ(sess_put(kv, idx++, 1, "extra", "v", KV_COND_NONE, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_SESSION_LIMIT);
    ASSERT_TRUE(!kvt_has(kv, "extra", "v", 10000));
    ASSERT_EQ(kvt_put(kv, idx++, 1000, "k5", "plain", 0, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(sess_put(kv, idx++, 1, "extra", "v", KV_COND_NONE, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_OK);
    ASSERT_EQ(kv_session_find(kv, 1)->n_keys, KV_SESSION_KEYS_MAX);
    ASSERT_EQ(sess_destroy(kv, idx++, 1, KV_SESSION_END_DESTROYED, &r), 0);
    ASSERT_EQ(r.purged, KV_SESSION_KEYS_MAX);
    ASSERT_TRUE(kvt_has(kv, "k5", "plain", 10000));
    kv_destroy(kv);
}

TEST(the_table_is_in_the_digest_and_a_version_5_snapshot_restores_it)
{
    struct kv *a = new_kv(), *b = new_kv();
    struct kv_result r;
    struct kvt_sink s;
    ASSERT_EQ(kvt_put(a, 1, 100, "k", "v", 0, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(kvt_snap(a, &s), 0);
    ASSERT_EQ(kvt_snap_version(&s), 2); /* no sessions, no users: older releases read it */
    free(s.data);
    ASSERT_EQ(sess_create(a, 2, 3000, "alpha", 16, &r), 0);
    ASSERT_EQ(sess_create(a, 3, 4000, "", 16, &r), 0);
    ASSERT_EQ(sess_put(a, 4, 2, "lock/x", "holder", KV_COND_IF_ABSENT, &r), 0);
    ASSERT_EQ(sess_put(a, 5, 2, "svc/a", "addr", KV_COND_NONE, &r), 0);
    ASSERT_EQ(sess_put(a, 6, 3, "svc/b", "addr", KV_COND_NONE, &r), 0);
    uint64_t d0 = kv_digest(a);
    ASSERT_EQ(kvt_snap(a, &s), 0);
    ASSERT_EQ(kvt_snap_version(&s), 5);
    ASSERT_EQ(kvt_restore(b, s.data, s.len, 3), 0);
    ASSERT_EQ(kv_check_invariants(b), 0);
    ASSERT_EQ(kv_digest(b), d0);
    ASSERT_EQ(kv_session_count(b), 2);
    const struct kv_session *sb = kv_session_find(b, 2);
    ASSERT_TRUE(sb != NULL);
    ASSERT_EQ(sb->ttl_ms, 3000);
    ASSERT_EQ(sb->n_keys, 2);
    ASSERT_EQ(memcmp(sb->name, "alpha", 5), 0);
    /* the restored replica ends the session alike */
    ASSERT_EQ(sess_destroy(a, 7, 2, KV_SESSION_END_EXPIRED, &r), 0);
    ASSERT_EQ(sess_destroy(b, 7, 2, KV_SESSION_END_EXPIRED, &r), 0);
    ASSERT_EQ(r.purged, 2);
    ASSERT_EQ(kv_digest(a), kv_digest(b));
    ASSERT_TRUE(!kvt_has(b, "lock/x", "holder", 200));
    ASSERT_TRUE(kvt_has(b, "k", "v", 200));
    /* the digest covers the table: a replica whose session differs differs */
    struct kv *c = new_kv();
    ASSERT_EQ(kvt_restore(c, s.data, s.len, s.len), 0);
    ASSERT_EQ(sess_destroy(c, 7, 3, KV_SESSION_END_EXPIRED, &r), 0);
    ASSERT_NE(kv_digest(c), kv_digest(a));
    /* every bit flip in the section is caught; the old state stays */
    uint64_t db = kv_digest(b);
    size_t from = s.len > 200 ? s.len - 200 : 0;
    for (size_t bit = from * 8; bit < s.len * 8; bit++) {
        s.data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        ASSERT_NE(kvt_restore(b, s.data, s.len, s.len), 0);
        s.data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    ASSERT_EQ(kv_digest(b), db);
    free(s.data);
    kv_destroy(a);
    kv_destroy(b);
    kv_destroy(c);
}

TEST(a_snapshot_under_writes_carries_the_sessions_as_of_begin)
{
    struct kv *a = new_kv(), *b = new_kv();
    struct kv_result r;
    ASSERT_EQ(sess_create(a, 1, 2000, "early", 16, &r), 0);
    ASSERT_EQ(sess_put(a, 2, 1, "k", "v", KV_COND_NONE, &r), 0);
    struct kvt_sink s;
    memset(&s, 0, sizeof s);
    struct kv_snapshot_cursor *cur = NULL;
    ASSERT_EQ(kv_snapshot_begin(a, 2, NULL, 0, kvt_sink_cb, &s, &cur), 0);
    ASSERT_EQ(sess_create(a, 3, 2000, "late", 16, &r), 0);
    ASSERT_EQ(sess_destroy(a, 4, 1, KV_SESSION_END_DESTROYED, &r), 0);
    while (kv_snapshot_next(cur, 16) == 1) {
    }
    kv_snapshot_end(cur);
    ASSERT_EQ(kvt_restore(b, s.data, s.len, 7), 0);
    ASSERT_EQ(kv_session_count(b), 1);
    ASSERT_TRUE(kv_session_find(b, 1) != NULL);
    ASSERT_TRUE(kvt_has(b, "k", "v", 200));
    free(s.data);
    kv_destroy(a);
    kv_destroy(b);
}

struct ev_rec {
    int n;
    enum kv_event_type type[8];
    uint64_t version[8];
};

static void ev_cb(void *ctx, const struct kv_event *ev)
{
    struct ev_rec *r = ctx;
    if (r->n < 8) {
        r->type[r->n] = ev->type;
        r->version[r->n] = ev->version;
    }
    r->n++;
}

TEST(ending_a_session_reports_its_deletions_as_change_events)
{
    struct ev_rec rec;
    memset(&rec, 0, sizeof rec);
    struct kv_config cfg;
    kv_config_default(&cfg);
    cfg.event_cb = ev_cb;
    cfg.event_ctx = &rec;
    struct kv *kv = NULL;
    ASSERT_EQ(kv_create(&cfg, &kv), 0);
    struct kv_result r;
    ASSERT_EQ(sess_create(kv, 1, 1000, "a", 16, &r), 0);
    ASSERT_EQ(sess_create(kv, 2, 1000, "b", 16, &r), 0);
    ASSERT_EQ(rec.n, 0); /* sessions themselves are no key events */
    ASSERT_EQ(sess_put(kv, 3, 1, "x", "1", KV_COND_NONE, &r), 0);
    ASSERT_EQ(sess_put(kv, 4, 2, "y", "1", KV_COND_NONE, &r), 0);
    ASSERT_EQ(rec.n, 2);
    ASSERT_EQ(rec.type[0], KV_EVENT_PUT);
    ASSERT_EQ(sess_destroy(kv, 5, 1, KV_SESSION_END_DESTROYED, &r), 0);
    ASSERT_EQ(sess_destroy(kv, 6, 2, KV_SESSION_END_EXPIRED, &r), 0);
    ASSERT_EQ(rec.n, 4);
    ASSERT_EQ(rec.type[2], KV_EVENT_DELETE);
    ASSERT_EQ(rec.version[2], 5);
    ASSERT_EQ(rec.type[3], KV_EVENT_EXPIRE);
    ASSERT_EQ(rec.version[3], 6);
    kv_destroy(kv);
}

static int fail_allocs;
static int fail_cb(void *ctx)
{
    (void)ctx;
    return fail_allocs;
}

TEST(out_of_memory_changes_nothing)
{
    struct kv_config cfg;
    kv_config_default(&cfg);
    cfg.alloc_fail_cb = fail_cb;
    struct kv *kv = NULL;
    ASSERT_EQ(kv_create(&cfg, &kv), 0);
    struct kv_result r;
    ASSERT_EQ(sess_create(kv, 1, 1000, "a", 16, &r), 0);
    char key[16];
    uint64_t idx = 2;
    for (uint32_t i = 0; i < KV_SESSION_KEYS_MAX; i++) {
        snprintf(key, sizeof key, "k%u", i);
        ASSERT_EQ(sess_put(kv, idx++, 1, key, "v", KV_COND_NONE, &r), 0);
    }
    ASSERT_EQ(kvt_put(kv, idx++, 500, "k3", "plain", 0, KV_COND_NONE, 0, &r), 0);
    uint64_t d = kv_digest(kv);
    fail_allocs = 1;
    ASSERT_EQ(sess_create(kv, idx++, 1000, "b", 16, &r), ST_ENOMEM);
    /* a full session with one dead attachment: nothing pruned on ENOMEM */
    ASSERT_EQ(sess_put(kv, idx++, 1, "new", "v", KV_COND_NONE, &r), ST_ENOMEM);
    fail_allocs = 0;
    ASSERT_EQ(kv_digest(kv), d);
    ASSERT_EQ(kv_session_count(kv), 1);
    ASSERT_EQ(kv_session_find(kv, 1)->n_keys, KV_SESSION_KEYS_MAX);
    ASSERT_EQ(sess_put(kv, idx++, 1, "new", "v", KV_COND_NONE, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_OK);
    ASSERT_EQ(kv_session_find(kv, 1)->n_keys, KV_SESSION_KEYS_MAX);
    ASSERT_EQ(kv_check_invariants(kv), 0);
    kv_destroy(kv);
}

TEST(session_commands_round_trip_through_the_codec)
{
    uint8_t buf[256];
    size_t len = 0;
    struct kv_command c = {.type = KV_CMD_PUT_SESSION,
                           .cond = KV_COND_IF_ABSENT,
                           .req = {1, 2},
                           .timestamp_ms = 3,
                           .session_id = 99,
                           .key = (const uint8_t *)"lk",
                           .key_len = 2,
                           .value = (const uint8_t *)"val",
                           .value_len = 3};
    ASSERT_EQ(kv_command_encode(&c, buf, sizeof buf, &len), 0);
    ASSERT_EQ(buf[0], KV_COMMAND_VERSION_SESSION);
    ASSERT_EQ(buf[1], KV_CMD_PUT_SESSION);
    struct kv_command d;
    ASSERT_EQ(kv_command_decode(buf, len, NULL, &d), 0);
    ASSERT_EQ(d.session_id, 99);
    ASSERT_EQ(d.key_len, 2);
    ASSERT_EQ(d.value_len, 3);
    ASSERT_EQ(d.cond, KV_COND_IF_ABSENT);
    /* any other version byte is refused */
    buf[0] = KV_COMMAND_VERSION_AUTH;
    ASSERT_EQ(kv_command_decode(buf, len, NULL, &d), ST_EPROTO);
    /* a plain PUT never carries a session id */
    c.type = KV_CMD_PUT;
    ASSERT_EQ(kv_command_encode(&c, buf, sizeof buf, &len), ST_EINVAL);
    struct kv_command x = {.type = KV_CMD_SESSION_DESTROY, .session_id = 5, .reason = 3};
    ASSERT_EQ(kv_command_encode(&x, buf, sizeof buf, &len), ST_EINVAL);
    x.reason = KV_SESSION_END_EXPIRED;
    ASSERT_EQ(kv_command_encode(&x, buf, sizeof buf, &len), 0);
    ASSERT_EQ(kv_command_decode(buf, len, NULL, &d), 0);
    ASSERT_EQ(d.session_id, 5);
    ASSERT_EQ(d.reason, KV_SESSION_END_EXPIRED);
}

TEST_MAIN()
