/* The watch history (node/watch_history.h): events come back in order with
 * their bytes; the entry and byte bounds drop the oldest events and raise
 * first_version past them; an event too large for the ring empties it;
 * seeking a version finds the first event of that version, so a watch that
 * resumes from its last version + 1 repeats nothing and misses nothing. */
#include "test.h"

#include <stdio.h>

#include "node/watch_history.h"
#include "stcache/errors.h"

static void put(struct watch_history *h, uint64_t version, const char *key, const char *value)
{
    struct kv_event ev = {.type = KV_EVENT_PUT,
                          .key = (const uint8_t *)key,
                          .key_len = strlen(key),
                          .value = (const uint8_t *)value,
                          .value_len = strlen(value),
                          .version = version};
    watch_history_append(h, &ev);
}

static int has(const struct watch_history *h, uint64_t seq, uint64_t version, const char *key,
               const char *value)
{
    struct kv_event ev;
    if (watch_history_get(h, seq, &ev) != 0) return 0;
    return ev.version == version && ev.key_len == strlen(key) &&
           memcmp(ev.key, key, ev.key_len) == 0 && ev.value_len == strlen(value) &&
           memcmp(ev.value, value, ev.value_len) == 0;
}

TEST(events_come_back_in_order_with_their_bytes)
{
    struct watch_history h;
    ASSERT_EQ(watch_history_init(&h, 4096, 16, 1), 0);
    put(&h, 1, "a", "one");
    put(&h, 2, "b", "two");
    struct kv_event del = {
        .type = KV_EVENT_DELETE, .key = (const uint8_t *)"a", .key_len = 1, .version = 3};
    watch_history_append(&h, &del);
    ASSERT_TRUE(has(&h, 0, 1, "a", "one"));
    ASSERT_TRUE(has(&h, 1, 2, "b", "two"));
    struct kv_event ev;
    ASSERT_EQ(watch_history_get(&h, 2, &ev), 0);
    ASSERT_EQ(ev.type, KV_EVENT_DELETE);
    ASSERT_TRUE(ev.value == NULL);
    ASSERT_EQ(watch_history_get(&h, 3, &ev), ST_ENOENT);
    ASSERT_EQ(h.first_version, 1u);
    watch_history_free(&h);
}

TEST(the_entry_bound_drops_the_oldest_and_raises_first_version)
{
    struct watch_history h;
    ASSERT_EQ(watch_history_init(&h, 1 << 20, 16, 1), 0);
    for (uint64_t v = 1; v <= 40; v++)
        put(&h, v, "k", "v");
    ASSERT_EQ(h.head_seq - h.tail_seq, 16u);
    ASSERT_EQ(h.first_version, 25u); /* 25..40 held */
    struct kv_event ev;
    ASSERT_EQ(watch_history_get(&h, 0, &ev), ST_ECOMPACTED);
    ASSERT_EQ(watch_history_get(&h, h.tail_seq, &ev), 0);
    ASSERT_EQ(ev.version, 25u);
    watch_history_free(&h);
}

TEST(the_byte_bound_wraps_the_ring_and_keeps_every_held_event_intact)
{
    struct watch_history h;
    ASSERT_EQ(watch_history_init(&h, 1000, 100000, 1), 0);
    char key[32], value[128];
    for (uint64_t v = 1; v <= 5000; v++) {
        snprintf(key, sizeof key, "key-%llu", (unsigned long long)v);
        memset(value, 'a' + (int)(v % 26), v % 100);
        value[v % 100] = '\0';
        put(&h, v, key, value);
        uint64_t held = 0;
        for (uint64_t s = h.tail_seq; s < h.head_seq; s++, held++) {
            struct kv_event ev;
            ASSERT_EQ(watch_history_get(&h, s, &ev), 0);
            snprintf(key, sizeof key, "key-%llu", (unsigned long long)ev.version);
            ASSERT_EQ(ev.key_len, strlen(key));
            ASSERT_MEMEQ(ev.key, key, ev.key_len);
            ASSERT_EQ(ev.value_len, ev.version % 100);
            for (size_t i = 0; i < ev.value_len; i++)
                ASSERT_EQ(ev.value[i], (uint8_t)('a' + (int)(ev.version % 26)));
        }
        ASSERT_GE(held, 1u);
        /* every version from first_version on is held */
        ASSERT_EQ(watch_history_version(&h, h.tail_seq), h.first_version);
    }
    ASSERT_GE(h.dropped, 4000u);
    watch_history_free(&h);
}

TEST(an_event_larger_than_the_ring_empties_it)
{
    struct watch_history h;
    ASSERT_EQ(watch_history_init(&h, 64, 16, 1), 0);
    put(&h, 1, "a", "small");
    char big[100];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    put(&h, 2, "b", big);
    ASSERT_EQ(h.head_seq, h.tail_seq);
    ASSERT_EQ(h.first_version, 3u);
    put(&h, 3, "c", "ok");
    ASSERT_TRUE(has(&h, h.tail_seq, 3, "c", "ok"));
    watch_history_free(&h);
}

TEST(seeking_finds_the_first_event_of_a_version_so_resuming_repeats_nothing)
{
    struct watch_history h;
    ASSERT_EQ(watch_history_init(&h, 4096, 64, 1), 0);
    /* versions 2 and 5 made several changes (a transaction) */
    put(&h, 2, "a", "1");
    put(&h, 2, "b", "1");
    put(&h, 2, "c", "1");
    put(&h, 3, "a", "2");
    put(&h, 5, "b", "2");
    put(&h, 5, "c", "2");
    ASSERT_EQ(watch_history_seek(&h, 1), 0u);
    ASSERT_EQ(watch_history_seek(&h, 2), 0u);
    ASSERT_EQ(watch_history_seek(&h, 3), 3u);
    ASSERT_EQ(watch_history_seek(&h, 4), 4u); /* no event of 4: the next one */
    ASSERT_EQ(watch_history_seek(&h, 5), 4u);
    ASSERT_EQ(watch_history_seek(&h, 6), 6u); /* head: what comes next */
    /* a reader that saw up to version 3 resumes at 4 and gets exactly 5's */
    uint64_t s = watch_history_seek(&h, 3 + 1);
    ASSERT_TRUE(has(&h, s, 5, "b", "2"));
    ASSERT_TRUE(has(&h, s + 1, 5, "c", "2"));
    ASSERT_EQ(s + 2, h.head_seq);
    watch_history_free(&h);
}

TEST(a_reset_drops_everything_and_starts_at_the_snapshot)
{
    struct watch_history h;
    ASSERT_EQ(watch_history_init(&h, 4096, 64, 1), 0);
    put(&h, 1, "a", "1");
    put(&h, 2, "a", "2");
    watch_history_reset(&h, 101);
    ASSERT_EQ(h.first_version, 101u);
    ASSERT_EQ(h.head_seq, h.tail_seq);
    ASSERT_EQ(watch_history_seek(&h, 101), h.head_seq);
    put(&h, 101, "a", "3");
    ASSERT_TRUE(has(&h, watch_history_seek(&h, 101), 101, "a", "3"));
    watch_history_free(&h);
}

TEST_MAIN()
