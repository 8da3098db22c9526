/* `stcache server`: runs one node (flags in docs/OPERATIONS.md). */
#ifndef ST_CLI_SERVER_H
#define ST_CLI_SERVER_H

#include <stdbool.h>
#include "node/config.h"

/* argv[0] is "server". Returns the process exit status: 0 after a clean
 * stop (SIGINT/SIGTERM), 1 on a runtime failure, 2 on bad flags. */
int cli_server_main(int argc, char **argv);

/* Parses the server flags into cfg (starting from node_config_default()).
 * Returns 0, 1 when --help was given (usage printed), or 2 with a one-line
 * reason in err. Exposed for tests. */
int cli_server_parse(int argc, char **argv, struct node_config *cfg, char *err, size_t errlen);

/* Secure by default (docs/SECURITY.md): true, with a one-line reason in
 * why, when cfg listens on a non-loopback address without what protects
 * it (--auth for HTTP and Redis, peer TLS for Raft) and --insecure is not
 * given. The one place to extend when client TLS exists. */
bool cli_server_insecure_reason(const struct node_config *cfg, char *why, size_t cap);

#endif
