/* ST_API marks the functions of stcache's public API.
 *
 * The installed libraries (libstcache-raft.so and .a) are compiled with
 * -fvisibility=hidden: only declarations carrying ST_API are exported from
 * the shared library. Everything else in the sources is internal and may
 * change without notice. tests/lib/check_symbols.py keeps the two in step. */
#ifndef STCACHE_API_H
#define STCACHE_API_H

#if defined(__GNUC__) || defined(__clang__)
#define ST_API __attribute__((visibility("default")))
#else
#define ST_API
#endif

/* The library's version (also in stcache-raft.pc and the soname). */
#define STCACHE_RAFT_VERSION_MAJOR 0
#define STCACHE_RAFT_VERSION_MINOR 1
#define STCACHE_RAFT_VERSION_PATCH 0

#endif
