/* The stcache executable: `stcache server ...` runs a node; every other
 * subcommand is a client or admin command (src/cli/client.c). */
#include "cli/client.h"
#include "cli/server.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: stcache server [--id N --data DIR --raft HOST:PORT --http HOST:PORT ...]\n"
               "       stcache get|put|del|members|add|remove|transfer|snapshot|status ...\n"
               "run 'stcache server --help' for the server flags; see docs/OPERATIONS.md and\n"
               "docs/HTTP-API.md\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "server") == 0) return cli_server_main(argc - 1, argv + 1);
    return cli_client_main(argc - 1, argv + 1);
}
