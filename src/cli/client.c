/* Client and admin subcommands of `stcache`: a blocking HTTP/1.1 client with
 * endpoint failover (over cli/transport.h), and the human / --json output of
 * each command.
 * See client.h for the command synopsis, exit codes and failover contract. */
#include "cli/client.h"
#include "cli/lock.h"
#include "cli/backup.h"
#include "cli/transport.h"
#include "cli/watch.h"

#include "http/response.h"
#include "stcache/errors.h"
#include "tls/tls.h"
#include "util/assert.h"
#include "util/json.h"
#include "util/url.h"

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Bounds. */
#define CLI_IDEM_KEY_BYTES_MAX 128 /* the server's bound (node.h NODE_IDEM_KEY_BYTES_MAX) */
#define CLI_STDIN_BYTES_MAX ((size_t)256 * 1024 * 1024) /* a value read with "-" */
#define CLI_TARGET_BYTES_MAX (64 * 1024)                /* request line target */
#define CLI_TIMEOUT_MS_DEFAULT 10000
#define CLI_ENDPOINTS_DEFAULT "127.0.0.1:8001"

/* ------------------------------------------------------------------------ */
/* Command line                                                              */
/* ------------------------------------------------------------------------ */

struct cli {
    struct cli_endpoint endpoints[CLI_ENDPOINTS_MAX];
    size_t endpoints_n;
    bool json;
    int timeout_ms;
    const char *consistency;
    const char *ttl;
    const char *if_match;
    bool if_absent;
    const char *idem_key; /* --idempotency-key, or NULL: a fresh random one per write */
    const char *prefix;   /* get --prefix P */
    bool keys_only;       /* list --keys-only */
    const char *from;     /* watch --from VERSION */
    const char *count;    /* watch --count N */
    const char *args[8];
    size_t args_n;
    /* "Authorization: Bearer TOKEN\r\n" from --token, --token-file or
     * $STCACHE_TOKEN, sent on every request; "" without a token. */
    char auth[CLI_TOKEN_BYTES_MAX + 32];
    /* the last exchange */
    struct cli_buf head;
    struct cli_buf rbuf;
    struct http_response resp;
    size_t endpoint_used;
};

static void usage(FILE *f)
{
    fputs(
        "usage: stcache <command> [args] [--endpoints H:P,H:P,...] [--json] [--timeout S]\n"
        "  get KEY [--consistency linearizable|lease|stale]   print a value\n"
        "  list PREFIX [--keys-only] [--consistency C]  print the keys under PREFIX\n"
        "                                    in byte order, KEY<TAB>VALUE per line (all pages)\n"
        "  get --prefix PREFIX               the same as list PREFIX\n"
        "  watch PREFIX [--from VERSION] [--count N]  print changes under PREFIX as they\n"
        "                                    come: VERSION<TAB>TYPE<TAB>KEY[<TAB>VALUE] (--json:\n"
        "                                    the server's lines); resumes by itself on failover\n"
        "  put KEY VALUE|- [--ttl S] [--if-match VERSION | --if-absent]\n"
        "                                    store a value (\"-\" reads it from stdin)\n"
        "  del KEY                           delete a key\n"
        "  txn [FILE|-]                      a transaction (POST /txn): its JSON from FILE\n"
        "                                    or stdin; prints the answer; exit 1 when the\n"
        "                                    compares failed (docs/HTTP-API.md)\n"
        "  (put and del send an Idempotency-Key, random unless --idempotency-key K:\n"
        "   a retry, on any endpoint, applies the write at most once)\n"
        "  members                           list the cluster members\n"
        "  add ID RAFT_HOST:PORT HTTP_HOST:PORT  add a node (as a learner)\n"
        "  remove ID                         remove a member\n"
        "  transfer ID                       transfer leadership to ID\n"
        "  compact                           snapshot and compact the answering node's log now\n"
        "                                    (old name: snapshot)\n"
        "  snapshot save FILE                back up the cluster's state into FILE\n"
        "  snapshot inspect FILE             check a backup file offline: meta, keys, checksum\n"
        "  snapshot restore FILE --data DIR --id N --peers ID=RAFT/HTTP,...\n"
        "                  [--cluster-id HEX]  build DIR for member N of a new cluster (offline)\n"
        "  status                            show every endpoint's view of the cluster\n"
        "  user add NAME ROLE [PREFIX...]    a user (admin|readwrite|readonly, optionally\n"
        "                                    limited to key prefixes); prints its token once\n"
        "  user remove NAME | user list      remove / list users\n"
        "  user passwd NAME                  a new token for NAME (the old one stops working)\n"
        "  role grant USER ROLE [PREFIX]     set USER's role, and add a key prefix\n"
        "  role revoke USER PREFIX           remove a key prefix from USER\n"
        "  role list                         the roles\n"
        "  lock NAME [--ttl MS] -- COMMAND...  run COMMAND holding lock NAME (key\n"
        "                                    locks/NAME) with STCACHE_LOCK_TOKEN, its fencing\n"
        "                                    token; exits with COMMAND's status, 5 if the\n"
        "                                    lock was lost (COMMAND got SIGTERM)\n"
        "  elect NAME VALUE [--ttl MS]       campaign (key elect/NAME), print every change:\n"
        "                                    leader VALUE VERSION; resign on SIGINT/SIGTERM\n"
        "  elect NAME --observe              print the leadership changes only\n"
        "  --token TOKEN | --token-file FILE the credential (env STCACHE_TOKEN), sent as\n"
        "                                    Authorization: Bearer on every request\n"
        "  server ...                        run a node (see `stcache server --help`)\n"
        "endpoints default to $STCACHE_ENDPOINTS, else " CLI_ENDPOINTS_DEFAULT ".\n"
        "HTTPS: https://H:P endpoints, or any endpoint once one of these is given:\n"
        "  --cacert FILE  the CA to verify the servers with ($STCACHE_CACERT;\n"
        "                 default: the system's CAs)\n"
        "  --cert FILE --key FILE  a client certificate and its key, for servers\n"
        "                 with --client-cert-auth ($STCACHE_CERT, $STCACHE_KEY)\n"
        "exit: 0 ok, 1 not found or condition failed, 2 usage, 3 unavailable,\n"
        "      4 rejected by the server\n",
        f);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("stcache: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\n(run `stcache help` for the usage)\n", stderr);
    va_end(ap);
    return CLI_EXIT_USAGE;
}

/* ---- JSON output helpers ---- */

/* Writes s[0..len) as a JSON string (util/json.h escaping) to f. */
static void json_put_string(FILE *f, const uint8_t *s, size_t len)
{
    struct st_membuf b;
    struct st_json w;
    st_membuf_init(&b);
    st_json_init(&w, &b);
    st_json_string(&w, s, len);
    if (st_json_finish(&w) == 0)
        fwrite(b.data, 1, b.len, f);
    else
        fputs("\"\"", f);
    st_membuf_free(&b);
}

static void json_put_base64(FILE *f, const uint8_t *s, size_t len)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    fputc('"', f);
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < len) v |= (uint32_t)s[i + 1] << 8;
        if (i + 2 < len) v |= s[i + 2];
        fputc(tbl[v >> 18 & 63], f);
        fputc(tbl[v >> 12 & 63], f);
        fputc(i + 1 < len ? tbl[v >> 6 & 63] : '=', f);
        fputc(i + 2 < len ? tbl[v & 63] : '=', f);
    }
    fputc('"', f);
}

