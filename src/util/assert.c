#include "util/assert.h"

#include <stdio.h>
#include <stdlib.h>

_Noreturn void st_assert_fail(const char *expr, const char *file, int line, const char *func)
{
    fprintf(stderr, "stcache: assertion failed: %s (%s:%d in %s)\n", expr, file, line, func);
    fflush(stderr);
    abort();
}
