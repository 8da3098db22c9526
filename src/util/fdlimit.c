#include "util/fdlimit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "stcache/errors.h"

int st_nofile_raise(uint64_t *before_out, uint64_t *soft_out)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return st_errno_to_code(errno);
    *before_out = *soft_out = (uint64_t)rl.rlim_cur;
    if (rl.rlim_cur >= rl.rlim_max) return 0;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) return st_errno_to_code(errno);
    *soft_out = (uint64_t)rl.rlim_cur;
    return 0;
}

uint64_t st_nofile_limit(void)
{
    struct rlimit rl;
    return getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (uint64_t)rl.rlim_cur : 0;
}

uint64_t st_open_files(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) return 0;
    uint64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n > 0 ? n - 1 : 0; /* not the one listing it */
}

/* -1 until first needed; then a descriptor kept open to give back. */
static atomic_int reserve_fd = -1;

static void reserve_take(void)
{
    if (atomic_load(&reserve_fd) >= 0) return;
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    int expect = -1;
    if (!atomic_compare_exchange_strong(&reserve_fd, &expect, fd)) close(fd);
}

uint32_t st_accept_refuse_pending(int listen_fd)
{
    uint32_t n = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (;;) {
            int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd >= 0) {
                close(fd);
                n++;
                continue;
            }
            if (errno == EINTR || errno == ECONNABORTED) continue;
            break;
        }
        if (errno != EMFILE && errno != ENFILE) break;
        /* no descriptor even for that: give back the reserve and go again */
        int fd = atomic_exchange(&reserve_fd, -1);
        if (fd < 0) break;
        close(fd);
    }
    reserve_take(); /* for next time (fails quietly while none is free) */
    return n;
}