/* Writes "name":"text" when data is valid UTF-8, else "name_base64":"...". */
static void json_put_field(FILE *f, const char *name, const void *data, size_t len)
{
    if (st_json_utf8_valid(data, len)) {
        fprintf(f, "\"%s\":", name);
        json_put_string(f, data, len);
    } else {
        fprintf(f, "\"%s_base64\":", name);
        json_put_base64(f, data, len);
    }
}

/* ---- talking to the cluster ---- */

/* Copies member key of the JSON object in r's body into dst (unescaped).
 * 0, or an error when the body is no JSON object or has no such member. */
static int body_field(const struct http_response *r, const char *key, char *dst, size_t cap)
{
    struct st_jsonr_span v;
    if (r->body_len == 0 || r->body[0] != '{' || st_jsonr_validate(r->body, r->body_len) != 0 ||
        !st_jsonr_get(st_jsonr_root(r->body, r->body_len), key, &v))
        return ST_EINVAL;
    return st_jsonr_copy(v, dst, cap);
}

/* Returns true when a response says "ask another node": 503 (no leader, or
 * not ready) or an error body whose code is not_leader. */
static bool response_says_move_on(const struct http_response *r)
{
    if (r->status == 503) return true;
    char code[64];
    return r->status >= 400 && body_field(r, "code", code, sizeof code) == 0 &&
           (strcmp(code, "not_leader") == 0 || strcmp(code, "no_leader") == 0 ||
            strcmp(code, "unavailable") == 0);
}

/* Prints why the last response failed, human or JSON. */
static void report_error(struct cli *c, const char *what)
{
    const struct http_response *r = &c->resp;
    char text[512] = "", code[64] = "";
    (void)body_field(r, "error", text, sizeof text);
    if (body_field(r, "code", code, sizeof code) != 0) code[0] = '\0';
    if (text[0] == '\0') {
        size_t len = ST_MIN(r->body_len, sizeof text - 1);
        memcpy(text, r->body, len);
        text[len] = '\0';
        while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
            text[--len] = '\0';
    }
    const struct cli_endpoint *ep = &c->endpoints[c->endpoint_used];
    if (c->json) {
        printf("{\"error\":");
        json_put_string(stdout, (const uint8_t *)text, strlen(text));
        printf(",\"code\":");
        json_put_string(stdout, (const uint8_t *)code, strlen(code));
        printf(",\"status\":%d}\n", r->status);
    }
    fprintf(stderr, "stcache: %s: HTTP %d from %s:%u: %s%s%s%s\n", what, r->status, ep->host,
            (unsigned)ep->port, text[0] ? text : "(no message)", code[0] ? " (" : "", code,
            code[0] ? ")" : "");
}

/* True when the response says the cluster is electing a leader: nothing was
 * applied, and asking again shortly is expected to work. */
static bool response_says_no_leader(const struct http_response *r)
{
    char code[64];
    return r->status == 503 && body_field(r, "code", code, sizeof code) == 0 &&
           strcmp(code, "no_leader") == 0;
}

/* Sends one request to the endpoints in order until one answers with
 * something other than "no leader here". When a whole round fails and some
 * node said no_leader (an election is under way), the round is repeated with
 * a growing pause (CLI_RETRY_PAUSE_MS_MIN..MAX) until c->timeout_ms has passed
 * since the first attempt. Returns 0 with c->resp set (any status),
 * ST_ENOMEM/ST_ETOOBIG for local failures, or ST_EUNAVAILABLE after reporting
 * on stderr why each endpoint failed in the last round. */
#define CLI_RETRY_PAUSE_MS_MIN 25
#define CLI_RETRY_PAUSE_MS_MAX 400
static int cluster_request_round(struct cli *c, const char *method, const char *target,
                                 const char *extra_headers, const void *body, size_t body_len,
                                 int64_t deadline_ms, bool first_round, char (*reasons)[160],
                                 bool *had_503, bool *electing)
{
    for (size_t i = 0; i < c->endpoints_n; i++) {
        const struct cli_endpoint *ep = &c->endpoints[i];
        c->head.len = 0;
        bool v6 = strchr(ep->host, ':') != NULL;
        int rc = cli_buf_printf(
            &c->head,
            "%s %s HTTP/1.1\r\nHost: %s%s%s:%u\r\nUser-Agent: stcache-cli\r\n"
            "Accept: */*\r\nConnection: close\r\nContent-Length: %zu\r\n%s%s\r\n",
            method, target, v6 ? "[" : "", ep->host, v6 ? "]" : "", (unsigned)ep->port, body_len,
            extra_headers ? extra_headers : "", c->auth);
        if (rc != 0) return rc;
        const char *why = "";
        /* --timeout is per endpoint: the first round gives each one all of
         * it (a paused first endpoint must not leave the next one nothing);
         * repeated rounds (an election) stop at the overall deadline. */
        int64_t left_ms = deadline_ms - cli_now_ms();
        int exchange_ms =
            first_round ? c->timeout_ms : (int)ST_MAX(1, ST_MIN((int64_t)c->timeout_ms, left_ms));
        rc = cli_http_exchange(ep, &c->head, body, body_len, exchange_ms, &c->rbuf, &c->resp, &why);
        c->endpoint_used = i;
        if (rc == ST_ENOMEM) return rc;
        if (rc != 0) {
            snprintf(reasons[i], sizeof reasons[i], "%s", why);
            continue;
        }
        if (response_says_move_on(&c->resp)) {
            char text[120] = "";
            size_t len = ST_MIN(c->resp.body_len, sizeof text - 1);
            memcpy(text, c->resp.body, len);
            for (size_t k = 0; k < len; k++) {
                if (text[k] == '\n' || text[k] == '\r') text[k] = ' ';
            }
            snprintf(reasons[i], sizeof reasons[i], "HTTP %d %s", c->resp.status, text);
            *had_503 = true;
            *electing = *electing || response_says_no_leader(&c->resp);
            continue;
        }
        return 0;
    }
    return ST_EUNAVAILABLE;
}

static int cluster_request(struct cli *c, const char *method, const char *target,
                           const char *extra_headers, const void *body, size_t body_len)
{
    char reasons[CLI_ENDPOINTS_MAX][160];
    bool had_503 = false;
    int64_t deadline_ms = cli_now_ms() + c->timeout_ms;
    int pause_ms = CLI_RETRY_PAUSE_MS_MIN;
    for (bool first = true;; first = false) {
        bool electing = false;
        int rc = cluster_request_round(c, method, target, extra_headers, body, body_len,
                                       deadline_ms, first, reasons, &had_503, &electing);
        if (rc != ST_EUNAVAILABLE) return rc;
        if (!electing || cli_now_ms() + pause_ms >= deadline_ms) break;
        poll(NULL, 0, pause_ms); /* a pause before asking again, not a synchronisation */
        pause_ms = ST_MIN(pause_ms * 2, CLI_RETRY_PAUSE_MS_MAX);
    }
    if (c->json) {
        printf("{\"error\":\"no endpoint could serve the request\",\"code\":\"%s\",\"status\":0}\n",
               had_503 ? "no_leader" : "unavailable");
    }
    fprintf(stderr, "stcache: %s %s: no endpoint could serve the request:\n", method, target);
    for (size_t i = 0; i < c->endpoints_n; i++) {
        fprintf(stderr, "  %s:%u: %s\n", c->endpoints[i].host, (unsigned)c->endpoints[i].port,
                reasons[i]);
    }
    return ST_EUNAVAILABLE;
}

static int exit_for_local_error(int rc)
{
    if (rc == ST_EUNAVAILABLE) return CLI_EXIT_UNAVAILABLE;
    fprintf(stderr, "stcache: %s\n", st_strerror(rc));
    return CLI_EXIT_UNAVAILABLE;
}

