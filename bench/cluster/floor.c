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
 *   floor replicated DIR COUNT
 *                           COUNT writes through the least a 3-replica system
 *                           must do, with no consensus code: a client sends 1
 *                           byte to a "leader" process, which forwards it to
 *                           two "follower" processes and then writes and
 *                           fdatasyncs 4 KiB of its own; each follower writes
 *                           and fdatasyncs 4 KiB and answers; the leader
 *                           answers the client once its own sync and one
 *                           follower's answer are in (a majority of 3). Four
 *                           processes, loopback TCP (TCP_NODELAY), one file
 *                           per replica in DIR, pre-written like `fsync`'s.
 *
 * Prints one JSON object: {"what":..,"count":N,"p50_us":..,"p99_us":..,
 * "mean_us":..,"min_us":..}. Exit status 0 on success, 1 on any failure (with
 * a message on stderr). Not part of the stcache build: bench/run.sh compiles
 * it with the system C compiler. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
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
        if (write_all(fd, block, sizeof(block), (off_t)(i * BLOCK_BYTES)) != 0 ||
            fdatasync(fd) != 0) {
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

/* A listening loopback socket on an ephemeral port (its address in *addr). */
static int listen_loopback(struct sockaddr_in *addr)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0) {
        fprintf(stderr, "floor: socket: %s\n", strerror(errno));
        return -1;
    }
    memset(addr, 0, sizeof(*addr));
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof(*addr);
    if (bind(lfd, (struct sockaddr *)addr, sizeof(*addr)) != 0 || listen(lfd, 4) != 0 ||
        getsockname(lfd, (struct sockaddr *)addr, &alen) != 0) {
        fprintf(stderr, "floor: bind/listen: %s\n", strerror(errno));
        close(lfd);
        return -1;
    }
    return lfd;
}

