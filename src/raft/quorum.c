/* Quorum arithmetic (see quorum.h). */
#include "raft/quorum.h"

#include <stdlib.h>

size_t quorum_majority(size_t voters)
{
    return voters / 2 + 1;
}

static int cmp_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

uint64_t quorum_index(uint64_t *acked, size_t n, size_t majority)
{
    if (n == 0 || majority == 0 || majority > n) return 0;
    qsort(acked, n, sizeof(acked[0]), cmp_desc);
    return acked[majority - 1];
}

enum quorum_vote quorum_vote_result(size_t voters, size_t granted, size_t rejected)
{
    size_t q = quorum_majority(voters);
    if (granted >= q) return QUORUM_VOTE_WON;
    if (voters - rejected < q) return QUORUM_VOTE_LOST;
    return QUORUM_VOTE_PENDING;
}