/* Builds "/kv/<encoded key>" plus an optional query into *out (heap). */
static int kv_target(const char *key, const char *query, char **out)
{
    size_t klen = strlen(key);
    size_t enc = st_url_encoded_len(key, klen);
    size_t cap = 4 + enc + (query ? strlen(query) : 0) + 1;
    if (cap > CLI_TARGET_BYTES_MAX) return ST_ETOOBIG;
    char *t = malloc(cap);
    if (!t) return ST_ENOMEM;
    memcpy(t, "/kv/", 4);
    int rc = st_url_encode(key, klen, t + 4, cap - 4, NULL);
    ST_ASSERT(rc == 0);
    if (query) strcat(t, query);
    *out = t;
    return 0;
}

static int64_t body_version(const struct http_response *r)
{
    struct st_jsonr_span v;
    int64_t version = -1;
    if (r->body_len > 0 && st_jsonr_validate(r->body, r->body_len) == 0 &&
        st_jsonr_get(st_jsonr_root(r->body, r->body_len), "version", &v) &&
        st_jsonr_int(v, &version) != 0)
        version = -1;
    return version;
}

static int cmd_get(struct cli *c)
{
    if (c->args_n != 1) return usage_error("get takes exactly one KEY");
    const char *cons = c->consistency;
    if (cons && strcmp(cons, "linearizable") != 0 && strcmp(cons, "lease") != 0 &&
        strcmp(cons, "stale") != 0)
        return usage_error("--consistency must be linearizable, lease or stale");
    char query[64] = "";
    if (cons) snprintf(query, sizeof query, "?consistency=%s", cons);
    char *target;
    int rc = kv_target(c->args[0], query, &target);
    if (rc == ST_ETOOBIG) return usage_error("key too long");
    if (rc != 0) return exit_for_local_error(rc);
    rc = cluster_request(c, "GET", target, NULL, NULL, 0);
    free(target);
    if (rc != 0) return exit_for_local_error(rc);
    const struct http_response *r = &c->resp;
    if (r->status == 404) {
        if (c->json) {
            printf("{");
            json_put_field(stdout, "key", c->args[0], strlen(c->args[0]));
            printf(",\"found\":false}\n");
        }
        fprintf(stderr, "stcache: not found: %s\n", c->args[0]);
        return CLI_EXIT_FAILED;
    }
    if (r->status != 200) {
        report_error(c, "get");
        return CLI_EXIT_REJECTED;
    }
    if (c->json) {
        printf("{");
        json_put_field(stdout, "key", c->args[0], strlen(c->args[0]));
        printf(",\"found\":true,\"version\":%s,", r->has_etag && r->etag[0] ? r->etag : "null");
        json_put_field(stdout, "value", r->body, r->body_len);
        printf("}\n");
    } else if (r->body_len > 0 && fwrite(r->body, 1, r->body_len, stdout) != r->body_len) {
        fprintf(stderr, "stcache: writing the value: %s\n", strerror(errno));
        return CLI_EXIT_UNAVAILABLE;
    }
    return CLI_EXIT_OK;
}

static int read_stdin(struct cli_buf *b)
{
    for (;;) {
        int rc = cli_buf_reserve(b, 64 * 1024, CLI_STDIN_BYTES_MAX);
        if (rc != 0) return rc;
        size_t n = fread(b->data + b->len, 1, b->cap - b->len - 1, stdin);
        b->len += n;
        if (n == 0) {
            if (ferror(stdin)) return ST_EIO;
            return 0;
        }
    }
}

static bool all_digits(const char *s)
{
    if (!*s) return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return false;
    }
    return true;
}

/* Appends "Idempotency-Key: K\r\n" to headers (cap bytes): the user's key,
 * or 128 random bits in hex. Every endpoint cluster_request() tries gets the
 * same key, so a write retried after a timeout or a lost leadership is
 * applied once (docs/HTTP-API.md). */
static int idem_header(const struct cli *c, char *headers, size_t cap)
{
    char key[CLI_IDEM_KEY_BYTES_MAX + 1];
    if (c->idem_key) {
        size_t len = strlen(c->idem_key);
        if (len == 0 || len > CLI_IDEM_KEY_BYTES_MAX) return -1;
        for (size_t i = 0; i < len; i++)
            if (c->idem_key[i] <= 0x20 || c->idem_key[i] >= 0x7f) return -1;
        memcpy(key, c->idem_key, len + 1);
    } else {
        uint8_t rnd[16];
        if (getentropy(rnd, sizeof rnd) != 0) {
            /* No entropy source: time and pid, unique enough for one client. */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            uint64_t a = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
            uint64_t b = (uint64_t)getpid() * 0x9e3779b97f4a7c15ULL ^ (uint64_t)clock();
            memcpy(rnd, &a, 8);
            memcpy(rnd + 8, &b, 8);
        }
        for (size_t i = 0; i < sizeof rnd; i++)
            snprintf(key + 2 * i, 3, "%02x", rnd[i]);
    }
    size_t used = strlen(headers);
    int n = snprintf(headers + used, cap - used, "Idempotency-Key: %s\r\n", key);
    return n > 0 && (size_t)n < cap - used ? 0 : -1;
}

static int cmd_put(struct cli *c)
{
    if (c->args_n != 2) return usage_error("put takes KEY and VALUE (\"-\" for stdin)");
    if (c->if_match && c->if_absent)
        return usage_error("--if-match and --if-absent exclude each other");
    if (c->ttl && !all_digits(c->ttl)) return usage_error("--ttl takes a whole number of seconds");
    char headers[128 + CLI_IDEM_KEY_BYTES_MAX + 32] = "";
    if (c->if_match) {
        char v[64];
        size_t len = strlen(c->if_match);
        const char *s = c->if_match;
        if (len >= 2 && s[0] == '"' && s[len - 1] == '"') {
            s++;
            len -= 2;
        }
        if (len == 0 || len >= sizeof v) return usage_error("--if-match takes a version number");
        memcpy(v, s, len);
        v[len] = '\0';
        if (!all_digits(v)) return usage_error("--if-match takes a version number");
        snprintf(headers, sizeof headers, "If-Match: \"%s\"\r\n", v);
    } else if (c->if_absent) {
        snprintf(headers, sizeof headers, "If-None-Match: *\r\n");
    }
    if (idem_header(c, headers, sizeof headers) != 0)
        return usage_error("--idempotency-key takes 1 to 128 visible ASCII characters");
    char query[64] = "";
    if (c->ttl) snprintf(query, sizeof query, "?ttl=%s", c->ttl);

    struct cli_buf value = {0};
    const void *body = c->args[1];
    size_t body_len = strlen(c->args[1]);
    int rc;
    if (strcmp(c->args[1], "-") == 0) {
        rc = read_stdin(&value);
        if (rc != 0) {
            fprintf(stderr, "stcache: reading the value from stdin: %s\n", st_strerror(rc));
            cli_buf_free(&value);
            return CLI_EXIT_USAGE;
        }
        body = value.data ? value.data : "";
        body_len = value.len;
    }
    char *target;
    rc = kv_target(c->args[0], query, &target);
    if (rc != 0) {
        cli_buf_free(&value);
        return rc == ST_ETOOBIG ? usage_error("key too long") : exit_for_local_error(rc);
    }
    rc = cluster_request(c, "PUT", target, headers, body, body_len);
    free(target);
    cli_buf_free(&value);
    if (rc != 0) return exit_for_local_error(rc);
    const struct http_response *r = &c->resp;
    if (r->status == 412) {
        report_error(c, "put: condition failed");
        return CLI_EXIT_FAILED;
    }
    if (r->status != 200 && r->status != 201 && r->status != 204) {
        report_error(c, "put");
        return CLI_EXIT_REJECTED;
    }
    int64_t version = body_version(r);
    if (version < 0 && r->has_etag && all_digits(r->etag)) version = strtoll(r->etag, NULL, 10);
    if (c->json)
        printf("{\"ok\":true,\"version\":%" PRId64 "}\n", version);
    else if (version >= 0)
        printf("OK version %" PRId64 "\n", version);
    else
        printf("OK\n");
    return CLI_EXIT_OK;
}

