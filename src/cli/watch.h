/* `stcache watch PREFIX [--from VERSION] [--json]`: prints the changes
 * under PREFIX as they come (GET /watch, docs/CLI.md), and resumes by
 * itself on another endpoint when a connection breaks or goes quiet,
 * from where it was, so nothing is printed twice or missed (a leader
 * failover included). */
#ifndef ST_CLI_WATCH_H
#define ST_CLI_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cli/client.h"

/* Progress markers asked of the server, and the silence after which a
 * connection is given up for another endpoint. */
#define CLI_WATCH_PROGRESS_MS 1000
#define CLI_WATCH_QUIET_MS 5000
#define CLI_WATCH_LINE_BYTES_MAX                                                                   \
    ((size_t)64 * 1024 * 1024) /* one event (a 16 MiB value, base64)                               \
                                */

struct cli_watch_opts {
    const struct cli_endpoint *endpoints;
    size_t endpoints_n;
    const char *prefix;
    uint64_t from;  /* the first version; 0 = what comes next */
    uint64_t count; /* stop after this many events; 0 = never */
    bool json;      /* print the server's event lines */
    int timeout_ms; /* give up after this long without any endpoint serving */
};

/* Runs the watch until count events were printed, the watch is compacted
 * (exit 1: the history no longer holds the next version), or no endpoint
 * served for timeout_ms (exit 3). Returns a cli_exit code. */
int cli_watch_run(const struct cli_watch_opts *o);

#endif
