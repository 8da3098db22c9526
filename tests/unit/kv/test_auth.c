/* kv auth table (issue 16, item 2): users with roles and key prefixes,
 * changed only by applied entries (with conditions), carried by a version 3
 * snapshot section after the keys, in the digest, never among the keys;
 * the permission checks of kv_auth.h. */
#include "test.h"

#include "kv/kv_auth.h"
#include "kvtest.h"
#include "util/assert.h"

static struct kv *new_kv(void)
{
    struct kv *kv = NULL;
    if (kv_create(NULL, &kv) != 0) return NULL;
    return kv;
}

static void user_init(struct kv_auth_user *u, const char *name, uint8_t role, uint8_t fill)
{
    memset(u, 0, sizeof *u);
    u->name_len = (uint8_t)strlen(name);
    memcpy(u->name, name, u->name_len);
    u->role = role;
    u->kdf_iterations = 4096;
    memset(u->salt, fill, sizeof u->salt);
    memset(u->hash, fill ^ 0x5a, sizeof u->hash);
}

static int user_put(struct kv *kv, uint64_t index, const struct kv_auth_user *u, enum kv_cond cond,
                    uint64_t cond_version, struct kv_result *r)
{
    uint8_t rec[KV_AUTH_RECORD_BYTES_MAX];
    size_t len = 0;
    int rc = kv_auth_record_encode(u, rec, sizeof rec, &len);
    if (rc) return rc;
    struct kv_command c = {.type = KV_CMD_AUTH_USER_PUT,
                           .cond = cond,
                           .cond_version = cond_version,
                           .req = {3, index},
                           .timestamp_ms = 100 + index,
                           .value = rec,
                           .value_len = (uint32_t)len};
    return kvt_apply_cmd(kv, index, &c, r);
}

static int user_del(struct kv *kv, uint64_t index, const char *name, struct kv_result *r)
{
    struct kv_command c = {.type = KV_CMD_AUTH_USER_DELETE,
                           .req = {3, index},
                           .timestamp_ms = 100 + index,
                           .value = (const uint8_t *)name,
                           .value_len = (uint32_t)strlen(name)};
    return kvt_apply_cmd(kv, index, &c, r);
}

