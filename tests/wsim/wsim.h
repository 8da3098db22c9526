/* The whole-server simulator (docs/TESTING.md, "Whole-server simulation"):
 * real nodes (node/, kv/, storage/ on the simulated file system, the real
 * ready pipeline and request handling) in one process, one thread of
 * control, under a simulated clock and network and a seeded scheduler.
 *
 * Seams, none of which changes node/:
 *   - the network: sim_net.c implements the transport API and is linked in
 *     place of src/transport;
 *   - the clock: wsim.c defines clock_gettime() and uv_hrtime(), which take
 *     precedence over libc's and libuv's in this executable, so libuv's
 *     timers, the node's log clock and every trace read simulated time;
 *   - the threadpool: wsim.c defines uv_queue_work(), which runs the work at
 *     once and defers its completion to the scheduler, in order;
 *   - the disk: each node's config points at its own st_fs_sim;
 *   - a joiner's HTTP call (POST /cluster/members, node_join.c): wsim.c
 *     defines http_client_request_tls() and http_client_abort(), which
 *     hand the request to the member's node_member_add_learner(), the
 *     function the API's route calls. */
#ifndef ST_WSIM_H
#define ST_WSIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stcache/raft.h"
#include "stcache/transport.h"

#define WSIM_NODES_MAX 5

/* Simulated time, in ms since the start of the run. */
uint64_t wsim_now_ms(void);
/* Whether a message sent now from a to b is delivered, and after how many
 * ms (seeded; decided at send time). */
bool wsim_link_send(raft_id a, raft_id b, uint64_t *delay_ms);
/* Whether a ReadIndex request or answer sent now is lost on top of the
 * link's faults (--lose-reads; seeded, decided at send time). */
bool wsim_lose_read_msg(void);
/* Whether the link a -> b is up now (partitions). */
bool wsim_link_up(raft_id a, raft_id b);
/* Makes id the node whose code runs now (its wall clock is read: clock
 * faults); returns the previous one, to restore after the call. */
raft_id wsim_current_set(raft_id id);
/* Reads len bytes at off of node id's file path (its simulated disk). */
int wsim_read_file(raft_id id, const char *path, uint64_t off, void *buf, size_t len, size_t *got);

/* sim_net.c: delivers what is due and advances snapshot streams. */
void sim_net_step(void);
bool sim_net_busy(void);
void sim_net_close(void);
/* Messages travel on connections that end when either side removes the
 * other or stops (the real transport's), instead of surviving a restart;
 * off by default, so that the seeds of the default schedule keep their
 * runs. */
void sim_net_connections(bool on);

#endif
