/* When a node writes a WAL batch on its own event-loop thread ("inline",
 * st_log_writer_write_now) instead of handing it to the writer threads.
 *
 * Inline saves two thread hand-offs per hop, which is most of the software
 * cost of a lone write; but while the loop sits in fdatasync it takes no
 * requests and encodes nothing, so under concurrent load the writer threads
 * (group commit, the next batch encoded during this sync) win. The policy:
 *   - a batch of at most NODE_WAL_INLINE_ENTRIES_MAX entries while no client
 *     waits on this node for anything but this batch: more of either means
 *     requests arrive faster than one sync (concurrent load), and a loop
 *     blocked in a sync would hold them all up;
 *   - or, on a follower, a batch of any size while no client waits on this
 *     node at all: an append. Its loop has nothing to do until the entries
 *     are durable and it can answer (the leader keeps one append in flight),
 *     so the hand-offs were pure cost: at 16 clients, -5 to -17% CPU per
 *     write and +2 to +17% writes/s; at 128, about -6% CPU per write. Not on
 *     a leader: during its sync it has the followers' answers and forwarded
 *     writes to take (all its batches inline cost 25% of throughput);
 *   - only while the recent completion time of batches (a moving average
 *     over about 8) is within max_us: a slow disk keeps the loop free for
 *     heartbeats and reads; one slow sync among quick ones does not count;
 *   - never for a second after a single batch took more than
 *     NODE_WAL_INLINE_STALL_FACTOR x max_us (a stalled disk).
 * Pure bookkeeping (no clock of its own), so tests drive it directly. */
#ifndef ST_NODE_WAL_INLINE_H
#define ST_NODE_WAL_INLINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NODE_WAL_INLINE_ENTRIES_MAX 1
#define NODE_WAL_INLINE_STALL_FACTOR 8
#define NODE_WAL_INLINE_STALL_OFF_US 1000000u
#define NODE_WAL_INLINE_AVG_SHIFT 3 /* moving average weight 1/8 */

struct node_wal_inline {
    uint32_t max_us;       /* 0: never inline */
    uint64_t avg_us;       /* moving average of batch completion times */
    uint64_t off_until_us; /* after a stall: no inline write before this */
};

void node_wal_inline_init(struct node_wal_inline *p, uint32_t max_us);
/* May a batch of n_entries entries be written inline at now_us, with
 * clients_waiting client requests in progress on this node (the batch's own
 * included), by a node that is (not) the leader? (The caller also needs the
 * writer to be idle: st_log_writer_write_now checks that.) */
bool node_wal_inline_ok(const struct node_wal_inline *p, uint64_t now_us, size_t n_entries,
                        size_t clients_waiting, bool leader);
/* A batch (inline or queued) took took_us from hand-off to durable,
 * completing at done_us. */
void node_wal_inline_observe(struct node_wal_inline *p, uint64_t took_us, uint64_t done_us);

#endif