TEST(users_are_created_replaced_and_deleted_by_applied_entries_with_conditions)
{
    struct kv *kv = new_kv();
    struct kv_result r;
    struct kv_auth_user u;
    user_init(&u, "alice", KV_AUTH_READWRITE, 1);
    ASSERT_EQ(kvt_put(kv, 1, 100, "k", "v", 0, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(user_put(kv, 2, &u, KV_COND_IF_ABSENT, 0, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_OK);
    ASSERT_EQ(r.created, 1);
    uint64_t gen = kv_auth_generation(kv);
    /* add refuses an existing user; a stale version refuses a rewrite */
    ASSERT_EQ(user_put(kv, 3, &u, KV_COND_IF_ABSENT, 0, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_PRECONDITION_FAILED);
    ASSERT_EQ(r.version, 2);
    u.role = KV_AUTH_READONLY;
    ASSERT_EQ(user_put(kv, 4, &u, KV_COND_IF_VERSION, 1, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_PRECONDITION_FAILED);
    ASSERT_EQ(user_put(kv, 5, &u, KV_COND_IF_VERSION, 2, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_OK);
    ASSERT_EQ(r.created, 0);
    ASSERT_NE(kv_auth_generation(kv), gen);
    const struct kv_auth_user *got = kv_auth_find(kv, "alice", 5);
    ASSERT_TRUE(got != NULL);
    ASSERT_EQ(got->role, KV_AUTH_READONLY);
    ASSERT_EQ(got->version, 5);
    ASSERT_TRUE(kv_auth_find(kv, "alic", 4) == NULL);
    /* the table is not among the keys */
    struct kv_stats st;
    kv_stats(kv, &st);
    ASSERT_EQ(st.keys, 1);
    ASSERT_EQ(kv_used_bytes(kv), kv_used_bytes_of(1, 1));
    ASSERT_EQ(user_del(kv, 6, "bob", &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_NOT_FOUND);
    ASSERT_EQ(user_del(kv, 7, "alice", &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_OK);
    ASSERT_EQ(kv_auth_count(kv), 0);
    ASSERT_EQ(kv_applied_index(kv), 7);
    kv_destroy(kv);
}

TEST(malformed_records_are_refused_by_decode_and_apply_alike)
{
    struct kv_auth_user u;
    user_init(&u, "bad name", KV_AUTH_ADMIN, 1);
    uint8_t rec[KV_AUTH_RECORD_BYTES_MAX];
    size_t len;
    ASSERT_EQ(kv_auth_record_encode(&u, rec, sizeof rec, &len), ST_EINVAL);
    user_init(&u, "ok", KV_AUTH_ADMIN, 1);
    ASSERT_EQ(kv_auth_record_encode(&u, rec, sizeof rec, &len), 0);
    struct kv_auth_user out;
    ASSERT_EQ(kv_auth_record_decode(rec, len, &out), 0);
    rec[1] = 9; /* no such role */
    ASSERT_EQ(kv_auth_record_decode(rec, len, &out), ST_EPROTO);
    struct kv *kv = new_kv();
    struct kv_command c = {.type = KV_CMD_AUTH_USER_PUT,
                           .req = {3, 1},
                           .timestamp_ms = 1,
                           .value = rec,
                           .value_len = (uint32_t)len};
    struct kv_result r;
    ASSERT_EQ(kvt_apply_cmd(kv, 1, &c, &r), ST_EPROTO);
    ASSERT_EQ(kv_auth_count(kv), 0);
    ASSERT_EQ(kv_applied_index(kv), 1);
    kv_destroy(kv);
}

/* Found by fuzz_kv_snap: a record whose name length byte said more than
 * KV_AUTH_NAME_BYTES_MAX had its name copied past the name field (UBSan:
 * index 255 out of bounds for type 'char[65]') before the name was judged. */
TEST(a_record_whose_name_is_too_long_is_refused_before_it_is_copied)
{
    struct kv_auth_user u;
    user_init(&u, "ok", KV_AUTH_ADMIN, 1);
    uint8_t rec[KV_AUTH_RECORD_FIXED_BYTES + 255];
    size_t len;
    ASSERT_EQ(kv_auth_record_encode(&u, rec, sizeof rec, &len), 0);
    rec[0] = 255; /* the name's length */
    memset(rec + KV_AUTH_RECORD_FIXED_BYTES, 'a', 255);
    static struct kv_auth_user out;
    memset(&out, 0xEE, sizeof out);
    ASSERT_EQ(kv_auth_record_decode(rec, sizeof rec, &out), ST_EPROTO);
    for (size_t i = 0; i < sizeof out.prefix_bytes; i++)
        ASSERT_EQ(out.prefix_bytes[i], 0xEE); /* nothing written past the name */
    rec[0] = KV_AUTH_NAME_BYTES_MAX + 1;
    ASSERT_EQ(kv_auth_record_decode(rec, KV_AUTH_RECORD_FIXED_BYTES + rec[0], &out), ST_EPROTO);
}

TEST(snapshot_carries_the_table_in_a_version_3_section_and_restores_it)
{
    struct kv *a = new_kv(), *b = new_kv();
    struct kv_result r;
    struct kvt_sink s;
    ASSERT_EQ(kvt_put(a, 1, 100, "k", "v", 0, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(kvt_snap(a, &s), 0);
    ASSERT_EQ(kvt_snap_version(&s), 2); /* no users: older releases can read it */
    free(s.data);
    const char *names[] = {"zed", "alice", "mid-1", "b_2"};
    for (int i = 0; i < 4; i++) {
        struct kv_auth_user u;
        user_init(&u, names[i], (uint8_t)(1 + i % 3), (uint8_t)i);
        ASSERT_EQ(kv_auth_user_add_prefix(&u, (const uint8_t *)"app/", 4), 0);
        ASSERT_EQ(kv_auth_user_add_prefix(&u, (const uint8_t *)"x", 1), 0);
        ASSERT_EQ(user_put(a, 2 + (uint64_t)i, &u, KV_COND_NONE, 0, &r), 0);
    }
    ASSERT_EQ(kvt_put(a, 6, 200, "k2", "v2", 0, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(kvt_snap(a, &s), 0);
    ASSERT_EQ(kvt_snap_version(&s), 3);
    ASSERT_EQ(kvt_restore(b, s.data, s.len, 5), 0);
    ASSERT_EQ(kv_check_invariants(b), 0);
    ASSERT_EQ(kv_digest(b), kv_digest(a));
    ASSERT_EQ(kv_auth_count(b), 4);
    ASSERT_EQ(strcmp(kv_auth_at(b, 0)->name, "alice"), 0); /* name order */
    const struct kv_auth_user *m = kv_auth_find(b, "mid-1", 5);
    ASSERT_TRUE(m != NULL);
    ASSERT_EQ(m->version, 4);
    ASSERT_EQ(m->n_prefixes, 2);
    ASSERT_TRUE(kv_auth_key_allowed(m, false, (const uint8_t *)"app/1", 5));
    /* The digest covers the table: a replica without one user differs. */
    struct kv *c = new_kv();
    ASSERT_EQ(kvt_restore(c, s.data, s.len, s.len), 0);
    ASSERT_EQ(user_del(c, 7, "zed", &r), 0);
    ASSERT_EQ(user_del(a, 7, "alice", &r), 0);
    ASSERT_NE(kv_digest(c), kv_digest(a));
    /* Every bit flip in the section is caught; the old state stays. */
    uint64_t db = kv_digest(b);
    size_t from = s.len > 400 ? s.len - 400 : 0;
    for (size_t bit = from * 8; bit < s.len * 8; bit++) {
        s.data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        ASSERT_NE(kvt_restore(b, s.data, s.len, s.len), 0);
        s.data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    ASSERT_EQ(kv_digest(b), db);
    /* A restore replaces the table (and bumps the generation). */
    uint64_t gen = kv_auth_generation(c);
    ASSERT_EQ(kvt_restore(c, s.data, s.len, 64), 0);
    ASSERT_NE(kv_auth_generation(c), gen);
    ASSERT_TRUE(kv_auth_find(c, "zed", 3) != NULL);
    free(s.data);
    kv_destroy(a);
    kv_destroy(b);
    kv_destroy(c);
}

TEST(a_snapshot_under_writes_carries_the_table_as_of_begin)
{
    struct kv *a = new_kv(), *b = new_kv();
    struct kv_result r;
    struct kv_auth_user u;
    user_init(&u, "early", KV_AUTH_ADMIN, 1);
    ASSERT_EQ(user_put(a, 1, &u, KV_COND_NONE, 0, &r), 0);
    struct kvt_sink s;
    memset(&s, 0, sizeof s);
    struct kv_snapshot_cursor *cur = NULL;
    ASSERT_EQ(kv_snapshot_begin(a, 1, NULL, 0, kvt_sink_cb, &s, &cur), 0);
    user_init(&u, "late", KV_AUTH_ADMIN, 2);
    ASSERT_EQ(user_put(a, 2, &u, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(user_del(a, 3, "early", &r), 0);
    while (kv_snapshot_next(cur, 16) == 1) {
    }
    kv_snapshot_end(cur);
    ASSERT_EQ(kvt_restore(b, s.data, s.len, 7), 0);
    ASSERT_EQ(kv_auth_count(b), 1);
    ASSERT_TRUE(kv_auth_find(b, "early", 5) != NULL);
    free(s.data);
    kv_destroy(a);
    kv_destroy(b);
}

TEST(permissions_follow_role_and_prefixes)
{
    struct kv_auth_user ro, rw, admin;
    user_init(&ro, "ro", KV_AUTH_READONLY, 1);
    user_init(&rw, "rw", KV_AUTH_READWRITE, 1);
    user_init(&admin, "adm", KV_AUTH_ADMIN, 1);
    const uint8_t *k = (const uint8_t *)"other/1";
    ASSERT_TRUE(kv_auth_key_allowed(&ro, false, k, 7));
    ASSERT_TRUE(!kv_auth_key_allowed(&ro, true, k, 7));
    ASSERT_TRUE(kv_auth_key_allowed(&rw, true, k, 7));
    ASSERT_EQ(kv_auth_user_add_prefix(&rw, (const uint8_t *)"app/", 4), 0);
    ASSERT_TRUE(!kv_auth_key_allowed(&rw, true, k, 7));
    ASSERT_TRUE(!kv_auth_key_allowed(&rw, false, k, 7));
    ASSERT_TRUE(kv_auth_key_allowed(&rw, true, (const uint8_t *)"app/x", 5));
    ASSERT_TRUE(!kv_auth_key_allowed(&rw, true, (const uint8_t *)"app", 3));
    ASSERT_TRUE(kv_auth_key_allowed(&admin, true, k, 7));
    /* listings: inside a prefix only */
    const uint8_t *P = (const uint8_t *)"app/";
    ASSERT_TRUE(kv_auth_range_allowed(&rw, P, 4, NULL, 0, NULL, 0));
    ASSERT_TRUE(kv_auth_range_allowed(&rw, (const uint8_t *)"app/sub", 7, NULL, 0, NULL, 0));
    ASSERT_TRUE(!kv_auth_range_allowed(&rw, (const uint8_t *)"ap", 2, NULL, 0, NULL, 0));
    ASSERT_TRUE(!kv_auth_range_allowed(&rw, NULL, 0, NULL, 0, NULL, 0));
    ASSERT_TRUE(kv_auth_range_allowed(&rw, NULL, 0, (const uint8_t *)"app/a", 5,
                                      (const uint8_t *)"app0", 4));
    ASSERT_TRUE(!kv_auth_range_allowed(&rw, NULL, 0, (const uint8_t *)"app/a", 5,
                                       (const uint8_t *)"app1", 4));
    ASSERT_TRUE(!kv_auth_range_allowed(&rw, NULL, 0, (const uint8_t *)"app/a", 5, NULL, 0));
    ASSERT_TRUE(kv_auth_range_allowed(&ro, NULL, 0, NULL, 0, NULL, 0));
    ASSERT_EQ(kv_auth_user_remove_prefix(&rw, P, 4), 0);
    ASSERT_EQ(kv_auth_user_remove_prefix(&rw, P, 4), ST_ENOENT);
    ASSERT_TRUE(kv_auth_key_allowed(&rw, true, k, 7));
}

TEST_MAIN()
