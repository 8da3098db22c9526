/* One bound on the bytes queued for clients that read slowly, shared by
 * every front end (HTTP today, the Redis protocol later).
 *
 * "Queued" means a response that is generated but not yet written to its
 * socket: its bytes are held in process memory (a front end's per-connection
 * output buffers and libuv's write queue pointing into them). A front end
 * charges those bytes when a response is generated and releases them once it
 * is written, or when its connection closes.
 *
 * Policy: when `used_bytes` exceeds `max_bytes` after a charge, the front end
 * calls st_outbudget_enforce(), which drops connections, slowest first, until
 * the total is back within the bound. "Slowest" is the connection whose
 * client has gone longest without taking any of its queued bytes, across all
 * front ends: a front end stamps a connection (st_outbudget_stamp) when its
 * queue goes from empty to non-empty and whenever the client takes bytes;
 * the smallest stamp is the longest stall. Each registered front end names
 * its own slowest connection (slowest_cb) and the budget drops the slowest
 * of those (drop_slowest_cb). So a client that reads a large value at a
 * normal pace is not dropped for the size of its response, while one that
 * stopped reading is, however little it holds. Stamps are a counter, not a
 * clock: no ties, no time source. A connection that holds more than its
 * own bound is not dropped for that alone; its front end stops reading from
 * it until its output drains (back-pressure, see http/server.h).
 *
 * Ownership: the caller owns the struct (embedded or static); front ends
 * borrow it between st_outbudget_register() and st_outbudget_unregister().
 * Threading: one loop thread. */
#ifndef ST_UTIL_OUTBUDGET_H
#define ST_UTIL_OUTBUDGET_H

#include <stdint.h>

#define ST_OUTBUDGET_USERS_MAX 4

struct st_outbudget_user {
    /* The stall stamp of this front end's slowest connection with queued
     * bytes (the smallest), 0 if it has none. */
    uint64_t (*slowest_cb)(void *ctx);
    /* Drops that connection. Must release its bytes (st_outbudget_release)
     * before returning. */
    void (*drop_slowest_cb)(void *ctx);
    void *ctx;
};

struct st_outbudget {
    uint64_t max_bytes;  /* 0 = unbounded (nothing is ever dropped) */
    uint64_t used_bytes; /* queued now, all front ends */
    uint64_t peak_bytes;
    uint64_t dropped;       /* connections dropped as slow readers */
    uint64_t dropped_bytes; /* their queued bytes at the time */
    uint64_t stamp;         /* the last stall stamp given */
    struct st_outbudget_user users[ST_OUTBUDGET_USERS_MAX];
    uint32_t n_users;
    int enforcing; /* st_outbudget_enforce() is running (no reentry) */
};

void st_outbudget_init(struct st_outbudget *b, uint64_t max_bytes);

/* Adds a front end. Returns 0 or ST_ENOMEM (ST_OUTBUDGET_USERS_MAX reached). */
int st_outbudget_register(struct st_outbudget *b, const struct st_outbudget_user *u);
/* Removes the front end registered with ctx (its bytes must be released). */
void st_outbudget_unregister(struct st_outbudget *b, void *ctx);

static inline void st_outbudget_charge(struct st_outbudget *b, uint64_t bytes)
{
    b->used_bytes += bytes;
    if (b->used_bytes > b->peak_bytes) b->peak_bytes = b->used_bytes;
}

/* A new stall stamp, larger than every earlier one (never 0). */
static inline uint64_t st_outbudget_stamp(struct st_outbudget *b)
{
    return ++b->stamp;
}

/* bytes <= used_bytes (asserted). */
void st_outbudget_release(struct st_outbudget *b, uint64_t bytes);

static inline int st_outbudget_over(const struct st_outbudget *b)
{
    return b->max_bytes > 0 && b->used_bytes > b->max_bytes;
}

/* While over the bound, drops the slowest connection of all front ends.
 * Stops when back within the bound or when no front end has anything left
 * to drop. Returns the number of connections dropped. A call made while one
 * runs (from a drop callback) returns 0 at once. */
uint32_t st_outbudget_enforce(struct st_outbudget *b);

#endif