/* stcache txn [FILE|-]: the body is sent as is; the server validates it.
 * Not retried on another endpoint once an answer came (a transaction has
 * no idempotency key). */
static int cmd_txn(struct cli *c)
{
    if (c->args_n > 1) return usage_error("txn takes one FILE (or - or nothing: stdin)");
    struct cli_buf body = {0};
    int rc;
    if (c->args_n == 0 || strcmp(c->args[0], "-") == 0) {
        rc = read_stdin(&body);
    } else {
        FILE *f = fopen(c->args[0], "rb");
        if (!f) {
            fprintf(stderr, "stcache: %s: %s\n", c->args[0], strerror(errno));
            return CLI_EXIT_USAGE;
        }
        FILE *saved = stdin;
        stdin = f;
        rc = read_stdin(&body);
        stdin = saved;
        fclose(f);
    }
    if (rc != 0) {
        fprintf(stderr, "stcache: reading the transaction: %s\n", st_strerror(rc));
        cli_buf_free(&body);
        return CLI_EXIT_USAGE;
    }
    rc = cluster_request(c, "POST", "/txn", "Content-Type: application/json\r\n",
                         body.data ? body.data : "", body.len);
    cli_buf_free(&body);
    if (rc != 0) return exit_for_local_error(rc);
    const struct http_response *r = &c->resp;
    if (r->status != 200) {
        report_error(c, "txn");
        return CLI_EXIT_REJECTED;
    }
    if (r->body_len > 0 && fwrite(r->body, 1, r->body_len, stdout) != r->body_len) {
        fprintf(stderr, "stcache: writing the answer: %s\n", strerror(errno));
        return CLI_EXIT_UNAVAILABLE;
    }
    struct st_jsonr_span v;
    bool ok = false;
    if (st_jsonr_validate(r->body, r->body_len) == 0 &&
        st_jsonr_get(st_jsonr_root(r->body, r->body_len), "succeeded", &v))
        (void)st_jsonr_bool(v, &ok);
    return ok ? CLI_EXIT_OK : CLI_EXIT_FAILED;
}

static int cmd_del(struct cli *c)
{
    if (c->args_n != 1) return usage_error("del takes exactly one KEY");
    char headers[CLI_IDEM_KEY_BYTES_MAX + 32] = "";
    if (idem_header(c, headers, sizeof headers) != 0)
        return usage_error("--idempotency-key takes 1 to 128 visible ASCII characters");
    char *target;
    int rc = kv_target(c->args[0], NULL, &target);
    if (rc != 0) return rc == ST_ETOOBIG ? usage_error("key too long") : exit_for_local_error(rc);
    rc = cluster_request(c, "DELETE", target, headers, NULL, 0);
    free(target);
    if (rc != 0) return exit_for_local_error(rc);
    const struct http_response *r = &c->resp;
    if (r->status == 404) {
        if (c->json) printf("{\"ok\":false,\"found\":false}\n");
        fprintf(stderr, "stcache: not found: %s\n", c->args[0]);
        return CLI_EXIT_FAILED;
    }
    if (r->status != 200 && r->status != 204) {
        report_error(c, "del");
        return CLI_EXIT_REJECTED;
    }
    if (c->json)
        printf("{\"ok\":true}\n");
    else
        printf("deleted\n");
    return CLI_EXIT_OK;
}

/* Copies member field name of object obj into dst as text ("-" when absent). */
static void field_text(struct st_jsonr_span obj, const char *name, char *dst, size_t cap)
{
    struct st_jsonr_span v;
    if (!st_jsonr_get(obj, name, &v) || st_jsonr_copy(v, dst, cap) != 0) snprintf(dst, cap, "-");
}

/* The root of r's body when it is a JSON object. */
static bool body_object(const struct http_response *r, struct st_jsonr_span *out)
{
    if (st_jsonr_validate(r->body, r->body_len) != 0) return false;
    *out = st_jsonr_root(r->body, r->body_len);
    return st_jsonr_type(*out) == ST_JSONR_OBJECT;
}

static int print_members(struct cli *c)
{
    const struct http_response *r = &c->resp;
    struct st_jsonr_span doc, members, m;
    if (!body_object(r, &doc)) {
        fprintf(stderr, "stcache: members: the server's /cluster answer is not a JSON object\n");
        return CLI_EXIT_REJECTED;
    }
    char leader[32];
    field_text(doc, "leader", leader, sizeof leader);
    if (!st_jsonr_get(doc, "members", &members) || st_jsonr_type(members) != ST_JSONR_ARRAY) {
        fprintf(stderr, "stcache: members: no members array in the server's answer\n");
        return CLI_EXIT_REJECTED;
    }
    printf("%-6s %-24s %-24s %s\n", "ID", "RAFT", "HTTP", "ROLE");
    size_t cursor = 0;
    while (st_jsonr_array_next(members, &cursor, &m)) {
        char id[32], raft[128], http[128], voter[16];
        field_text(m, "id", id, sizeof id);
        field_text(m, "raft", raft, sizeof raft);
        field_text(m, "http", http, sizeof http);
        field_text(m, "voter", voter, sizeof voter);
        printf("%-6s %-24s %-24s %s%s\n", id, raft, http,
               strcmp(voter, "true") == 0 ? "voter" : "learner",
               strcmp(id, leader) == 0 ? " (leader)" : "");
    }
    return CLI_EXIT_OK;
}

static int cmd_members(struct cli *c)
{
    if (c->args_n != 0) return usage_error("members takes no arguments");
    int rc = cluster_request(c, "GET", "/cluster", NULL, NULL, 0);
    if (rc != 0) return exit_for_local_error(rc);
    if (c->resp.status != 200) {
        report_error(c, "members");
        return CLI_EXIT_REJECTED;
    }
    if (c->json) {
        fwrite(c->resp.body, 1, c->resp.body_len, stdout);
        if (c->resp.body_len == 0 || c->resp.body[c->resp.body_len - 1] != '\n')
            fputc('\n', stdout);
        return CLI_EXIT_OK;
    }
    return print_members(c);
}

/* Admin commands whose answer is only success or an error. */
static int admin_simple(struct cli *c, const char *what, const char *method, const char *target,
                        const char *body, const char *done_text)
{
    /* Every POST carries a JSON Content-Type, with or without a body: the
     * server refuses others (415, docs/HTTP-API.md). */
    int rc = cluster_request(
        c, method, target,
        body || strcmp(method, "POST") == 0 ? "Content-Type: application/json\r\n" : NULL, body,
        body ? strlen(body) : 0);
    if (rc != 0) return exit_for_local_error(rc);
    const struct http_response *r = &c->resp;
    if (r->status == 404) {
        report_error(c, what);
        return CLI_EXIT_FAILED;
    }
    if (r->status < 200 || r->status > 299) {
        report_error(c, what);
        return CLI_EXIT_REJECTED;
    }
    if (c->json) {
        if (r->body_len > 0 && r->body[0] == '{') {
            fwrite(r->body, 1, r->body_len, stdout);
            if (r->body[r->body_len - 1] != '\n') fputc('\n', stdout);
        } else {
            printf("{\"ok\":true}\n");
        }
    } else {
        const struct cli_endpoint *ep = &c->endpoints[c->endpoint_used];
        printf("%s (via %s:%u)\n", done_text, ep->host, (unsigned)ep->port);
    }
    return CLI_EXIT_OK;
}

