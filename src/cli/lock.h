/* `stcache lock` and `stcache elect`: a lock with a fencing token and
 * leader election, built on sessions (docs/RECIPES.md, docs/HTTP-API.md
 * "Sessions").
 *
 *   stcache lock NAME [--ttl MS] -- COMMAND...
 *     creates a session, acquires key locks/NAME with PUT ?session=ID and
 *     If-None-Match: * (waiting with a bounded backoff poll while another
 *     holder has it), runs COMMAND with STCACHE_LOCK_TOKEN (the key's
 *     version: a raft index, strictly increasing across holders),
 *     STCACHE_LOCK_KEY and STCACHE_LOCK_SESSION in its environment, renews
 *     the session every TTL/3 while COMMAND runs, ends the session (which
 *     releases the key) when COMMAND exits and exits with COMMAND's status.
 *     If the session is lost (renew answers 404, or no renew succeeded for
 *     a whole TTL) it sends SIGTERM to COMMAND, says so and exits 5.
 *   stcache elect NAME VALUE [--ttl MS]
 *     campaigns for key elect/NAME with the value VALUE, prints every
 *     leadership change it sees ("leader VALUE VERSION", "no leader") and
 *     resigns (ends its session) on SIGINT or SIGTERM.
 *   stcache elect NAME --observe
 *     prints the leadership changes only.
 *
 * The commands talk to the cluster through cli_lock_io (cli/client.c
 * provides it: endpoints, failover, credentials). */
#ifndef ST_CLI_LOCK_H
#define ST_CLI_LOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CLI_LOCK_TTL_MS_DEFAULT 10000
#define CLI_LOCK_EXIT_LOST 5 /* the lock was lost while COMMAND ran */

struct cli_lock_answer {
    int status; /* HTTP status */
    const char *body;
    size_t body_len;
    uint64_t etag_version; /* the ETag as a number, 0 without one */
};

struct cli_lock_io {
    void *ctx;
    /* One request to the cluster (with failover), within timeout_ms: 0 and
     * *out (valid until the next request), or a negative code when no
     * endpoint answered. */
    int (*request)(void *ctx, const char *method, const char *target, const void *body,
                   size_t body_len, int timeout_ms, struct cli_lock_answer *out);
};

/* argv: COMMAND and its arguments (NULL-terminated, argc >= 1). Returns
 * the process exit code. */
int cli_lock_run(const struct cli_lock_io *io, const char *name, uint64_t ttl_ms, int argc,
                 char **argv);

/* value NULL: --observe. Returns the process exit code. */
int cli_elect_run(const struct cli_lock_io *io, const char *name, const char *value,
                  uint64_t ttl_ms, bool json);

#endif