static int connect_loopback(const struct sockaddr_in *addr)
{
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    if (connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) != 0) {
        close(fd);
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static int accept_nodelay(int lfd)
{
    int one = 1;
    int fd = accept(lfd, NULL, NULL);
    if (fd >= 0) {
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    return fd;
}

/* A replica's WAL stand-in: COUNT blocks in DIR, written and synced once so
 * that the timed writes overwrite allocated blocks. */
struct replica_file {
    int fd;
    char path[4096];
    char block[BLOCK_BYTES];
};

static int replica_open(struct replica_file *f, const char *dir, const char *name, size_t count)
{
    int n = snprintf(f->path, sizeof(f->path), "%s/.floor-%s-probe", dir, name);
    if (n < 0 || (size_t)n >= sizeof(f->path)) {
        return -1;
    }
    memset(f->block, 0xab, sizeof(f->block));
    f->fd = open(f->path, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
    if (f->fd < 0) {
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        if (write_all(f->fd, f->block, sizeof(f->block), (off_t)(i * BLOCK_BYTES)) != 0) {
            return -1;
        }
    }
    return fsync(f->fd);
}

static int replica_write(struct replica_file *f, size_t i)
{
    f->block[0] = (char)i;
    if (write_all(f->fd, f->block, sizeof(f->block), (off_t)(i * BLOCK_BYTES)) != 0) {
        return -1;
    }
    return fdatasync(f->fd);
}

static void replica_close(struct replica_file *f)
{
    if (f->fd >= 0) {
        close(f->fd);
    }
    unlink(f->path);
}

/* Follower process: one synced write per byte from the leader, then the
 * byte back. */
static void follower_main(const struct sockaddr_in *leader_addr, const char *dir, const char *name,
                          size_t count)
{
    struct replica_file f = {.fd = -1};
    int fd = connect_loopback(leader_addr);
    if (fd < 0 || replica_open(&f, dir, name, count) != 0) {
        replica_close(&f);
        _exit(1);
    }
    char ready = 'r';
    if (write(fd, &ready, 1) != 1) {
        _exit(1);
    }
    char c;
    for (size_t i = 0; read_exact(fd, &c, 1) == 0; i++) {
        if (replica_write(&f, i % count) != 0 || write(fd, &c, 1) != 1) {
            replica_close(&f);
            _exit(1);
        }
    }
    replica_close(&f);
    _exit(0);
}

/* Leader process: the client's byte goes to both followers first, then to
 * its own disk; the answer waits for a majority (its sync and the first
 * follower's answer for this write). A slower follower's answers are read
 * as they come and never delay a write that already has its majority; at
 * the end the leader waits for them all. */
static void leader_main(int cfd, const int ffd[2], const char *dir, size_t count)
{
    struct replica_file f = {.fd = -1};
    if (replica_open(&f, dir, "leader", count) != 0) {
        replica_close(&f);
        _exit(1);
    }
    char c;
    size_t acked[2] = {0, 0};
    for (size_t seq = 1; read_exact(cfd, &c, 1) == 0; seq++) {
        if (write(ffd[0], &c, 1) != 1 || write(ffd[1], &c, 1) != 1 ||
            replica_write(&f, seq % count) != 0) {
            replica_close(&f);
            _exit(1);
        }
        while (acked[0] < seq && acked[1] < seq) {
            struct pollfd p[2] = {{.fd = ffd[0], .events = POLLIN},
                                  {.fd = ffd[1], .events = POLLIN}};
            if (poll(p, 2, -1) < 0 && errno != EINTR) {
                _exit(1);
            }
            for (int k = 0; k < 2; k++) {
                if (p[k].revents & (POLLIN | POLLHUP | POLLERR)) {
                    char buf[64];
                    ssize_t n = read(ffd[k], buf, sizeof(buf));
                    if (n <= 0) {
                        _exit(1);
                    }
                    acked[k] += (size_t)n;
                }
            }
        }
        if (write(cfd, &c, 1) != 1) {
            _exit(1);
        }
    }
    /* The client is done. The slower follower may still be syncing its last
     * write: tell both there is no more and take their last answers, so no
     * follower answers into a closed connection and fails. */
    for (int k = 0; k < 2; k++) {
        char buf[64];
        shutdown(ffd[k], SHUT_WR);
        while (read(ffd[k], buf, sizeof(buf)) > 0) {
        }
    }
    replica_close(&f);
    _exit(0);
}

static int measure_replicated(const char *dir, size_t count, double *samples)
{
    int rc = -1;
    pid_t kids[3] = {-1, -1, -1};
    struct sockaddr_in laddr, caddr;
    int lfd = listen_loopback(&laddr);  /* the leader's peer port */
    int clfd = listen_loopback(&caddr); /* the leader's client port */
    if (lfd < 0 || clfd < 0) {
        goto out;
    }
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        if (kids[k] < 0) {
            fprintf(stderr, "floor: fork: %s\n", strerror(errno));
            goto out;
        }
        if (kids[k] == 0) {
            close(clfd);
            close(lfd);
            follower_main(&laddr, dir, k == 0 ? "follower1" : "follower2", count);
        }
    }
    kids[2] = fork();
    if (kids[2] < 0) {
        fprintf(stderr, "floor: fork: %s\n", strerror(errno));
        goto out;
    }
    if (kids[2] == 0) {
        int ffd[2];
        char r;
        for (int k = 0; k < 2; k++) {
            ffd[k] = accept_nodelay(lfd);
            if (ffd[k] < 0 || read_exact(ffd[k], &r, 1) != 0) {
                _exit(1);
            }
        }
        int cfd = accept_nodelay(clfd);
        if (cfd < 0) {
            _exit(1);
        }
        close(lfd);
        close(clfd);
        leader_main(cfd, ffd, dir, count);
    }
    /* Only the leader may hold the listening sockets from here on: if it
     * dies before accepting, its connections are reset instead of waiting
     * forever in a backlog the client keeps alive. */
    close(lfd);
    lfd = -1;
    int fd = connect_loopback(&caddr);
    close(clfd);
    clfd = -1;
    if (fd < 0) {
        fprintf(stderr, "floor: connect: %s\n", strerror(errno));
        goto out;
    }
    for (size_t i = 0; i < count; i++) {
        char c = (char)i;
        double t0 = now_us();
        if (write(fd, &c, 1) != 1 || read_exact(fd, &c, 1) != 0) {
            fprintf(stderr, "floor: replicated write %zu failed (a replica could not write)\n", i);
            close(fd);
            goto out;
        }
        samples[i] = now_us() - t0;
    }
    rc = 0;
    close(fd);
out:
    /* closing the client connection ends the leader, whose exit ends the
     * followers; SIGTERM covers a failure half-way */
    for (int k = 2; k >= 0; k--) {
        if (kids[k] > 0) {
            if (rc != 0) {
                kill(kids[k], SIGTERM);
            }
            int st = 0;
            waitpid(kids[k], &st, 0);
            if (rc == 0 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
                fprintf(stderr, "floor: a replica process failed\n");
                rc = -1;
            }
        }
    }
    if (lfd >= 0) {
        close(lfd);
    }
    if (clfd >= 0) {
        close(clfd);
    }
    return rc;
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

static void usage(void)
{
    fprintf(stderr,
            "usage: floor fsync DIR COUNT | floor rtt COUNT | floor replicated DIR COUNT\n");
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        usage();
        return 1;
    }
    enum { FSYNC, RTT, REPLICATED } mode;
    if (strcmp(argv[1], "fsync") == 0) {
        mode = FSYNC;
    } else if (strcmp(argv[1], "rtt") == 0) {
        mode = RTT;
    } else if (strcmp(argv[1], "replicated") == 0) {
        mode = REPLICATED;
    } else {
        usage();
        return 1;
    }
    const char *count_arg =
        mode == RTT ? (argc == 3 ? argv[2] : NULL) : (argc == 4 ? argv[3] : NULL);
    if (count_arg == NULL) {
        usage();
        return 1;
    }
    char *end = NULL;
    unsigned long count = strtoul(count_arg, &end, 10);
    if (*end != '\0' || count == 0 || count > COUNT_MAX) {
        fprintf(stderr, "floor: COUNT must be 1..%d\n", COUNT_MAX);
        return 1;
    }
    /* a replica that died shows as a failed write or read, not as SIGPIPE */
    signal(SIGPIPE, SIG_IGN);
    double *samples = calloc(count, sizeof(double));
    if (samples == NULL) {
        fprintf(stderr, "floor: out of memory\n");
        return 1;
    }
    int rc;
    const char *what;
    switch (mode) {
    case FSYNC:
        rc = measure_fsync(argv[2], count, samples);
        what = "fdatasync_4k";
        break;
    case RTT:
        rc = measure_rtt(count, samples);
        what = "loopback_rtt";
        break;
    default:
        rc = measure_replicated(argv[2], count, samples);
        what = "replicated_write_3";
        break;
    }
    if (rc == 0) {
        report(what, samples, count);
    }
    free(samples);
    return rc == 0 ? 0 : 1;
}