static int parse_id(const char *s, uint64_t *out)
{
    if (!all_digits(s) || strlen(s) > 19) return ST_EINVAL;
    *out = strtoull(s, NULL, 10);
    return *out == 0 ? ST_EINVAL : 0;
}

static int cmd_remove(struct cli *c)
{
    uint64_t id;
    if (c->args_n != 1 || parse_id(c->args[0], &id) != 0)
        return usage_error("remove takes one node ID (a positive number)");
    char target[64], done[64];
    snprintf(target, sizeof target, "/cluster/members/%" PRIu64, id);
    snprintf(done, sizeof done, "removed node %" PRIu64, id);
    return admin_simple(c, "remove", "DELETE", target, NULL, done);
}

static int cmd_add(struct cli *c)
{
    uint64_t id;
    if (c->args_n != 3 || parse_id(c->args[0], &id) != 0)
        return usage_error("add takes ID RAFT_HOST:PORT HTTP_HOST:PORT");
    struct cli_endpoint check;
    size_t n;
    if (cli_endpoints_parse(c->args[1], &check, 1, &n) != 0 ||
        cli_endpoints_parse(c->args[2], &check, 1, &n) != 0)
        return usage_error("add: addresses must be HOST:PORT");
    char body[600], done[64];
    snprintf(body, sizeof body, "{\"id\":%" PRIu64 ",\"raft\":\"%s\",\"http\":\"%s\"}", id,
             c->args[1], c->args[2]);
    snprintf(done, sizeof done, "added node %" PRIu64 " as a learner", id);
    return admin_simple(c, "add", "POST", "/cluster/members", body, done);
}

/* ---- users and roles (docs/CLI.md) ---- */

/* A JSON string of s into a heap buffer appended to *out (open_memstream). */
static void json_text(FILE *f, const char *s)
{
    json_put_string(f, (const uint8_t *)s, strlen(s));
}

/* Prints the answer of a user change: the token (user add, user passwd)
 * alone on a line, or the JSON body with --json. */
static int user_answer(struct cli *c, const char *what, const char *done)
{
    const struct http_response *r = &c->resp;
    if (r->status < 200 || r->status > 299) {
        report_error(c, what);
        return r->status == 404 || r->status == 409 ? CLI_EXIT_FAILED : CLI_EXIT_REJECTED;
    }
    char token[CLI_TOKEN_BYTES_MAX];
    if (c->json) {
        fwrite(r->body, 1, r->body_len, stdout);
        if (r->body_len == 0 || r->body[r->body_len - 1] != '\n') fputc('\n', stdout);
    } else if (body_field(r, "token", token, sizeof token) == 0) {
        printf("%s\n", token);
    } else if (done) {
        printf("%s\n", done);
    } else {
        fwrite(r->body, 1, r->body_len, stdout);
    }
    return CLI_EXIT_OK;
}

static int user_request(struct cli *c, const char *what, const char *method, const char *target,
                        char *body, size_t body_len, const char *done)
{
    int rc =
        cluster_request(c, method, target, "Content-Type: application/json\r\n", body, body_len);
    free(body);
    if (rc != 0) return exit_for_local_error(rc);
    return user_answer(c, what, done);
}

static int cmd_user(struct cli *c)
{
    const char *sub = c->args_n ? c->args[0] : "";
    char *body = NULL, target[256];
    size_t len = 0;
    if (strcmp(sub, "list") == 0 && c->args_n == 1)
        return user_request(c, "user list", "GET", "/auth/users", NULL, 0, NULL);
    if (c->args_n < 2 || strlen(c->args[1]) > 64)
        return usage_error("user add NAME ROLE [PREFIX...] | remove NAME | list | passwd NAME");
    const char *name = c->args[1];
    /* Names are [A-Za-z0-9_-]: safe in a path as they are (the server checks). */
    if (strcmp(sub, "add") == 0 && c->args_n >= 3) {
        FILE *f = open_memstream(&body, &len);
        if (!f) return exit_for_local_error(ST_ENOMEM);
        fputs("{\"name\":", f);
        json_text(f, name);
        fputs(",\"role\":", f);
        json_text(f, c->args[2]);
        fputs(",\"prefixes\":[", f);
        for (size_t i = 3; i < c->args_n; i++) {
            if (i > 3) fputc(',', f);
            json_text(f, c->args[i]);
        }
        fputs("]}", f);
        fclose(f);
        return user_request(c, "user add", "POST", "/auth/users", body, len, NULL);
    }
    snprintf(target, sizeof target, "/auth/users/%s", name);
    if (strcmp(sub, "remove") == 0 && c->args_n == 2)
        return user_request(c, "user remove", "DELETE", target, NULL, 0, "removed");
    if (strcmp(sub, "passwd") == 0 && c->args_n == 2) {
        snprintf(target, sizeof target, "/auth/users/%s/token", name);
        return user_request(c, "user passwd", "POST", target, NULL, 0, NULL);
    }
    return usage_error("user add NAME ROLE [PREFIX...] | remove NAME | list | passwd NAME");
}

static int cmd_role(struct cli *c)
{
    const char *sub = c->args_n ? c->args[0] : "";
    if (strcmp(sub, "list") == 0 && c->args_n == 1)
        return user_request(c, "role list", "GET", "/auth/roles", NULL, 0, NULL);
    bool grant = strcmp(sub, "grant") == 0 && (c->args_n == 3 || c->args_n == 4);
    bool revoke = strcmp(sub, "revoke") == 0 && c->args_n == 3;
    if ((!grant && !revoke) || strlen(c->args[1]) > 64)
        return usage_error("role grant USER ROLE [PREFIX] | revoke USER PREFIX | list");
    char *body = NULL, target[256];
    size_t len = 0;
    FILE *f = open_memstream(&body, &len);
    if (!f) return exit_for_local_error(ST_ENOMEM);
    fputc('{', f);
    if (grant) {
        fputs("\"role\":", f);
        json_text(f, c->args[2]);
    }
    if (revoke || c->args_n == 4) {
        fputs(grant ? ",\"prefix\":" : "\"prefix\":", f);
        json_text(f, c->args[grant ? 3 : 2]);
    }
    fputc('}', f);
    fclose(f);
    snprintf(target, sizeof target, "/auth/users/%s/%s", c->args[1], grant ? "grant" : "revoke");
    return user_request(c, grant ? "role grant" : "role revoke", "POST", target, body, len,
                        grant ? "granted" : "revoked");
}

/* The Authorization header of c from --token, --token-file or
 * $STCACHE_TOKEN (in that order). 0, or a usage error already reported. */
static int auth_setup(struct cli *c, const char *token, const char *token_file)
{
    char buf[CLI_TOKEN_BYTES_MAX + 2];
    c->auth[0] = '\0';
    if (!token && token_file) {
        FILE *f = fopen(token_file, "r");
        if (!f) {
            fprintf(stderr, "stcache: --token-file %s: %s\n", token_file, strerror(errno));
            return CLI_EXIT_USAGE;
        }
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
            n--;
        buf[n] = '\0';
        token = buf;
    }
    if (!token) token = getenv("STCACHE_TOKEN");
    if (!token || !*token) return 0;
    if (strlen(token) > CLI_TOKEN_BYTES_MAX || strpbrk(token, "\r\n \t"))
        return usage_error("a token is one word of at most %d characters", CLI_TOKEN_BYTES_MAX);
    snprintf(c->auth, sizeof c->auth, "Authorization: Bearer %s\r\n", token);
    memset(buf, 0, sizeof buf);
    return 0;
}

