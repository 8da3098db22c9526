/* sd_notify() from libsystemd when built with it (ST_HAVE_SYSTEMD). */
#include "cli/notify.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef ST_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

bool cli_notify_enabled(void)
{
#ifdef ST_HAVE_SYSTEMD
    const char *s = getenv("NOTIFY_SOCKET");
    return s && *s;
#else
    return false;
#endif
}

void cli_notify(const char *fmt, ...)
{
    if (!cli_notify_enabled()) return;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
#ifdef ST_HAVE_SYSTEMD
    (void)sd_notify(0, msg);
#endif
}
