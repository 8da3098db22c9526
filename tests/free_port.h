/* Free loopback ports for tests and fuzz drivers that start nodes, shared by
 * the C harnesses (tests/unit/node/harness.h, tests/fuzz/targets_api.h). */
#ifndef ST_TEST_FREE_PORT_H
#define ST_TEST_FREE_PORT_H

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A free loopback port for a node to bind later. Not "bind to port 0, read
 * it back, close": that port is in the kernel's ephemeral range, and an
 * outgoing connection of any process can take it before the node binds (CI
 * saw "cannot listen on 127.0.0.1:54993: address already in use"). As in
 * tests/cluster/harness.py: a random port below the ephemeral range (32768+
 * on Linux), locked with a file in the same directory so concurrent test
 * processes, C or Python, stay off each other's ports; the lock is held
 * until the process exits. 0 when none can be found. */
#define ST_TEST_PORT_LO 20000
#define ST_TEST_PORT_HI 32000

static inline bool st_test_port_bindable(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static inline uint16_t st_test_free_port(void)
{
    static uint64_t state;
    if (state == 0) state = ((uint64_t)getpid() << 32) ^ (uint64_t)time(NULL) ^ 0x9e3779b97f4a7c15u;
    const char *tmp = getenv("TMPDIR");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/stcache-cluster-ports", tmp && *tmp ? tmp : "/tmp");
    mkdir(dir, 0777);
    for (int attempt = 0; attempt < 20000; attempt++) {
        state = state * 6364136223846793005u + 1442695040888963407u;
        uint16_t port =
            (uint16_t)(ST_TEST_PORT_LO + (state >> 33) % (ST_TEST_PORT_HI - ST_TEST_PORT_LO));
        char path[600];
        snprintf(path, sizeof path, "%s/%u.lock", dir, port);
        int fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0666);
        if (fd < 0) continue;
        if (flock(fd, LOCK_EX | LOCK_NB) != 0 || !st_test_port_bindable(port)) {
            close(fd);
            continue;
        }
        return port; /* fd stays open: the lock lasts as long as the process */
    }
    return 0;
}

#endif
