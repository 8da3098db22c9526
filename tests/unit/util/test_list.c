/* util/list.h: order of push_back/push_front, splice, self-linked delete,
 * and deletion while iterating. */
#include "test.h"

#include "util/list.h"

struct item {
    int v;
    struct st_list link;
};

static int digits(struct st_list *head)
{
    int s = 0;
    struct st_list *e;
    ST_LIST_FOREACH(e, head)
    {
        s = s * 10 + ST_CONTAINER_OF(e, struct item, link)->v;
    }
    return s;
}

TEST(list_keeps_insertion_order_and_splices)
{
    struct st_list h, h2;
    st_list_init(&h);
    st_list_init(&h2);
    struct item a = {.v = 1}, b = {.v = 2}, c = {.v = 3}, d = {.v = 4};
    st_list_push_back(&h, &b.link);
    st_list_push_front(&h, &a.link);
    st_list_push_back(&h2, &c.link);
    st_list_push_back(&h2, &d.link);
    st_list_splice_back(&h, &h2);
    ASSERT_TRUE(st_list_empty(&h2));
    ASSERT_EQ(digits(&h), 1234);
    st_list_splice_back(&h, &h2); /* empty splice changes nothing */
    ASSERT_EQ(digits(&h), 1234);
}

TEST(list_delete_leaves_element_self_linked)
{
    struct st_list h;
    st_list_init(&h);
    struct item a = {.v = 1}, b = {.v = 2}, c = {.v = 3};
    st_list_push_back(&h, &a.link);
    st_list_push_back(&h, &b.link);
    st_list_push_back(&h, &c.link);
    st_list_del(&b.link);
    ASSERT_FALSE(st_list_linked(&b.link));
    st_list_del(&b.link); /* a second delete is harmless */
    ASSERT_EQ(digits(&h), 13);
    struct st_list *e, *t;
    int n = 0;
    ST_LIST_FOREACH_SAFE(e, t, &h)
    {
        st_list_del(e);
        n++;
    }
    ASSERT_EQ(n, 2);
    ASSERT_TRUE(st_list_empty(&h));
    ASSERT_FALSE(st_list_linked(&a.link));
}

TEST_MAIN()
