/* `stcache snapshot save|inspect`: backups of a running cluster (GET
 * /snapshot) written to a file, and the offline check of such a file
 * (node_backup_check). See docs/CLI.md and docs/OPERATIONS.md. */
#ifndef ST_CLI_BACKUP_H
#define ST_CLI_BACKUP_H

#include <stdbool.h>
#include <stddef.h>

#include "cli/client.h"

/* Downloads a backup from the first endpoint that serves one into FILE.tmp,
 * checks it whole (node_backup_check), fsyncs it, renames it to FILE and
 * fsyncs the directory; prints index, keys and bytes. Nothing is left
 * behind on failure. Returns a cli_exit code: 3 when no endpoint served
 * one, 4 when one answered an error or sent a damaged file. */
int cli_backup_save(const struct cli_endpoint *eps, size_t n_eps, int timeout_ms, const char *file,
                    bool json, const char *auth_header);
/* Prints a backup file's meta, key count, sizes and whether its checksums
 * hold, or the offset and reason of the damage (exit 1). No server. */
int cli_backup_inspect(const char *file, bool json);

/* `snapshot restore FILE --data DIR --id N --peers LIST [--cluster-id HEX]
 * [--json]` (argv[0] is "restore"): node_backup_restore, then prints the new
 * cluster id and what was restored. Exit 0, 1 (damaged backup, directory
 * holds data, write failed), 2 (usage). */
int cli_backup_restore_main(int argc, char **argv);

#endif
