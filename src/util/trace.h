/* Diagnostics ("trace"; "log" means the replicated log). Level-filtered
 * lines on stderr with a timestamp and module tag. Not for the raft core,
 * which reports through its outputs and counters only. */
#ifndef ST_UTIL_TRACE_H
#define ST_UTIL_TRACE_H

/* ST_TRACE_OFF is for st_trace_set_level only (fuzzers): nothing is printed. */
enum st_trace_level {
    ST_TRACE_DEBUG = 0,
    ST_TRACE_INFO,
    ST_TRACE_WARN,
    ST_TRACE_ERROR,
    ST_TRACE_OFF
};

void st_trace_set_level(enum st_trace_level level);
/* Parses "debug|info|warn|error"; returns 0 or ST_EINVAL. */
int st_trace_parse_level(const char *name, enum st_trace_level *out);
void st_trace(enum st_trace_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define ST_TRACE_DEBUG(mod, ...) st_trace(ST_TRACE_DEBUG, mod, __VA_ARGS__)
#define ST_TRACE_INFO(mod, ...) st_trace(ST_TRACE_INFO, mod, __VA_ARGS__)
#define ST_TRACE_WARN(mod, ...) st_trace(ST_TRACE_WARN, mod, __VA_ARGS__)
#define ST_TRACE_ERROR(mod, ...) st_trace(ST_TRACE_ERROR, mod, __VA_ARGS__)

#endif
