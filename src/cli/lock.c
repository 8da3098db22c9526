/* `stcache lock` and `stcache elect` (cli/lock.h). */
#include "cli/lock.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/transport.h"
#include "stcache/errors.h"
#include "util/json.h"
#include "util/membuf.h"
#include "util/url.h"

#define LOCK_POLL_MS_MIN 50 /* backoff while another holder has the key */
#define LOCK_POLL_MS_MAX 1000
#define LOCK_CHILD_POLL_MS 50  /* how often the holder looks at COMMAND */
#define LOCK_TARGET_BYTES 1024 /* a request target */
#define LOCK_NAME_BYTES_MAX 200

static volatile sig_atomic_t g_signal; /* SIGINT/SIGTERM received */

static void on_signal(int sig)
{
    g_signal = sig;
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* The budget of one request: a third of the TTL, at least 500 ms. */
static int request_ms(uint64_t ttl_ms)
{
    return (int)(ttl_ms / 3 > 500 ? ttl_ms / 3 : 500);
}

static void pause_ms(int ms)
{
    poll(NULL, 0, ms); /* a pause between polls of the cluster or the child */
}

/* A uint64 member of a JSON object answer: 0 or ST_EINVAL. */
static int answer_u64(const struct cli_lock_answer *a, const char *key, uint64_t *out)
{
    struct st_jsonr_span v;
    if (a->body_len == 0 || st_jsonr_validate(a->body, a->body_len) != 0 ||
        !st_jsonr_get(st_jsonr_root(a->body, a->body_len), key, &v))
        return ST_EINVAL;
    return st_jsonr_uint(v, out);
}

/* "/kv/<encoded prefix NAME>" plus query into dst. 0 or ST_ETOOBIG. */
static int key_target(char *dst, size_t cap, const char *key, const char *query)
{
    char enc[LOCK_TARGET_BYTES];
    size_t len = 0;
    if (st_url_encode(key, strlen(key), enc, sizeof enc, &len) != 0) return ST_ETOOBIG;
    int n = snprintf(dst, cap, "/kv/%s%s", enc, query);
    return n < 0 || (size_t)n >= cap ? ST_ETOOBIG : 0;
}

/* Creates a session: 0 and *id, or an exit code after saying why. */
static int session_create(const struct cli_lock_io *io, const char *what, uint64_t ttl_ms,
                          uint64_t *id)
{
    char body[128];
    /* The name is informational: "lock pid N" needs no escapes. */
    snprintf(body, sizeof body, "{\"ttl_ms\":%" PRIu64 ",\"name\":\"%s pid %ld\"}", ttl_ms, what,
             (long)getpid());
    struct cli_lock_answer a;
    int rc = io->request(io->ctx, "POST", "/session", body, strlen(body), (int)ttl_ms, &a);
    if (rc != 0) return 3;
    if (a.status != 200 || answer_u64(&a, "id", id) != 0) {
        fprintf(stderr, "stcache: creating a session: HTTP %d: %.*s", a.status, (int)a.body_len,
                a.body);
        return 4;
    }
    return 0;
}

static void session_end(const struct cli_lock_io *io, uint64_t id, int timeout_ms)
{
    char target[64];
    snprintf(target, sizeof target, "/session/%" PRIu64, id);
    struct cli_lock_answer a;
    (void)io->request(io->ctx, "DELETE", target, NULL, 0, timeout_ms, &a);
}

enum renew_result { RENEW_OK, RENEW_GONE, RENEW_FAILED };

static enum renew_result session_renew(const struct cli_lock_io *io, uint64_t id, int timeout_ms)
{
    char target[64];
    snprintf(target, sizeof target, "/session/%" PRIu64 "/renew", id);
    struct cli_lock_answer a;
    if (io->request(io->ctx, "PUT", target, NULL, 0, timeout_ms, &a) != 0) return RENEW_FAILED;
    if (a.status == 200) return RENEW_OK;
    if (a.status == 404) return RENEW_GONE;
    return RENEW_FAILED;
}

/* One attempt to take key for session id with value: 1 taken (*version),
 * 0 held by another, ST_ENOENT session gone, other negative: failed. */
static int try_acquire(const struct cli_lock_io *io, const char *key, uint64_t id,
                       const char *value, int timeout_ms, uint64_t *version)
{
    char query[64], target[LOCK_TARGET_BYTES + 64];
    snprintf(query, sizeof query, "?session=%" PRIu64 "&if_absent=true", id);
    if (key_target(target, sizeof target, key, query) != 0) return ST_ETOOBIG;
    struct cli_lock_answer a;
    int rc = io->request(io->ctx, "PUT", target, value, strlen(value), timeout_ms, &a);
    if (rc != 0) return rc;
    if (a.status == 201 || a.status == 200) return answer_u64(&a, "version", version) == 0 ? 1 : -1;
    if (a.status == 412) return 0;
    if (a.status == 404) return ST_ENOENT;
    fprintf(stderr, "stcache: acquiring %s: HTTP %d: %.*s", key, a.status, (int)a.body_len, a.body);
    return ST_EPROTO;
}

/* ---------- lock ---------- */

static pid_t spawn(int argc, char **argv, const char *key, uint64_t token, uint64_t session)
{
    (void)argc;
    pid_t pid = fork();
    if (pid != 0) return pid;
    char text[32];
    snprintf(text, sizeof text, "%" PRIu64, token);
    setenv("STCACHE_LOCK_TOKEN", text, 1);
    setenv("STCACHE_LOCK_KEY", key, 1);
    snprintf(text, sizeof text, "%" PRIu64, session);
    setenv("STCACHE_LOCK_SESSION", text, 1);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    execvp(argv[0], argv);
    fprintf(stderr, "stcache: running %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

static int exit_code_of(int status)
{
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return 1;
}

int cli_lock_run(const struct cli_lock_io *io, const char *name, uint64_t ttl_ms, int argc,
                 char **argv)
{
    if (strlen(name) > LOCK_NAME_BYTES_MAX) {
        fprintf(stderr, "stcache: lock name too long\n");
        return 2;
    }
    install_signals();
    char key[LOCK_NAME_BYTES_MAX + 16];
    snprintf(key, sizeof key, "locks/%s", name);
    int req_ms = request_ms(ttl_ms);
    uint64_t id = 0, token = 0;
    int rc = session_create(io, "lock", ttl_ms, &id);
    if (rc) return rc;
    int64_t renewed_ms = cli_now_ms();
    int backoff = LOCK_POLL_MS_MIN;
    char holder[64];
    snprintf(holder, sizeof holder, "pid %ld", (long)getpid());
    for (;;) {
        if (g_signal) {
            session_end(io, id, req_ms);
            return 128 + g_signal;
        }
        int got = try_acquire(io, key, id, holder, req_ms, &token);
        if (got == 1) break;
        if (got == ST_ENOENT) { /* the session expired while waiting: start over */
            rc = session_create(io, "lock", ttl_ms, &id);
            if (rc) return rc;
            renewed_ms = cli_now_ms();
            continue;
        }
        if (got < 0 && got != ST_EUNAVAILABLE) {
            session_end(io, id, req_ms);
            return 4;
        }
        if (cli_now_ms() - renewed_ms >= (int64_t)ttl_ms / 3) {
            if (session_renew(io, id, req_ms) == RENEW_OK) renewed_ms = cli_now_ms();
        }
        pause_ms(backoff);
        backoff = backoff * 2 > LOCK_POLL_MS_MAX ? LOCK_POLL_MS_MAX : backoff * 2;
    }
    renewed_ms = cli_now_ms();
    fprintf(stderr, "stcache: lock %s acquired (token %" PRIu64 ", session %" PRIu64 ")\n", key,
            token, id);
    pid_t child = spawn(argc, argv, key, token, id);
    if (child < 0) {
        fprintf(stderr, "stcache: fork: %s\n", strerror(errno));
        session_end(io, id, req_ms);
        return 1;
    }
    int64_t last_try_ms = renewed_ms;
    int forwarded = 0;
    for (;;) {
        int status = 0;
        pid_t w = waitpid(child, &status, WNOHANG);
        if (w == child) {
            session_end(io, id, req_ms); /* releases the key: still attached */
            return exit_code_of(status);
        }
        if (g_signal && !forwarded) {
            kill(child, g_signal); /* passed on; released when it exits */
            forwarded = 1;
        }
        int64_t now = cli_now_ms();
        if (now - last_try_ms >= (int64_t)ttl_ms / 3) {
            last_try_ms = now;
            enum renew_result r = session_renew(io, id, req_ms);
            now = cli_now_ms();
            if (r == RENEW_OK) renewed_ms = now;
            if (r == RENEW_GONE || now - renewed_ms >= (int64_t)ttl_ms) {
                fprintf(stderr, "stcache: lock %s lost (%s): sending SIGTERM to the command\n", key,
                        r == RENEW_GONE ? "the session expired" : "no renew succeeded for a TTL");
                kill(child, SIGTERM);
                waitpid(child, &status, 0);
                session_end(io, id, req_ms);
                return CLI_LOCK_EXIT_LOST;
            }
        }
        pause_ms(LOCK_CHILD_POLL_MS);
    }
}

/* ---------- elect ---------- */

/* The current leader of key: 1 (*version, value into buf), 0 none,
 * negative: failed. */
static int leader_of(const struct cli_lock_io *io, const char *key, int timeout_ms, char *buf,
                     size_t cap, uint64_t *version)
{
    char target[LOCK_TARGET_BYTES + 64];
    if (key_target(target, sizeof target, key, "") != 0) return ST_ETOOBIG;
    struct cli_lock_answer a;
    int rc = io->request(io->ctx, "GET", target, NULL, 0, timeout_ms, &a);
    if (rc != 0) return rc;
    if (a.status == 404) return 0;
    if (a.status != 200) return ST_EPROTO;
    /* GET /kv answers the value as the body and the version as the ETag. */
    size_t n = a.body_len < cap - 1 ? a.body_len : cap - 1;
    memcpy(buf, a.body, n);
    buf[n] = '\0';
    *version = a.etag_version;
    return 1;
}

static void print_change(bool json, const char *value, uint64_t version, bool mine)
{
    if (json) {
        struct st_membuf b;
        st_membuf_init(&b);
        struct st_json w;
        st_json_init(&w, &b);
        st_json_object_begin(&w);
        st_json_key(&w, "leader");
        if (value) {
            st_json_cstr(&w, value);
            st_json_key(&w, "version");
            st_json_uint(&w, version);
            st_json_key(&w, "me");
            st_json_bool(&w, mine);
        } else {
            st_json_null(&w);
        }
        st_json_object_end(&w);
        if (st_json_finish(&w) == 0 && !b.oom) printf("%.*s\n", (int)b.len, (const char *)b.data);
        st_membuf_free(&b);
    } else if (value) {
        printf("leader %s %" PRIu64 "%s\n", value, version, mine ? " (this process)" : "");
    } else {
        printf("no leader\n");
    }
    fflush(stdout);
}

int cli_elect_run(const struct cli_lock_io *io, const char *name, const char *value,
                  uint64_t ttl_ms, bool json)
{
    if (strlen(name) > LOCK_NAME_BYTES_MAX || (value && strlen(value) > 4096)) {
        fprintf(stderr, "stcache: election name or value too long\n");
        return 2;
    }
    install_signals();
    char key[LOCK_NAME_BYTES_MAX + 16];
    snprintf(key, sizeof key, "elect/%s", name);
    int req_ms = request_ms(ttl_ms);
    uint64_t id = 0, mine = 0;
    int64_t renewed_ms = 0;
    if (value) {
        int rc = session_create(io, "elect", ttl_ms, &id);
        if (rc) return rc;
        renewed_ms = cli_now_ms();
    }
    char cur[4096 + 1];
    uint64_t seen = 0; /* the version of the leader printed last, 0 = none */
    bool seen_none = false;
    int backoff = LOCK_POLL_MS_MIN;
    while (!g_signal) {
        if (value && !mine) {
            uint64_t v = 0;
            int got = try_acquire(io, key, id, value, req_ms, &v);
            if (got == 1) {
                mine = v;
                seen = v;
                seen_none = false;
                print_change(json, value, v, true);
            } else if (got == ST_ENOENT) {
                int rc = session_create(io, "elect", ttl_ms, &id);
                if (rc) return rc;
                renewed_ms = cli_now_ms();
            }
        }
        if (value && cli_now_ms() - renewed_ms >= (int64_t)ttl_ms / 3) {
            enum renew_result r = session_renew(io, id, req_ms);
            if (r == RENEW_OK) renewed_ms = cli_now_ms();
            if (r == RENEW_GONE) {
                if (mine) print_change(json, NULL, 0, false); /* lost it */
                mine = 0;
                seen = 0;
                int rc = session_create(io, "elect", ttl_ms, &id);
                if (rc) return rc;
                renewed_ms = cli_now_ms();
                continue;
            }
        }
        if (!mine) {
            uint64_t v = 0;
            int l = leader_of(io, key, req_ms, cur, sizeof cur, &v);
            if (l == 1 && v != seen) { /* a new holder: its version differs */
                seen = v;
                seen_none = false;
                print_change(json, cur, v, false);
            } else if (l == 0 && !seen_none) {
                seen = 0;
                seen_none = true;
                print_change(json, NULL, 0, false);
            }
        }
        pause_ms(backoff);
        backoff = backoff * 2 > LOCK_POLL_MS_MAX / 4 ? LOCK_POLL_MS_MAX / 4 : backoff * 2;
    }
    if (value) session_end(io, id, req_ms); /* resign: the key goes with the session */
    return 0;
}
