/* systemd readiness notification (Type=notify units: deploy/systemd/).
 *
 * Built with libsystemd (CMake option STCACHE_SYSTEMD, on when the library
 * is found) the messages go through sd_notify() to $NOTIFY_SOCKET; without
 * it, or outside systemd (no NOTIFY_SOCKET), nothing is sent. Loop thread
 * only; never blocks (a datagram). */
#ifndef ST_CLI_NOTIFY_H
#define ST_CLI_NOTIFY_H

#include <stdbool.h>

/* True when messages would reach a supervisor: the build has libsystemd and
 * NOTIFY_SOCKET is set. */
bool cli_notify_enabled(void);
/* Sends one sd_notify message ("READY=1\nSTATUS=...": newline-separated
 * assignments), formatted like printf, at most 255 bytes (longer is cut).
 * No-op when !cli_notify_enabled(); failures are ignored (the supervisor
 * may be gone). */
void cli_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
