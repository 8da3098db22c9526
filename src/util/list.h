/* Intrusive circular doubly linked list: the one list of the code base.
 *
 * A list is a `struct st_list` head; an element embeds a `struct st_list`
 * field and is recovered with ST_CONTAINER_OF. The head of an empty list
 * points at itself, and so does a detached element (st_list_del leaves the
 * element self-linked, so deleting it again is harmless and
 * st_list_linked() tells whether it is on a list). No allocation, O(1)
 * insert and delete; the caller owns every element and the head. */
#ifndef ST_UTIL_LIST_H
#define ST_UTIL_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct st_list {
    struct st_list *prev, *next;
};

#define ST_CONTAINER_OF(ptr, type, field) ((type *)(void *)((char *)(ptr)-offsetof(type, field)))

/* for (e in head) with e a `struct st_list *`; e must not be deleted in the
 * body (use ST_LIST_FOREACH_SAFE for that). */
#define ST_LIST_FOREACH(e, head) for ((e) = (head)->next; (e) != (head); (e) = (e)->next)
#define ST_LIST_FOREACH_SAFE(e, tmp, head)                                                         \
    for ((e) = (head)->next, (tmp) = (e)->next; (e) != (head); (e) = (tmp), (tmp) = (e)->next)

static inline void st_list_init(struct st_list *l)
{
    l->prev = l->next = l;
}

static inline bool st_list_empty(const struct st_list *l)
{
    return l->next == l;
}

/* true when e is on some list (not self-linked) */
static inline bool st_list_linked(const struct st_list *e)
{
    return e->next != e;
}

/* insert e at the tail of head (before head) */
static inline void st_list_push_back(struct st_list *head, struct st_list *e)
{
    e->prev = head->prev;
    e->next = head;
    head->prev->next = e;
    head->prev = e;
}

/* insert e at the front of head (after head) */
static inline void st_list_push_front(struct st_list *head, struct st_list *e)
{
    e->next = head->next;
    e->prev = head;
    head->next->prev = e;
    head->next = e;
}

/* unlink e and leave it self-linked */
static inline void st_list_del(struct st_list *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
    e->prev = e->next = e;
}

/* move every element of from to the tail of to; from becomes empty */
static inline void st_list_splice_back(struct st_list *to, struct st_list *from)
{
    if (st_list_empty(from)) return;
    from->next->prev = to->prev;
    to->prev->next = from->next;
    from->prev->next = to;
    to->prev = from->prev;
    st_list_init(from);
}

#endif
