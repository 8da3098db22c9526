#include "util/trace.h"

#include "stcache/errors.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static enum st_trace_level trace_level = ST_TRACE_INFO;

void st_trace_set_level(enum st_trace_level level)
{
    trace_level = level;
}

int st_trace_parse_level(const char *name, enum st_trace_level *out)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, names[i]) == 0) {
            *out = (enum st_trace_level)i;
            return 0;
        }
    }
    return ST_EINVAL;
}

void st_trace(enum st_trace_level level, const char *module, const char *fmt, ...)
{
    if (level < trace_level) return;
    static const char tags[] = "DIWE";
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char line[1024];
    int n = snprintf(line, sizeof line, "%02d:%02d:%02d.%03ld %c %s: ", tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, tags[level], module);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line)
        // va_start above: clang-analyzer 14 reports a false positive here
        // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized)
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
}
