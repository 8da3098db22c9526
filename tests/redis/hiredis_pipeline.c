/* hiredis (Debian's libhiredis-dev) against a node's --redis port: 1000
 * pipelined SETs then 1000 GETs sent before any reply is read, replies in
 * order; then the same key written and read alternately in one pipeline.
 * Run by run_redis.py (scenario hiredis) with the port as argument.
 * hiredis 0.14 has no RESP3 reader: RESP3 replies are checked byte by
 * byte in the cli scenario instead. Exit 0 on success, 1 with a message. */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 1000

static int fail(const char *what, const redisReply *r)
{
    fprintf(stderr, "hiredis_pipeline: %s (reply type %d: %s)\n", what, r ? r->type : -1,
            r && r->str ? r->str : "");
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: hiredis_pipeline PORT\n");
        return 2;
    }
    char *end = NULL;
    long port = strtol(argv[1], &end, 10);
    if (!end || *end || port <= 0 || port > 65535) {
        fprintf(stderr, "hiredis_pipeline: bad port '%s'\n", argv[1]);
        return 2;
    }
    redisContext *c = redisConnect("127.0.0.1", (int)port);
    if (!c || c->err) return fail("connect", NULL);
    char key[32], val[32];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "hi:%d", i);
        snprintf(val, sizeof val, "v%d", i);
        redisAppendCommand(c, "SET %s %s", key, val);
    }
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "hi:%d", i);
        redisAppendCommand(c, "GET %s", key);
    }
    for (int i = 0; i < 2 * N; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK || !r) return fail("read", NULL);
        if (i < N) {
            if (r->type != REDIS_REPLY_STATUS || strcmp(r->str, "OK") != 0)
                return fail("SET reply", r);
        } else {
            snprintf(val, sizeof val, "v%d", i - N);
            if (r->type != REDIS_REPLY_STRING || strcmp(r->str, val) != 0)
                return fail("GET reply out of order", r);
        }
        freeReplyObject(r);
    }
    for (int i = 0; i < 50; i++) {
        snprintf(val, sizeof val, "%d", i);
        redisAppendCommand(c, "SET hi:alt %s", val);
        redisAppendCommand(c, "GET hi:alt");
    }
    for (int i = 0; i < 100; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK || !r) return fail("read", NULL);
        if (i % 2 == 1) {
            snprintf(val, sizeof val, "%d", i / 2);
            if (r->type != REDIS_REPLY_STRING || strcmp(r->str, val) != 0)
                return fail("a GET does not see the SET just before it", r);
        }
        freeReplyObject(r);
    }
    redisFree(c);
    printf("hiredis_pipeline: %d pipelined commands, replies in order\n", 2 * N + 100);
    return 0;
}