static int cmd_transfer(struct cli *c)
{
    uint64_t id;
    if (c->args_n != 1 || parse_id(c->args[0], &id) != 0)
        return usage_error("transfer takes one node ID (a positive number)");
    char target[64], done[64];
    snprintf(target, sizeof target, "/cluster/transfer?to=%" PRIu64, id);
    snprintf(done, sizeof done, "leadership transferred to node %" PRIu64, id);
    return admin_simple(c, "transfer", "POST", target, NULL, done);
}

/* `compact` (and `snapshot` without a sub-verb, its old name): snapshot and
 * compact the answering node's log now. `snapshot save|inspect FILE`:
 * backups (cli/backup.h). */
static int cmd_snapshot(struct cli *c, bool compact)
{
    if (compact || c->args_n == 0) {
        if (c->args_n != 0) return usage_error("compact takes no arguments");
        return admin_simple(c, "compact", "POST", "/snapshot", NULL, "snapshot taken");
    }
    if (c->args_n == 2 && strcmp(c->args[0], "save") == 0)
        return cli_backup_save(c->endpoints, c->endpoints_n, c->timeout_ms, c->args[1], c->json,
                               c->auth);
    if (c->args_n == 2 && strcmp(c->args[0], "inspect") == 0)
        return cli_backup_inspect(c->args[1], c->json);
    return usage_error("snapshot takes save FILE or inspect FILE (or nothing: compact)");
}

/* status: asks every endpoint (no failover) for /cluster and /health. Exit 0
 * when at least one endpoint answered, 3 when none did. */
