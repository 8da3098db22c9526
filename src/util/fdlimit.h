/* File descriptors of the process: the RLIMIT_NOFILE soft limit, and what a
 * listener does when none is left (EMFILE/ENFILE on accept).
 *
 * A server raises its soft limit to the hard one at start (st_nofile_raise).
 * Running out anyway must cost connections, never the store: the WAL and
 * snapshot store keep their directories open and retry or fail cleanly
 * (stcache/storage.h); a listener refuses what waits in its backlog
 * (st_accept_refuse_pending). */
#ifndef ST_UTIL_FDLIMIT_H
#define ST_UTIL_FDLIMIT_H

#include <stdint.h>

/* Raises the soft RLIMIT_NOFILE to the hard limit. Returns 0 (*before_out:
 * the soft limit before, *soft_out: after) or a negative ST_E* code. */
int st_nofile_raise(uint64_t *before_out, uint64_t *soft_out);
/* The soft RLIMIT_NOFILE now (0 if unknown). */
uint64_t st_nofile_limit(void);
/* Descriptors open now (/proc/self/fd; 0 if unknown, e.g. when none is left
 * to list it). */
uint64_t st_open_files(void);

/* Called by a listener whose accept failed with EMFILE/ENFILE: accepts and
 * closes every connection pending on listen_fd (their clients see the
 * connection closed: refused), using a descriptor held in reserve for the
 * purpose when none is free. Without it the pending connection keeps the
 * listener readable and the loop spins. Loop threads only; returns the
 * number of connections refused. */
uint32_t st_accept_refuse_pending(int listen_fd);

#endif
