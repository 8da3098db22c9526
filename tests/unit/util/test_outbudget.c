/* The shared output budget: charge/release accounting and the drop policy
 * (slowest connection first, across front ends, until within the bound). */
#include "test.h"

#include "stcache/errors.h"
#include "util/outbudget.h"

/* A fake front end: conns[i] queued bytes, dropping zeroes the largest. */
struct fake_fe {
    struct st_outbudget *b;
    uint64_t conns[8];
    int n;
    int drops;
};

static int fake_worst(const struct fake_fe *fe)
{
    int w = -1;
    for (int i = 0; i < fe->n; i++)
        if (fe->conns[i] > 0 && (w < 0 || fe->conns[i] > fe->conns[w])) w = i;
    return w;
}

static uint64_t fake_slowest_cb(void *ctx)
{
    struct fake_fe *fe = ctx;
    int w = fake_worst(fe);
    return w < 0 ? 0 : fe->conns[w];
}

static void fake_drop_cb(void *ctx)
{
    struct fake_fe *fe = ctx;
    int w = fake_worst(fe);
    st_outbudget_release(fe->b, fe->conns[w]);
    fe->conns[w] = 0;
    fe->drops++;
    /* Reentry (a drop that completes other responses) is refused. */
    ASSERT_EQ(st_outbudget_enforce(fe->b), 0);
}

static void fake_add(struct fake_fe *fe, uint64_t bytes)
{
    fe->conns[fe->n++] = bytes;
    st_outbudget_charge(fe->b, bytes);
}

TEST(outbudget_drops_the_slowest_connections_of_all_front_ends_until_within_the_bound)
{
    struct st_outbudget b;
    st_outbudget_init(&b, 100);
    struct fake_fe x = {.b = &b}, y = {.b = &b};
    struct st_outbudget_user ux = {fake_slowest_cb, fake_drop_cb, &x};
    struct st_outbudget_user uy = {fake_slowest_cb, fake_drop_cb, &y};
    ASSERT_EQ(st_outbudget_register(&b, &ux), 0);
    ASSERT_EQ(st_outbudget_register(&b, &uy), 0);
    fake_add(&x, 30);
    fake_add(&x, 10);
    fake_add(&y, 50);
    ASSERT_FALSE(st_outbudget_over(&b)); /* 90 */
    ASSERT_EQ(st_outbudget_enforce(&b), 0);
    fake_add(&y, 5);
    fake_add(&x, 40); /* 135 > 100 */
    ASSERT_TRUE(st_outbudget_over(&b));
    ASSERT_EQ(b.peak_bytes, 135);
    /* y's 50 goes first (the most queued anywhere); 85 is within bound. */
    ASSERT_EQ(st_outbudget_enforce(&b), 1);
    ASSERT_EQ(y.drops, 1);
    ASSERT_EQ(y.conns[0], 0);
    ASSERT_EQ(x.drops, 0);
    ASSERT_EQ(b.used_bytes, 85);
    ASSERT_EQ(b.dropped, 1);
    ASSERT_EQ(b.dropped_bytes, 50);
    /* Far over: 40 (x), then 30 (x), then 10 (x) ... until <= 100. */
    fake_add(&y, 60); /* 145 */
    fake_add(&y, 20); /* 165 */
    ASSERT_EQ(st_outbudget_enforce(&b), 2); /* 60 (y), then 40 (x): 65 left */
    ASSERT_EQ(b.used_bytes, 65);
    ASSERT_EQ(y.drops, 2);
    ASSERT_EQ(x.drops, 1);
    ASSERT_EQ(b.peak_bytes, 165);
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
    struct fake_fe fe[ST_OUTBUDGET_USERS_MAX + 1];
    for (int i = 0; i <= ST_OUTBUDGET_USERS_MAX; i++) {
        struct st_outbudget_user u = {fake_slowest_cb, fake_drop_cb, &fe[i]};
        ASSERT_EQ(st_outbudget_register(&b, &u), i < ST_OUTBUDGET_USERS_MAX ? 0 : ST_ENOMEM);
    }
}

TEST_MAIN()
