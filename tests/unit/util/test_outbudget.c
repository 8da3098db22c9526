/* The shared output budget: charge/release accounting and the drop policy
 * (the connection stalled longest first, across front ends, until within
 * the bound). */
#include "test.h"

#include "stcache/errors.h"
#include "util/outbudget.h"

/* A fake front end: connection i holds bytes[i] queued, stalled since
 * stamp[i]; dropping releases the one with the smallest stamp. */
struct fake_fe {
    struct st_outbudget *b;
    uint64_t bytes[8], stamp[8];
    int n;
    int drops;
};

static int fake_slowest(const struct fake_fe *fe)
{
    int w = -1;
    for (int i = 0; i < fe->n; i++)
        if (fe->bytes[i] > 0 && (w < 0 || fe->stamp[i] < fe->stamp[w])) w = i;
    return w;
}

static uint64_t fake_slowest_cb(void *ctx)
{
    struct fake_fe *fe = ctx;
    int w = fake_slowest(fe);
    return w < 0 ? 0 : fe->stamp[w];
}

static void fake_drop_cb(void *ctx)
{
    struct fake_fe *fe = ctx;
    int w = fake_slowest(fe);
    st_outbudget_release(fe->b, fe->bytes[w]);
    fe->bytes[w] = 0;
    fe->drops++;
    /* Reentry (a drop that completes other responses) is refused. */
    ASSERT_EQ(st_outbudget_enforce(fe->b), 0);
}

/* A connection starts to stall with `bytes` queued; returns its index. */
static int fake_add(struct fake_fe *fe, uint64_t bytes)
{
    fe->bytes[fe->n] = bytes;
    fe->stamp[fe->n] = st_outbudget_stamp(fe->b);
    st_outbudget_charge(fe->b, bytes);
    return fe->n++;
}

TEST(outbudget_drops_the_longest_stalled_connections_of_all_front_ends_until_within_bound)
{
    struct st_outbudget b;
    st_outbudget_init(&b, 100);
    struct fake_fe x = {.b = &b}, y = {.b = &b};
    struct st_outbudget_user ux = {fake_slowest_cb, fake_drop_cb, &x};
    struct st_outbudget_user uy = {fake_slowest_cb, fake_drop_cb, &y};
    ASSERT_EQ(st_outbudget_register(&b, &ux), 0);
    ASSERT_EQ(st_outbudget_register(&b, &uy), 0);
    int x0 = fake_add(&x, 10); /* stalled first, holds little */
    int y0 = fake_add(&y, 30);
    int x1 = fake_add(&x, 50);
    ASSERT_FALSE(st_outbudget_over(&b)); /* 90 */
    ASSERT_EQ(st_outbudget_enforce(&b), 0);
    /* x0's client reads: its stall starts over, after everyone else's. */
    x.stamp[x0] = st_outbudget_stamp(&b);
    fake_add(&y, 20); /* 110 > 100 */
    ASSERT_TRUE(st_outbudget_over(&b));
    ASSERT_EQ(b.peak_bytes, 110);
    /* y0 (stalled longest) goes, not x1 (the most bytes): 80 is within. */
    ASSERT_EQ(st_outbudget_enforce(&b), 1);
    ASSERT_EQ(y.drops, 1);
    ASSERT_EQ(y.bytes[y0], 0);
    ASSERT_EQ(x.drops, 0);
    ASSERT_EQ(b.used_bytes, 80);
    ASSERT_EQ(b.dropped, 1);
    ASSERT_EQ(b.dropped_bytes, 30);
    /* Stalled longest now: x1, then x0 (since its read), then y's 20. */
    fake_add(&y, 60);                       /* 140 */
    ASSERT_EQ(st_outbudget_enforce(&b), 1); /* x1: 90 left */
    ASSERT_EQ(x.bytes[x1], 0);
    fake_add(&x, 40);                       /* 130 */
    ASSERT_EQ(st_outbudget_enforce(&b), 2); /* x0's 10, then y's 20: 100 left */
    ASSERT_EQ(b.used_bytes, 100);
    ASSERT_EQ(x.bytes[x0], 0);
    ASSERT_EQ(b.peak_bytes, 140);
    ASSERT_EQ(b.dropped, 4);
    st_outbudget_unregister(&b, &x);
    ASSERT_EQ(b.n_users, 1);
    ASSERT_TRUE(b.users[0].ctx == &y);
}

TEST(outbudget_without_a_bound_or_anything_to_drop_stops)
{
    struct st_outbudget b;
    st_outbudget_init(&b, 0); /* unbounded */
    st_outbudget_charge(&b, 1000);
    ASSERT_FALSE(st_outbudget_over(&b));
    ASSERT_EQ(st_outbudget_enforce(&b), 0);
    b.max_bytes = 10;
    ASSERT_TRUE(st_outbudget_over(&b));
    ASSERT_EQ(st_outbudget_enforce(&b), 0); /* no front end: nothing to drop */
    st_outbudget_release(&b, 1000);
    ASSERT_EQ(b.used_bytes, 0);
    ASSERT_NE(st_outbudget_stamp(&b), 0);
    struct fake_fe fe[ST_OUTBUDGET_USERS_MAX + 1];
    for (int i = 0; i <= ST_OUTBUDGET_USERS_MAX; i++) {
        struct st_outbudget_user u = {fake_slowest_cb, fake_drop_cb, &fe[i]};
        ASSERT_EQ(st_outbudget_register(&b, &u), i < ST_OUTBUDGET_USERS_MAX ? 0 : ST_ENOMEM);
    }
}

TEST_MAIN()
