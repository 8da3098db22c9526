/* The physical floor of a replicated write on this machine, measured in the
 * same run as the cluster benchmark (bench/cluster/driver.py):
 *
 *   floor fsync DIR COUNT   COUNT sequential 4 KiB writes, each followed by
 *                           fdatasync(), into a file in DIR that was written
 *                           and synced beforehand (so each sync flushes data,
 *                           not block allocation). DIR must be on the file
 *                           system the nodes' data directories live on.
 *   floor rtt COUNT         COUNT 1-byte ping-pongs over one loopback TCP
 *                           connection (TCP_NODELAY) to a forked echo child.
 *
 * Prints one JSON object: {"what":..,"count":N,"p50_us":..,"p99_us":..,
 * "mean_us":..,"min_us":..}. Exit status 0 on success, 1 on any failure (with
 * a message on stderr). Not part of the stcache build: bench/run.sh compiles
 * it with the system C compiler. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { BLOCK_BYTES = 4096, COUNT_MAX = 1000000 };

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts samples in place and prints the summary line. */
static void report(const char *what, double *samples, size_t count)
{
    double sum = 0;
    for (size_t i = 0; i < count; i++) {
        sum += samples[i];
    }
    qsort(samples, count, sizeof(samples[0]), cmp_double);
    size_t p99 = (count * 99) / 100;
    if (p99 >= count) {
        p99 = count - 1;
    }
    printf("{\"what\":\"%s\",\"count\":%zu,\"p50_us\":%.1f,\"p99_us\":%.1f,"
           "\"mean_us\":%.1f,\"min_us\":%.1f}\n",
           what, count, samples[count / 2], samples[p99], sum / (double)count, samples[0]);
}

static int write_all(int fd, const char *buf, size_t len, off_t off)
{
    while (len > 0) {
        ssize_t n = pwrite(fd, buf, len, off);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        buf += n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}

static int measure_fsync(const char *dir, size_t count, double *samples)
{
    char path[4096];
    int rc = -1;
    int n = snprintf(path, sizeof(path), "%s/.floor-fsync-probe", dir);
    if (n < 0 || (size_t)n >= sizeof(path)) {
        fprintf(stderr, "floor: directory path too long\n");
        return -1;
    }
    static char block[BLOCK_BYTES];
    memset(block, 0xab, sizeof(block));
    int fd = open(path, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "floor: open %s: %s\n", path, strerror(errno));
        return -1;
    }
    /* Write the whole file once and sync it, so the timed loop overwrites
     * allocated blocks: what a WAL with preallocated segments does. */
    for (size_t i = 0; i < count; i++) {
        if (write_all(fd, block, sizeof(block), (off_t)(i * BLOCK_BYTES)) != 0) {
            fprintf(stderr, "floor: write: %s\n", strerror(errno));
            goto out_fd;
        }
    }
    if (fsync(fd) != 0) {
        fprintf(stderr, "floor: fsync: %s\n", strerror(errno));
        goto out_fd;
    }
    for (size_t i = 0; i < count; i++) {
        block[0] = (char)i;
        double t0 = now_us();
        if (write_all(fd, block, sizeof(block), (off_t)(i * BLOCK_BYTES)) != 0 || fdatasync(fd) != 0) {
            fprintf(stderr, "floor: write+fdatasync: %s\n", strerror(errno));
            goto out_fd;
        }
        samples[i] = now_us() - t0;
    }
    rc = 0;
out_fd:
    close(fd);
    unlink(path);
    return rc;
}

static int read_exact(int fd, char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = read(fd, buf, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int measure_rtt(size_t count, double *samples)
{
    int rc = -1;
    int one = 1;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0) {
        fprintf(stderr, "floor: socket: %s\n", strerror(errno));
        return -1;
    }
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof(addr);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(lfd, 1) != 0 ||
        getsockname(lfd, (struct sockaddr *)&addr, &alen) != 0) {
        fprintf(stderr, "floor: bind/listen: %s\n", strerror(errno));
        goto out_lfd;
    }
    pid_t child = fork();
    if (child < 0) {
        fprintf(stderr, "floor: fork: %s\n", strerror(errno));
        goto out_lfd;
    }
    if (child == 0) {
        int cfd = accept(lfd, NULL, NULL);
        if (cfd < 0) {
            _exit(1);
        }
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        char c;
        while (read_exact(cfd, &c, 1) == 0) {
            if (write(cfd, &c, 1) != 1) {
                _exit(1);
            }
        }
        _exit(0);
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        fprintf(stderr, "floor: connect: %s\n", strerror(errno));
        goto out_child;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    for (size_t i = 0; i < count; i++) {
        char c = (char)i;
        double t0 = now_us();
        if (write(fd, &c, 1) != 1 || read_exact(fd, &c, 1) != 0) {
            fprintf(stderr, "floor: ping-pong: %s\n", strerror(errno));
            goto out_fd;
        }
        samples[i] = now_us() - t0;
    }
    rc = 0;
out_fd:
    close(fd);
out_child:
    kill(child, SIGTERM);
    waitpid(child, NULL, 0);
out_lfd:
    close(lfd);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: floor fsync DIR COUNT | floor rtt COUNT\n");
        return 1;
    }
    int is_fsync = strcmp(argv[1], "fsync") == 0;
    const char *count_arg = is_fsync ? (argc == 4 ? argv[3] : NULL) : argv[2];
    if ((!is_fsync && strcmp(argv[1], "rtt") != 0) || count_arg == NULL) {
        fprintf(stderr, "usage: floor fsync DIR COUNT | floor rtt COUNT\n");
        return 1;
    }
    char *end = NULL;
    unsigned long count = strtoul(count_arg, &end, 10);
    if (*end != '\0' || count == 0 || count > COUNT_MAX) {
        fprintf(stderr, "floor: COUNT must be 1..%d\n", COUNT_MAX);
        return 1;
    }
    double *samples = calloc(count, sizeof(double));
    if (samples == NULL) {
        fprintf(stderr, "floor: out of memory\n");
        return 1;
    }
    int rc = is_fsync ? measure_fsync(argv[2], count, samples) : measure_rtt(count, samples);
    if (rc == 0) {
        report(is_fsync ? "fdatasync_4k" : "loopback_rtt", samples, count);
    }
    free(samples);
    return rc == 0 ? 0 : 1;
}
