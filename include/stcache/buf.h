/* raft_buf: immutable reference-counted bytes, the payload owner of every
 * log entry (struct raft_entry) and of the storage and transport layers that
 * carry entries without copying them.
 *
 * Threads: the reference count is not atomic. Every raft_buf reachable from
 * one struct raft is referenced and released on the thread that drives that
 * core; storage and transport take or drop references only on the caller's
 * thread (stcache/storage.h, stcache/transport.h say where). */
#ifndef STCACHE_BUF_H
#define STCACHE_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "stcache/api.h"

#ifdef __cplusplus
extern "C" {
#endif

/* refs: live references (>= 1 while the buffer is reachable); cap: usable
 * bytes in data. The bytes are written once, by whoever created the buffer,
 * before it is handed to anyone else; immutable afterwards. */
struct raft_buf {
    uint32_t refs;
    uint32_t cap;
    uint8_t data[];
};

/* Allocates a buffer of `cap` bytes (uninitialised) with one reference owned
 * by the caller. Returns NULL when memory is short or cap > UINT32_MAX.
 * Callable at any time, from any thread (the new buffer belongs to it). */
ST_API struct raft_buf *raft_buf_create(size_t cap);
/* Takes one more reference. b must be live (refs > 0: asserted). */
ST_API void raft_buf_ref(struct raft_buf *b);
/* Drops one reference; frees the buffer when it was the last. NULL is a
 * no-op. b must be live (asserted). */
ST_API void raft_buf_unref(struct raft_buf *b);

#ifdef __cplusplus
}
#endif

#endif
