#include "test.h"

#include "stcache/errors.h"
#include "util/crc32c.h"
#include "util/rng.h"

#include <errno.h>

TEST(crc32c_matches_known_vector)
{
    /* RFC 3720 B.4: 32 bytes of zeros -> 0x8A9136AA; "123456789" -> 0xE3069283 */
    uint8_t zeros[32] = {0};
    ASSERT_EQ(st_crc32c(0, zeros, sizeof zeros), 0x8A9136AAu);
    ASSERT_EQ(st_crc32c(0, "123456789", 9), 0xE3069283u);
}

TEST(crc32c_hardware_and_software_agree_and_chain)
{
    uint8_t buf[1000];
    struct st_rng rng;
    st_rng_init(&rng, 7);
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)st_rng_next(&rng);
    for (size_t n = 0; n < sizeof buf; n += 37) {
        ASSERT_EQ(st_crc32c(0, buf, n), st_crc32c_sw(0, buf, n));
        uint32_t chained = st_crc32c(st_crc32c(0, buf, n / 2), buf + n / 2, n - n / 2);
        ASSERT_EQ(chained, st_crc32c(0, buf, n));
    }
}

TEST(rng_is_deterministic_per_seed)
{
    struct st_rng a, b, c;
    st_rng_init(&a, 42);
    st_rng_init(&b, 42);
    st_rng_init(&c, 43);
    int differ = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t x = st_rng_next(&a);
        ASSERT_EQ(x, st_rng_next(&b));
        differ += x != st_rng_next(&c);
    }
    ASSERT_GE(differ, 99);
    for (int i = 0; i < 1000; i++)
        ASSERT_TRUE(st_rng_below(&a, 7) < 7);
}

TEST(errors_have_text_and_errno_maps)
{
    ASSERT_STREQ(st_strerror(ST_ENOTLEADER), "not the leader");
    ASSERT_STREQ(st_strerror(12345), "unknown error");
    ASSERT_EQ(st_errno_to_code(ENOSPC), ST_ENOSPC);
    ASSERT_EQ(st_errno_to_code(EIO), ST_EIO);
}

TEST_MAIN()
