/* Small checksummed files (storage.h, "small files"): round trip, atomic
 * replacement under power loss, damage detected. */
#include "test.h"
#include "unit/storage/helpers.h"
#include "util/trace.h"

__attribute__((constructor)) static void quiet(void)
{
    st_trace_set_level(ST_TRACE_ERROR + 1);
}

TEST(small_file_round_trip_and_absent_is_enoent)
{
    struct st_fs_sim *sim;
    ASSERT_EQ(st_fs_sim_create(&sim), 0);
    const struct st_fs *fs = st_fs_sim_fs(sim);
    char buf[64];
    size_t len = 0;
    ASSERT_EQ(st_small_file_read(fs, "/d", "f", buf, sizeof buf, &len, NULL), ST_ENOENT);
    ASSERT_EQ(st_identity_ensure(fs, "/d", 1, 7, NULL), 0);
    ASSERT_EQ(st_small_file_write(fs, "/d", "f", "hello", 5), 0);
    ASSERT_EQ(st_small_file_read(fs, "/d", "f", buf, sizeof buf, &len, NULL), 0);
    ASSERT_EQ(len, 5);
    ASSERT_MEMEQ(buf, "hello", 5);
    ASSERT_EQ(st_small_file_read(fs, "/d", "f", buf, 4, &len, NULL), ST_ETOOBIG);
    static char big[ST_SMALL_FILE_BYTES_MAX + 1];
    ASSERT_EQ(st_small_file_write(fs, "/d", "f", big, sizeof big), ST_ETOOBIG);
    st_fs_sim_destroy(sim);
}

TEST(small_file_replaced_atomically_across_power_loss)
{
    struct st_fs_sim *sim;
    ASSERT_EQ(st_fs_sim_create(&sim), 0);
    const struct st_fs *fs = st_fs_sim_fs(sim);
    ASSERT_EQ(st_identity_ensure(fs, "/d", 1, 7, NULL), 0);
    ASSERT_EQ(st_small_file_write(fs, "/d", "f", "old", 3), 0);
    uint64_t base = st_fs_sim_op_count(sim);
    /* A crash at each operation of the replacement leaves old or new. */
    for (uint64_t k = 1; k <= 8; k++) {
        st_fs_sim_crash_at(sim, base + k);
        (void)st_small_file_write(fs, "/d", "f", "newer", 5);
        bool crashed = st_fs_sim_crashed(sim);
        st_fs_sim_crash_at(sim, 0);
        if (crashed) st_fs_sim_crash(sim, ST_FS_SIM_LOSE_UNSYNCED, 0);
        char buf[16];
        size_t len = 0;
        ASSERT_EQ(st_small_file_read(fs, "/d", "f", buf, sizeof buf, &len, NULL), 0);
        ASSERT_TRUE((len == 3 && memcmp(buf, "old", 3) == 0) ||
                    (len == 5 && memcmp(buf, "newer", 5) == 0));
        ASSERT_EQ(st_small_file_write(fs, "/d", "f", "old", 3), 0);
        base = st_fs_sim_op_count(sim);
    }
    st_fs_sim_destroy(sim);
}

TEST(small_file_damage_is_refused_with_a_message)
{
    struct st_fs_sim *sim;
    ASSERT_EQ(st_fs_sim_create(&sim), 0);
    const struct st_fs *fs = st_fs_sim_fs(sim);
    ASSERT_EQ(st_identity_ensure(fs, "/d", 1, 7, NULL), 0);
    ASSERT_EQ(st_small_file_write(fs, "/d", "f", "1 127.0.0.1:7001 -\n", 19), 0);
    ASSERT_EQ(st_fs_sim_flip_bit(sim, "/d/f", 3, 1), 0);
    char msg[300] = "", buf[64];
    struct st_errbuf err = {msg, sizeof msg};
    size_t len = 0;
    ASSERT_EQ(st_small_file_read(fs, "/d", "f", buf, sizeof buf, &len, &err), ST_ECORRUPT);
    ASSERT_TRUE(strstr(msg, "/d/f") != NULL);
    st_fs_sim_destroy(sim);
}

TEST_MAIN()
