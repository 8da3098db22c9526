#include "util/assert.h"

#include <stdio.h>
#include <stdlib.h>

#include "stcache/assert.h"

static st_assert_hook_fn assert_hook;
static void *assert_hook_arg;

void st_set_assert_hook(st_assert_hook_fn hook, void *arg)
{
    assert_hook = hook;
    assert_hook_arg = arg;
}

_Noreturn void st_assert_fail(const char *expr, const char *file, int line, const char *func)
{
    st_assert_hook_fn hook = assert_hook;
    if (hook) {
        hook(file, line, expr, assert_hook_arg);
        /* A hook must not return (stcache/assert.h): stop as by default. */
    }
    fprintf(stderr, "stcache: assertion failed: %s (%s:%d in %s)\n", expr, file, line, func);
    fflush(stderr);
    abort();
}
