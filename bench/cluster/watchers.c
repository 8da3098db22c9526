/* watchers: the client side of the watch fan-out benchmark
 * (bench/cluster/watch_fanout.py). Opens N watches (GET /watch) spread over
 * the given nodes, drains them as fast as the kernel hands the bytes over,
 * and counts the event lines each delivers until the duration ends.
 *
 * usage: watchers N PREFIX SECONDS HOST:PORT[,HOST:PORT...]
 *
 * Prints one line "WATCHERS {json}" with the watches opened, the event lines
 * and progress lines seen, the bytes read, the watches the server ended early
 * (a "canceled" line or a close) and the ones refused. One thread, epoll,
 * one 64 KiB read buffer shared by every watch: the client takes as little of
 * the machine's two cores as a drain can. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WATCHERS_MAX 10000
#define ADDRS_MAX 16
#define READ_BUF_BYTES (64 * 1024)

/* Per watch: whether its response head has ended, and the first bytes of
 * the line being read (a line can straddle two reads; the server writes
 * whole lines into each chunk, so chunk framing never splits one). */
#define LINE_PREFIX_BYTES 12
struct watch {
    int fd;
    int head_done;
    char lp[LINE_PREFIX_BYTES];
    size_t lp_len;
};

struct counts {
    uint64_t events, progress, canceled;
};

static void classify(const char *lp, size_t n, struct counts *c)
{
    if (n >= 8 && memcmp(lp, "{\"type\":", 8) == 0)
        c->events++;
    else if (n >= 12 && memcmp(lp, "{\"progress\":", 12) == 0)
        c->progress++;
    else if (n >= 11 && memcmp(lp, "{\"canceled\"", 11) == 0)
        c->canceled++;
}

/* Feeds n bytes of a watch's body to its line splitter. */
static void feed(struct watch *x, const char *p, size_t n, struct counts *c)
{
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t seg = nl ? (size_t)(nl - p) : n;
        size_t take = seg < LINE_PREFIX_BYTES - x->lp_len ? seg : LINE_PREFIX_BYTES - x->lp_len;
        memcpy(x->lp + x->lp_len, p, take);
        x->lp_len += take;
        if (!nl) return;
        classify(x->lp, x->lp_len, c);
        x->lp_len = 0;
        n -= seg + 1;
        p = nl + 1;
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int dial(const struct sockaddr_in *sa)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: watchers N PREFIX SECONDS HOST:PORT[,HOST:PORT...]\n");
        return 2;
    }
    char *end1 = NULL, *end3 = NULL;
    long n = strtol(argv[1], &end1, 10);
    const char *prefix = argv[2];
    double secs = strtod(argv[3], &end3);
    if (*end1 || *end3 || n < 1 || n > WATCHERS_MAX || secs <= 0) {
        fprintf(stderr, "watchers: N in 1..%d, SECONDS > 0\n", WATCHERS_MAX);
        return 2;
    }
    struct sockaddr_in addrs[ADDRS_MAX];
    char hosts[ADDRS_MAX][64];
    int n_addrs = 0;
    char *list = strdup(argv[4]);
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok && n_addrs < ADDRS_MAX;
         tok = strtok_r(NULL, ",", &save)) {
        char *colon = strrchr(tok, ':');
        char *end = NULL;
        long port = colon ? strtol(colon + 1, &end, 10) : 0;
        if (!colon || *end || port < 1 || port > 65535) {
            free(list);
            return 2;
        }
        *colon = '\0';
        memset(&addrs[n_addrs], 0, sizeof(addrs[0]));
        addrs[n_addrs].sin_family = AF_INET;
        addrs[n_addrs].sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, tok, &addrs[n_addrs].sin_addr) != 1) {
            free(list);
            return 2;
        }
        snprintf(hosts[n_addrs], sizeof(hosts[0]), "%s:%s", tok, colon + 1);
        n_addrs++;
    }
    free(list);
    if (n_addrs == 0) {
        fprintf(stderr, "watchers: no address\n");
        return 2;
    }

    struct watch *w = calloc((size_t)n, sizeof(*w));
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (!w || ep < 0) {
        free(w);
        return 1;
    }
    int opened = 0, refused = 0;
    char req[512];
    for (int i = 0; i < (int)n; i++) {
        int a = i % n_addrs;
        int fd = dial(&addrs[a]);
        if (fd < 0) {
            refused++;
            w[i].fd = -1;
            continue;
        }
        int len = snprintf(req, sizeof(req),
                           "GET /watch?prefix=%s&keys_only=1&progress_ms=0 HTTP/1.1\r\n"
                           "Host: %s\r\n\r\n",
                           prefix, hosts[a]);
        if (write(fd, req, (size_t)len) != len) {
            close(fd);
            refused++;
            w[i].fd = -1;
            continue;
        }
        w[i].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        opened++;
    }

    static char buf[READ_BUF_BYTES];
    struct epoll_event evs[256];
    struct counts c = {0};
    uint64_t bytes = 0;
    size_t closed = 0, not_ok = 0;
    double t_end = now_s() + secs;
    for (;;) {
        double t = now_s();
        if (t >= t_end) break;
        int k = epoll_wait(ep, evs, 256, (int)((t_end - t) * 1000) + 1);
        if (k < 0 && errno != EINTR) {
            free(w);
            return 1;
        }
        for (int e = 0; e < k; e++) {
            struct watch *x = &w[evs[e].data.u32];
            ssize_t r = read(x->fd, buf, sizeof(buf));
            if (r <= 0) {
                if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
                epoll_ctl(ep, EPOLL_CTL_DEL, x->fd, NULL);
                close(x->fd);
                x->fd = -1;
                closed++;
                continue;
            }
            bytes += (uint64_t)r;
            const char *p = buf;
            size_t len = (size_t)r;
            if (!x->head_done) {
                /* the head arrives in the first read: the server writes it whole */
                const char *end = memmem(p, len, "\r\n\r\n", 4);
                if (len < 12 || strncmp(p, "HTTP/1.1 200", 12) != 0) not_ok++;
                if (!end) continue;
                x->head_done = 1;
                len -= (size_t)(end + 4 - p);
                p = end + 4;
            }
            feed(x, p, len, &c);
        }
    }
    printf("WATCHERS {\"opened\":%d,\"refused\":%d,\"not_ok\":%zu,\"events\":%llu,"
           "\"progress\":%llu,\"bytes\":%llu,\"canceled\":%llu,\"closed\":%zu,\"seconds\":%.3f}\n",
           opened, refused, not_ok, (unsigned long long)c.events, (unsigned long long)c.progress,
           (unsigned long long)bytes, (unsigned long long)c.canceled, closed, secs);
    for (int i = 0; i < (int)n; i++)
        if (w[i].fd >= 0) close(w[i].fd);
    free(w);
    return 0;
}
