/* Certificates for the TLS unit tests (tests/unit/tls, http, transport):
 * one temporary directory per test process, filled by scripts/gen-certs.sh
 * at set-up (the test's constructor says which certificates it needs) and
 * removed at exit. Set-up only: every helper exits the process on failure,
 * as a test cannot run without its certificates. One directory per process
 * (static state; include from one file of a test). */
#ifndef ST_TEST_TLS_CERTS_H
#define ST_TEST_TLS_CERTS_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char st_test_certs_dir[256]; /* "" until st_test_certs_setup() */

/* Runs the shell command fmt...; exits the process when it fails. Only for
 * scripts/gen-certs.sh, cp and rm on the test's own directory: no untrusted
 * input reaches the shell. */
__attribute__((format(printf, 1, 2))) static inline void st_test_sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (system(cmd) != 0) { // NOLINT(cert-env33-c)
        fprintf(stderr, "command failed: %s\n", cmd);
        exit(1);
    }
}

/* Creates the directory /tmp/<prefix>-XXXXXX; returns its path. */
static inline const char *st_test_certs_setup(const char *prefix)
{
    snprintf(st_test_certs_dir, sizeof st_test_certs_dir, "/tmp/%s-XXXXXX", prefix);
    if (mkdtemp(st_test_certs_dir) == NULL) exit(1);
    return st_test_certs_dir;
}

/* Runs scripts/gen-certs.sh <dir>[/<sub>] <args> quietly: sub "" for the
 * directory itself, e.g. st_test_certs_gen("other", "node %d", 2). */
__attribute__((format(printf, 2, 3))) static inline void st_test_certs_gen(const char *sub,
                                                                           const char *fmt, ...)
{
    char args[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    st_test_sh("%s/scripts/gen-certs.sh %s%s%s %s >/dev/null", ST_SOURCE_DIR, st_test_certs_dir,
               sub[0] ? "/" : "", sub, args);
}

/* <dir>/<name>, in one of 8 rotating buffers (valid for 8 calls). */
static inline const char *st_test_certs_path(const char *name)
{
    static char bufs[8][320];
    static int next;
    char *p = bufs[next++ % 8];
    snprintf(p, 320, "%s/%s", st_test_certs_dir, name);
    return p;
}

__attribute__((destructor)) static void st_test_certs_teardown(void)
{
    if (st_test_certs_dir[0] != '\0') st_test_sh("rm -rf %s", st_test_certs_dir);
}

#endif
