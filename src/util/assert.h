/* Assertions that stay on in release builds (cheap checks), plus
 * ST_DEBUG_ASSERT for whole-state checkers compiled only with ST_DEBUG_CHECKS. */
#ifndef ST_UTIL_ASSERT_H
#define ST_UTIL_ASSERT_H

#include <assert.h>

_Noreturn void st_assert_fail(const char *expr, const char *file, int line, const char *func);

#define ST_ASSERT(expr) ((expr) ? (void)0 : st_assert_fail(#expr, __FILE__, __LINE__, __func__))

#if defined(ST_DEBUG_CHECKS) && ST_DEBUG_CHECKS
#define ST_DEBUG_ASSERT(expr) ST_ASSERT(expr)
#else
#define ST_DEBUG_ASSERT(expr) ((void)0)
#endif

#define ST_UNREACHABLE() st_assert_fail("unreachable", __FILE__, __LINE__, __func__)

#define ST_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define ST_MIN(a, b) ((a) < (b) ? (a) : (b))
#define ST_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
