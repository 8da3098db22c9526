/* The stcache executable: `stcache server ...` runs a node; every other
 * subcommand is a client or admin command (src/cli/client.c). */
#include "cli/client.h"
#include "cli/server.h"
#include "node/node.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: stcache server [--id N --data DIR --raft HOST:PORT --http HOST:PORT ...]\n"
               "       stcache get|put|del|members|add|remove|transfer|snapshot|status ...\n"
               "       stcache version | --version\n"
               "run 'stcache server --help' for the server flags; see docs/OPERATIONS.md and\n"
               "docs/HTTP-API.md\n");
}

/* `stcache version` and `stcache --version`: what this binary is and which
 * formats it writes (node_version_get). */
static int print_version(void)
{
    const struct node_version *v = node_version_get();
    printf("stcache %s\n"
           "commit: %s\n"
           "disk formats: wal segment %u, snapshot meta %u, identity %u, kv snapshot %u "
           "(reads %u..%u)\n"
           "wire formats: frame %u, handshake %u, raft message %u, kv command %u\n"
           "compiler: %s\n",
           v->release, v->commit, v->wal_segment, v->snapshot_meta, v->identity, v->kv_snapshot,
           v->kv_snapshot_read_min, v->kv_snapshot, v->frame, v->handshake, v->wire_msg,
           v->kv_command, v->compiler);
    return 0;
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
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) return print_version();
    if (strcmp(cmd, "server") == 0) return cli_server_main(argc - 1, argv + 1);
    return cli_client_main(argc - 1, argv + 1);
}