static int cmd_status(struct cli *c)
{
    if (c->args_n != 0) return usage_error("status takes no arguments");
    size_t answered = 0;
    struct cli_endpoint *all = c->endpoints;
    size_t all_n = c->endpoints_n;
    if (c->json)
        printf("[");
    else
        printf("%-22s %-5s %-10s %-6s %-7s %-8s %-8s %s\n", "ENDPOINT", "ID", "ROLE", "TERM",
               "LEADER", "COMMIT", "APPLIED", "HEALTH");
    for (size_t i = 0; i < all_n; i++) {
        struct cli_endpoint *ep = &all[i];
        char name[CLI_HOST_BYTES_MAX + 8];
        snprintf(name, sizeof name, "%s:%u", ep->host, (unsigned)ep->port);
        /* Health first, then /cluster (whose body we keep). */
        c->head.len = 0;
        int health = 0;
        const char *why = "";
        if (cli_buf_printf(&c->head,
                           "GET /health HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                           name) != 0)
            return exit_for_local_error(ST_ENOMEM);
        if (cli_http_exchange(ep, &c->head, NULL, 0, c->timeout_ms, &c->rbuf, &c->resp, &why) == 0)
            health = c->resp.status;
        c->head.len = 0;
        if (cli_buf_printf(&c->head,
                           "GET /cluster HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                           name) != 0)
            return exit_for_local_error(ST_ENOMEM);
        int rc = cli_http_exchange(ep, &c->head, NULL, 0, c->timeout_ms, &c->rbuf, &c->resp, &why);
        struct st_jsonr_span doc;
        bool ok = rc == 0 && c->resp.status == 200 && body_object(&c->resp, &doc);
        if (ok) answered++;
        if (c->json) {
            printf("%s{\"endpoint\":", i ? "," : "");
            json_put_string(stdout, (const uint8_t *)name, strlen(name));
            printf(",\"health\":%d,\"cluster\":", health);
            if (ok)
                fwrite(c->resp.body, 1, c->resp.body_len, stdout);
            else
                printf("null,\"error\":\"%s\"", rc != 0 ? "unreachable" : "bad answer");
            printf("}");
            continue;
        }
        if (!ok) {
            printf("%-22s unreachable (%s)\n", name,
                   rc != 0 ? why : "the /cluster answer is not a JSON object");
            continue;
        }
        char id[32], role[32], term[32], leader[32], commit[32], applied[32];
        field_text(doc, "id", id, sizeof id);
        field_text(doc, "role", role, sizeof role);
        field_text(doc, "term", term, sizeof term);
        field_text(doc, "leader", leader, sizeof leader);
        field_text(doc, "commit", commit, sizeof commit);
        field_text(doc, "applied", applied, sizeof applied);
        printf("%-22s %-5s %-10s %-6s %-7s %-8s %-8s %s\n", name, id, role, term,
               strcmp(leader, "null") == 0 ? "none" : leader, commit, applied,
               health == 200 ? "ok"
               : health == 0 ? "?"
                             : "not-ready");
    }
    if (c->json) printf("]\n");
    return answered > 0 ? CLI_EXIT_OK : CLI_EXIT_UNAVAILABLE;
}

/* ---- argument parsing ---- */

/* Matches "--name VALUE" or "--name=VALUE" at argv[*i]; advances *i. Returns
 * 1 on a match, 0 on no match, -1 when the value is missing. */
/* The CLI's page size for list: the server's default. */
#define CLI_LIST_PAGE_KEYS 1000

/* Prints one listed item: KEY<TAB>VALUE (or KEY) with its strings
 * unescaped; a non-UTF-8 key or value prints as base64:TEXT. */
static void list_print_item(struct st_jsonr_span item, bool keys_only, char *tmp, size_t cap)
{
    static const char *const names[2][2] = {{"key", "key_base64"}, {"value", "value_base64"}};
    for (int f = 0; f < (keys_only ? 1 : 2); f++) {
        struct st_jsonr_span v;
        if (f) fputc('\t', stdout);
        if (st_jsonr_get(item, names[f][0], &v) && st_jsonr_copy(v, tmp, cap) == 0) {
            fputs(tmp, stdout);
        } else if (st_jsonr_get(item, names[f][1], &v) && st_jsonr_copy(v, tmp, cap) == 0) {
            fputs("base64:", stdout);
            fputs(tmp, stdout);
        }
    }
    fputc('\n', stdout);
}

/* list PREFIX / get --prefix PREFIX: every page of GET /kv?prefix=, in key
 * order. --json prints one object {"count":N,"index":I,"kvs":[...]} with
 * the server's items as they are (I: the last page's index; each page is
 * consistent at its own index). */
static int cmd_list(struct cli *c, const char *prefix)
{
    const char *cons = c->consistency;
    if (cons && strcmp(cons, "linearizable") != 0 && strcmp(cons, "lease") != 0 &&
        strcmp(cons, "stale") != 0)
        return usage_error("--consistency must be linearizable, lease or stale");
    size_t plen = strlen(prefix);
    if (plen == 0) return usage_error("list needs a non-empty PREFIX");
    size_t enc = st_url_encoded_len(prefix, plen);
    char *target = NULL, *next = NULL, *tmp = NULL;
    uint64_t total = 0, index = 0;
    int ret = CLI_EXIT_OK;
    if (c->json) fputs("{\"kvs\":[", stdout);
    for (;;) {
        size_t cap = 64 + enc + (next ? strlen(next) : 0) + 64;
        if (cap > CLI_TARGET_BYTES_MAX) {
            ret = usage_error("prefix too long");
            break;
        }
        free(target);
        target = malloc(cap);
        if (!target) {
            ret = exit_for_local_error(ST_ENOMEM);
            break;
        }
        /* next is the server's hex token: no escaping needed */
        int n = snprintf(target, cap, "/kv?limit=%d%s%s%s%s%s&prefix=", CLI_LIST_PAGE_KEYS,
                         c->keys_only ? "&keys_only=1" : "", cons ? "&consistency=" : "",
                         cons ? cons : "", next ? "&next=" : "", next ? next : "");
        int rc = st_url_encode(prefix, plen, target + n, cap - (size_t)n, NULL);
        ST_ASSERT(rc == 0);
        rc = cluster_request(c, "GET", target, NULL, NULL, 0);
        if (rc != 0) {
            ret = exit_for_local_error(rc);
            break;
        }
        const struct http_response *r = &c->resp;
        struct st_jsonr_span root, kvs, item, v;
        bool more = false;
        if (r->status != 200 || st_jsonr_validate(r->body, r->body_len) != 0 ||
            !st_jsonr_get(root = st_jsonr_root(r->body, r->body_len), "kvs", &kvs)) {
            report_error(c, "list");
            ret = CLI_EXIT_REJECTED;
            break;
        }
        if (st_jsonr_get(root, "index", &v)) (void)st_jsonr_uint(v, &index);
        if (st_jsonr_get(root, "more", &v)) (void)st_jsonr_bool(v, &more);
        free(tmp);
        tmp = malloc(r->body_len + 1);
        if (!tmp) {
            ret = exit_for_local_error(ST_ENOMEM);
            break;
        }
        size_t cur = 0;
        while (st_jsonr_array_next(kvs, &cur, &item)) {
            if (c->json) {
                if (total > 0) fputc(',', stdout);
                fwrite(item.p, 1, item.len, stdout);
            } else {
                list_print_item(item, c->keys_only, tmp, r->body_len + 1);
            }
            total++;
        }
        free(next);
        next = NULL;
        if (!more) break;
        if (!st_jsonr_get(root, "next", &v) || st_jsonr_copy(v, tmp, r->body_len + 1) != 0 ||
            !(next = strdup(tmp))) {
            report_error(c, "list");
            ret = CLI_EXIT_REJECTED;
            break;
        }
    }
    if (c->json && ret == CLI_EXIT_OK)
        printf("],\"count\":%" PRIu64 ",\"index\":%" PRIu64 "}\n", total, index);
    else if (c->json)
        fputs("]}\n", stdout);
    free(target);
    free(next);
    free(tmp);
    return ret;
}

/* `stcache watch PREFIX` (cli/watch.c). */
static int cmd_watch(struct cli *c)
{
    struct cli_watch_opts o = {.endpoints = c->endpoints,
                               .endpoints_n = c->endpoints_n,
                               .prefix = c->args[0],
                               .json = c->json,
                               .timeout_ms = c->timeout_ms};
    char *end = NULL;
    if (c->from) {
        errno = 0;
        o.from = strtoull(c->from, &end, 10);
        if (errno || !*c->from || *end || o.from == 0)
            return usage_error("--from takes a version (a positive integer)");
    }
    if (c->count) {
        errno = 0;
        o.count = strtoull(c->count, &end, 10);
        if (errno || !*c->count || *end || o.count == 0)
            return usage_error("--count takes a positive integer");
    }
    return cli_watch_run(&o);
}

static int opt_value(int argc, char **argv, int *i, const char *name, const char **value)
{
    size_t nl = strlen(name);
    const char *a = argv[*i];
    if (strncmp(a, name, nl) != 0) return 0;
    if (a[nl] == '=') {
        *value = a + nl + 1;
        return 1;
    }
    if (a[nl] != '\0') return 0;
    if (*i + 1 >= argc) return -1;
    *value = argv[++*i];
    return 1;
}

/* HTTPS for every endpoint when one is https:// or a TLS option is set
 * (empty env values count as unset). Returns CLI_EXIT_OK with *out (NULL:
 * plain HTTP), or CLI_EXIT_USAGE after saying why. */
static int cli_tls_setup(struct cli *c, const char *cacert, const char *cert, const char *key,
                         struct st_tls_ctx **out)
{
    *out = NULL;
    if (cacert && !*cacert) cacert = NULL;
    if (cert && !*cert) cert = NULL;
    if (key && !*key) key = NULL;
    bool tls = cacert || cert || key;
    for (size_t i = 0; i < c->endpoints_n; i++)
        tls |= c->endpoints[i].https;
    if (!tls) return CLI_EXIT_OK;
    if (!cert != !key) return usage_error("--cert and --key go together");
    struct st_tls_files f = {cert, key, cacert};
    char reason[ST_TLS_REASON_MAX] = "";
    if (st_tls_ctx_create(ST_TLS_CLIENT, ST_TLS_VERIFY_REQUIRE, &f, out, reason) != 0)
        return usage_error("%s", reason[0] ? reason : "TLS: cannot create a context");
    for (size_t i = 0; i < c->endpoints_n; i++)
        c->endpoints[i].tls = *out;
    return CLI_EXIT_OK;
}

/* cli_lock_io.request (cli/lock.h): a request with failover, within
 * timeout_ms. */
static int lock_request(void *ctx, const char *method, const char *target, const void *body,
                        size_t body_len, int timeout_ms, struct cli_lock_answer *out)
{
    struct cli *c = ctx;
    int saved = c->timeout_ms;
    c->timeout_ms = timeout_ms;
    int rc = cluster_request(
        c, method, target,
        strcmp(method, "POST") == 0 ? "Content-Type: application/json\r\n" : NULL, body, body_len);
    c->timeout_ms = saved;
    if (rc) return rc;
    out->status = c->resp.status;
    out->body = c->resp.body;
    out->body_len = c->resp.body_len;
    out->etag_version =
        c->resp.has_etag && all_digits(c->resp.etag) ? strtoull(c->resp.etag, NULL, 10) : 0;
    return 0;
}

/* lock NAME [--ttl MS] -- COMMAND..., elect NAME VALUE | elect NAME --observe */
static int cmd_lock(struct cli *c, const char *cmd, int run_argc, char **run_argv, bool observe)
{
    uint64_t ttl_ms = CLI_LOCK_TTL_MS_DEFAULT;
    if (c->ttl && (parse_id(c->ttl, &ttl_ms) != 0 || ttl_ms < 1000 || ttl_ms > 3600000))
        return usage_error("--ttl takes milliseconds (1000..3600000) for %s", cmd);
    struct cli_lock_io io = {c, lock_request};
    if (strcmp(cmd, "lock") == 0) {
        if (c->args_n != 1 || run_argc < 1)
            return usage_error("usage: stcache lock NAME [--ttl MS] -- COMMAND...");
        return cli_lock_run(&io, c->args[0], ttl_ms, run_argc, run_argv);
    }
    if (observe ? c->args_n != 1 : c->args_n != 2)
        return usage_error("usage: stcache elect NAME VALUE | stcache elect NAME --observe");
    return cli_elect_run(&io, c->args[0], observe ? NULL : c->args[1], ttl_ms, c->json);
}

int cli_client_main(int argc, char **argv)
{
    struct cli c = {.timeout_ms = CLI_TIMEOUT_MS_DEFAULT};
    int ret = CLI_EXIT_USAGE;
    if (argc < 1 || !argv[0]) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *cmd = argv[0];
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(cmd, "snapshot") == 0 && argc > 1 && strcmp(argv[1], "restore") == 0)
        return cli_backup_restore_main(argc - 1, argv + 1); /* offline, its own flags */
    const char *endpoints = getenv("STCACHE_ENDPOINTS");
    if (!endpoints || !*endpoints) endpoints = CLI_ENDPOINTS_DEFAULT;
    /* lock: everything after "--" is the COMMAND, run as it is */
    int run_argc = 0;
    char **run_argv = NULL;
    bool observe = false;
    if (strcmp(cmd, "lock") == 0) {
        for (int i = 1; i < argc; i++) {
            if (strcmp(argv[i], "--") == 0) {
                run_argv = argv + i + 1;
                run_argc = argc - i - 1;
                argc = i;
                break;
            }
        }
    }
    const char *timeout = NULL, *token = NULL, *token_file = NULL;
    const char *cacert = getenv("STCACHE_CACERT"), *cert = getenv("STCACHE_CERT"),
               *key = getenv("STCACHE_KEY");
    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!options_done && a[0] == '-' && a[1] == '-') {
            const char *v = NULL;
            int m;
            if (strcmp(a, "--") == 0) {
                options_done = true;
                continue;
            }
            if (strcmp(a, "--json") == 0) {
                c.json = true;
                continue;
            }
            if (strcmp(a, "--if-absent") == 0) {
                c.if_absent = true;
                continue;
            }
            if (strcmp(a, "--keys-only") == 0) {
                c.keys_only = true;
                continue;
            }
            if (strcmp(a, "--observe") == 0 && strcmp(cmd, "elect") == 0) {
                observe = true;
                continue;
            }
            if (strcmp(a, "--help") == 0) {
                usage(stdout);
                return CLI_EXIT_OK;
            }
            if ((m = opt_value(argc, argv, &i, "--endpoints", &v)) != 0)
                endpoints = v;
            else if ((m = opt_value(argc, argv, &i, "--timeout", &v)) != 0)
                timeout = v;
            else if ((m = opt_value(argc, argv, &i, "--consistency", &v)) != 0)
                c.consistency = v;
            else if ((m = opt_value(argc, argv, &i, "--ttl", &v)) != 0)
                c.ttl = v;
            else if ((m = opt_value(argc, argv, &i, "--if-match", &v)) != 0)
                c.if_match = v;
            else if ((m = opt_value(argc, argv, &i, "--idempotency-key", &v)) != 0)
                c.idem_key = v;
            else if ((m = opt_value(argc, argv, &i, "--prefix", &v)) != 0)
                c.prefix = v;
            else if ((m = opt_value(argc, argv, &i, "--cacert", &v)) != 0)
                cacert = v;
            else if ((m = opt_value(argc, argv, &i, "--cert", &v)) != 0)
                cert = v;
            else if ((m = opt_value(argc, argv, &i, "--key", &v)) != 0)
                key = v;
            else if ((m = opt_value(argc, argv, &i, "--from", &v)) != 0)
                c.from = v;
            else if ((m = opt_value(argc, argv, &i, "--count", &v)) != 0)
                c.count = v;
            else if ((m = opt_value(argc, argv, &i, "--token-file", &v)) != 0)
                token_file = v;
            else if ((m = opt_value(argc, argv, &i, "--token", &v)) != 0)
                token = v;
            else
                return usage_error("unknown option %s", a);
            if (m < 0) return usage_error("option %s needs a value", a);
            continue;
        }
        if (c.args_n >= ST_ARRAY_LEN(c.args)) return usage_error("too many arguments");
        c.args[c.args_n++] = a;
    }
    if (timeout) {
        char *end;
        double s = strtod(timeout, &end);
        if (*end != '\0' || !(s > 0) || s > 3600)
            return usage_error("--timeout takes seconds (0 < S <= 3600)");
        c.timeout_ms = (int)(s * 1000);
        if (c.timeout_ms < 1) c.timeout_ms = 1;
    }
    if (auth_setup(&c, token, token_file) != 0) return CLI_EXIT_USAGE;
    int rc = cli_endpoints_parse(endpoints, c.endpoints, CLI_ENDPOINTS_MAX, &c.endpoints_n);
    if (rc != 0)
        return usage_error("bad endpoint list \"%s\": %s (want host:port,host:port,...)", endpoints,
                           st_strerror(rc));
    if (c.consistency && strcmp(cmd, "get") != 0 && strcmp(cmd, "list") != 0)
        return usage_error("--consistency applies to get and list only");
    if ((c.prefix && strcmp(cmd, "get") != 0) ||
        (c.keys_only && strcmp(cmd, "list") != 0 && !c.prefix))
        return usage_error("--prefix applies to get, --keys-only to list and get --prefix");
    if ((c.from || c.count) && strcmp(cmd, "watch") != 0)
        return usage_error("--from and --count apply to watch only");
    bool locking = strcmp(cmd, "lock") == 0 || strcmp(cmd, "elect") == 0;
    if (((c.ttl && !locking) || c.if_match || c.if_absent) && strcmp(cmd, "put") != 0)
        return usage_error("--ttl, --if-match and --if-absent apply to put only "
                           "(--ttl MS also to lock and elect)");
    if (c.idem_key && strcmp(cmd, "put") != 0 && strcmp(cmd, "set") != 0 &&
        strcmp(cmd, "del") != 0 && strcmp(cmd, "delete") != 0)
        return usage_error("--idempotency-key applies to put and del only");

    struct st_tls_ctx *tls = NULL;
    rc = cli_tls_setup(&c, cacert, cert, key, &tls);
    if (rc != CLI_EXIT_OK) return rc;
    if (strcmp(cmd, "get") == 0 && c.prefix)
        ret = c.args_n ? usage_error("get --prefix takes no KEY") : cmd_list(&c, c.prefix);
    else if (strcmp(cmd, "list") == 0)
        ret = c.args_n == 1 ? cmd_list(&c, c.args[0]) : usage_error("list takes one PREFIX");
    else if (strcmp(cmd, "watch") == 0)
        ret = c.args_n == 1 ? cmd_watch(&c) : usage_error("watch takes one PREFIX");
    else if (strcmp(cmd, "get") == 0)
        ret = cmd_get(&c);
    else if (strcmp(cmd, "put") == 0 || strcmp(cmd, "set") == 0)
        ret = cmd_put(&c);
    else if (strcmp(cmd, "del") == 0 || strcmp(cmd, "delete") == 0)
        ret = cmd_del(&c);
    else if (strcmp(cmd, "txn") == 0)
        ret = cmd_txn(&c);
    else if (strcmp(cmd, "members") == 0)
        ret = cmd_members(&c);
    else if (strcmp(cmd, "add") == 0)
        ret = cmd_add(&c);
    else if (strcmp(cmd, "remove") == 0)
        ret = cmd_remove(&c);
    else if (strcmp(cmd, "transfer") == 0)
        ret = cmd_transfer(&c);
    else if (strcmp(cmd, "snapshot") == 0 || strcmp(cmd, "compact") == 0)
        ret = cmd_snapshot(&c, strcmp(cmd, "compact") == 0);
    else if (strcmp(cmd, "status") == 0)
        ret = cmd_status(&c);
    else if (strcmp(cmd, "user") == 0)
        ret = cmd_user(&c);
    else if (strcmp(cmd, "role") == 0)
        ret = cmd_role(&c);
    else if (locking)
        ret = cmd_lock(&c, cmd, run_argc, run_argv, observe);
    else
        ret = usage_error("unknown command \"%s\"", cmd);
    if (fflush(stdout) != 0 && ret == CLI_EXIT_OK) {
        fprintf(stderr, "stcache: writing the output: %s\n", strerror(errno));
        ret = CLI_EXIT_UNAVAILABLE;
    }
    cli_buf_free(&c.head);
    cli_buf_free(&c.rbuf);
    st_tls_ctx_destroy(tls);
    return ret;
}
