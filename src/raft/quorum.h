/* Quorum arithmetic of the Raft core, in one place: the size of a majority,
 * the largest value a majority acknowledged (commit index, read rounds) and
 * the outcome of a vote. Pure functions over counts and arrays: no struct
 * raft, so they are unit tested on their own (tests/unit/raft/test_quorum.c).
 *
 * Configurations are single (no joint consensus, see membership.c: one change
 * at a time, thesis 4.1), so a quorum is a majority of one voter set.
 */
#ifndef ST_RAFT_QUORUM_H
#define ST_RAFT_QUORUM_H

#include <stddef.h>
#include <stdint.h>

/* Votes needed out of `voters`: floor(voters / 2) + 1 (Raft §5.2). Any two
 * majorities of the same set intersect, which is what every safety argument
 * of the core rests on. */
size_t quorum_majority(size_t voters);

/* The largest value acknowledged by `majority` of the n values in acked[]
 * (one per voter): the majority-th largest. Used for the commit index
 * (Figure 3.1: "a majority of matchIndex[i] >= N") and for the newest
 * heartbeat round a quorum answered (thesis 6.4). Sorts acked[] in place,
 * descending. Returns 0 when fewer than `majority` values are given (no
 * majority acknowledged anything). Callable with n == 0. */
uint64_t quorum_index(uint64_t *acked, size_t n, size_t majority);

enum quorum_vote {
    QUORUM_VOTE_LOST = -1,   /* too many rejections: a majority can no longer grant */
    QUORUM_VOTE_PENDING = 0, /* neither yet */
    QUORUM_VOTE_WON = 1,     /* a majority granted */
};

/* Outcome of an election among `voters` given the granted and rejected
 * answers counted so far (each voter counted at most once, so granted +
 * rejected <= voters). */
enum quorum_vote quorum_vote_result(size_t voters, size_t granted, size_t rejected);

#endif
