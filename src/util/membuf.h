/* A growable byte buffer: the output of the JSON writer (util/json.h) and of
 * other response builders. The caller owns the struct and, through it, the
 * heap block; st_membuf_reset() keeps the block so that a buffer reused per
 * request allocates only while it grows (no per-response allocation once
 * warm). Not thread-safe. */
#ifndef ST_UTIL_MEMBUF_H
#define ST_UTIL_MEMBUF_H

#include <stddef.h>

struct st_membuf {
    char *data; /* NUL-terminated after every successful append (cap > len) */
    size_t len;
    size_t cap;
    int oom; /* set once an append failed; later appends are no-ops */
};

void st_membuf_init(struct st_membuf *b);
/* Releases the block; the buffer is empty and usable again. */
void st_membuf_free(struct st_membuf *b);
/* len = 0, oom = 0; keeps the block. */
void st_membuf_reset(struct st_membuf *b);
/* Appends len bytes; on allocation failure sets oom (and drops this and every
 * later append until reset). */
void st_membuf_append(struct st_membuf *b, const void *data, size_t len);

#endif
