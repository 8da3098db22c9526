/* What happens when stcache finds one of its invariants broken.
 *
 * The library checks its invariants with assertions that stay on in release
 * builds (a broken invariant means memory or state the library can no longer
 * trust; carrying on risks acknowledging writes that are lost). By default a
 * failed assertion prints one line to stderr
 *
 *     stcache: assertion failed: EXPR (FILE:LINE in FUNCTION)
 *
 * and calls abort(). An embedding program may route that line into its own
 * log, flush its own state, or end the process its own way by installing a
 * hook. */
#ifndef STCACHE_ASSERT_H
#define STCACHE_ASSERT_H

#include "stcache/api.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Called with the source file and line of the failed assertion, its
 * expression text (never NULL), and the arg given to st_set_assert_hook().
 * It runs on the thread that failed the assertion (the loop thread, or a
 * storage writer thread), with the library in an inconsistent state: it must
 * not call back into stcache. It should not return: end the process (exit,
 * _exit, abort) or leave with longjmp to code that will not use stcache
 * again. If it returns, stcache calls abort(). */
typedef void (*st_assert_hook_fn)(const char *file, int line, const char *expr, void *arg);

/* Installs hook (NULL restores the default: print and abort) with its arg.
 * The hook is process-wide. Call it before the library is used, or while no
 * other thread runs stcache code: the hook and arg are plain variables, not
 * synchronised. Never fails. */
ST_API void st_set_assert_hook(st_assert_hook_fn hook, void *arg);

#ifdef __cplusplus
}
#endif

#endif
