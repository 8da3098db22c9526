/* `stcache watch` (watch.h).
 *
 * Resuming: the watcher remembers the last version it printed and how many
 * events of that version it printed (one command may change several keys,
 * all with its version), and the newest progress marker (every event up to
 * it was delivered). It reconnects with from_version = the progress + 1
 * when that covers the last event, else the last version, skipping the
 * events of that version it already printed (they come in the same order). */
#include "cli/watch.h"
#include "cli/transport.h"

#include "http/response.h"
#include "stcache/errors.h"
#include "util/assert.h"
#include "util/json.h"
#include "util/url.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

struct watch_state {
    const struct cli_watch_opts *o;
    uint64_t last_version; /* of the last event printed (0: none) */
    uint64_t last_count;   /* events of last_version printed */
    uint64_t progress;     /* every event up to this version was delivered */
    uint64_t skip_version; /* after a resume: events of this version already printed */
    uint64_t skip_left;
    uint64_t printed;
    bool done;     /* count reached */
    int exit_code; /* set when the watch must end (compacted) */
    char *line;    /* the line being assembled */
    size_t line_len, line_cap;
};

/* The version to resume from, and the events of it to skip. */
static uint64_t resume_from(struct watch_state *s)
{
    if (s->last_version == 0 || s->progress >= s->last_version) {
        s->skip_left = 0;
        if (s->progress) return ST_MAX(s->progress + 1, s->o->from);
        return s->o->from; /* nothing seen yet */
    }
    s->skip_version = s->last_version;
    s->skip_left = s->last_count;
    return s->last_version;
}

static void print_field(struct st_jsonr_span root, const char *name, char *tmp, size_t cap)
{
    struct st_jsonr_span v;
    char b64[32];
    snprintf(b64, sizeof b64, "%s_base64", name);
    if (st_jsonr_get(root, name, &v) && st_jsonr_copy(v, tmp, cap) == 0) {
        fputs(tmp, stdout);
    } else if (st_jsonr_get(root, b64, &v) && st_jsonr_copy(v, tmp, cap) == 0) {
        fputs("base64:", stdout);
        fputs(tmp, stdout);
    }
}

/* One line of the stream. */
static void watch_line(struct watch_state *s, char *line, size_t len)
{
    if (st_jsonr_validate(line, len) != 0) return;
    struct st_jsonr_span root = st_jsonr_root(line, len), v, w;
    uint64_t version = 0;
    if (st_jsonr_get(root, "progress", &v)) {
        if (st_jsonr_get(v, "applied", &w) && st_jsonr_uint(w, &version) == 0 &&
            version > s->progress)
            s->progress = version;
        return;
    }
    if (st_jsonr_get(root, "canceled", &v)) {
        char reason[32] = "";
        if (st_jsonr_get(v, "reason", &w)) (void)st_jsonr_string(w, reason, sizeof reason);
        fprintf(stderr, "stcache: watch canceled by the server (%s): resuming\n", reason);
        return; /* the stream ends: the caller reconnects */
    }
    if (!st_jsonr_get(root, "version", &v) || st_jsonr_uint(v, &version) != 0) return;
    if (s->skip_left > 0 && version == s->skip_version) {
        s->skip_left--;
        return;
    }
    s->skip_left = 0;
    if (version == s->last_version) {
        s->last_count++;
    } else {
        s->last_version = version;
        s->last_count = 1;
    }
    if (s->o->json) {
        fwrite(line, 1, len, stdout);
        fputc('\n', stdout);
    } else {
        char *tmp = malloc(len + 1);
        if (!tmp) return;
        printf("%" PRIu64 "\t", version);
        print_field(root, "type", tmp, len + 1);
        fputc('\t', stdout);
        print_field(root, "key", tmp, len + 1);
        if (st_jsonr_get(root, "value", &w) || st_jsonr_get(root, "value_base64", &w)) {
            fputc('\t', stdout);
            print_field(root, "value", tmp, len + 1);
        }
        fputc('\n', stdout);
        free(tmp);
    }
    fflush(stdout);
    s->printed++;
    if (s->o->count && s->printed >= s->o->count) s->done = true;
}

/* Appends decoded body bytes, handing every complete line to watch_line. */
static int watch_body(struct watch_state *s, const char *p, size_t n)
{
    for (size_t i = 0; i < n && !s->done; i++) {
        if (p[i] == '\n') {
            watch_line(s, s->line, s->line_len);
            s->line_len = 0;
            continue;
        }
        if (s->line_len + 1 >= s->line_cap) {
            size_t cap = s->line_cap ? s->line_cap * 2 : 4096;
            if (cap > CLI_WATCH_LINE_BYTES_MAX) return ST_ETOOBIG;
            char *l = realloc(s->line, cap);
            if (!l) return ST_ENOMEM;
            s->line = l;
            s->line_cap = cap;
        }
        s->line[s->line_len++] = p[i];
    }
    return 0;
}

/* The chunked decoder (RFC 9112 7.1): sizes in hex, data, CRLFs. */
struct chunks {
    enum { CH_SIZE, CH_EXT, CH_SIZE_LF, CH_DATA, CH_DATA_CR, CH_DATA_LF, CH_END } st;
    uint64_t left;
};

/* Feeds raw body bytes; 1 at the last chunk, 0 for more, <0 malformed. */
static int chunks_feed(struct chunks *c, struct watch_state *s, const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && !s->done) {
        char ch = p[i];
        switch (c->st) {
        case CH_SIZE:
        case CH_EXT: {
            int d = ch >= '0' && ch <= '9'   ? ch - '0'
                    : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                    : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                             : -1;
            if (c->st == CH_SIZE && d >= 0) {
                if (c->left > (UINT64_MAX >> 4)) return ST_EPROTO;
                c->left = c->left * 16 + (uint64_t)d;
            } else if (ch == '\r') {
                c->st = CH_SIZE_LF;
            } else {
                c->st = CH_EXT; /* an extension: ignored */
            }
            i++;
            break;
        }
        case CH_SIZE_LF:
            if (ch != '\n') return ST_EPROTO;
            i++;
            c->st = c->left ? CH_DATA : CH_END;
            if (c->st == CH_END) return 1;
            break;
        case CH_DATA: {
            size_t take = (size_t)ST_MIN((uint64_t)(n - i), c->left);
            int rc = watch_body(s, p + i, take);
            if (rc != 0) return rc;
            i += take;
            c->left -= take;
            if (c->left == 0) c->st = CH_DATA_CR;
            break;
        }
        case CH_DATA_CR:
            if (ch != '\r') return ST_EPROTO;
            i++;
            c->st = CH_DATA_LF;
            break;
        case CH_DATA_LF:
            if (ch != '\n') return ST_EPROTO;
            i++;
            c->st = CH_SIZE;
            c->left = 0;
            break;
        case CH_END:
            return 1;
        }
    }
    return 0;
}

/* One connection: 1 when the server served the watch (the caller resumes
 * at once), 0 when the endpoint did not (try the next one), or an exit
 * code + 100 to end with. */
static int watch_once(struct watch_state *s, const struct cli_endpoint *ep)
{
    const struct cli_watch_opts *o = s->o;
    uint64_t from = resume_from(s);
    size_t plen = strlen(o->prefix);
    struct cli_buf head = {0}, rbuf = {0};
    int ret = 0;
    bool v6 = strchr(ep->host, ':') != NULL;
    int rc = cli_buf_printf(&head, "GET /watch?progress_ms=%d", CLI_WATCH_PROGRESS_MS);
    if (rc == 0 && from) rc = cli_buf_printf(&head, "&from_version=%" PRIu64, from);
    if (rc == 0) rc = cli_buf_printf(&head, "&prefix=");
    if (rc == 0) rc = cli_buf_reserve(&head, st_url_encoded_len(o->prefix, plen), 1 << 20);
    if (rc == 0) {
        size_t w = 0;
        (void)st_url_encode(o->prefix, plen, head.data + head.len, head.cap - head.len, &w);
        head.len += w;
        head.data[head.len] = '\0';
        rc = cli_buf_printf(&head,
                            " HTTP/1.1\r\nHost: %s%s%s:%u\r\nUser-Agent: stcache-cli\r\n"
                            "Accept: application/x-ndjson\r\nConnection: close\r\n\r\n",
                            v6 ? "[" : "", ep->host, v6 ? "]" : "", (unsigned)ep->port);
    }
    if (rc != 0) {
        cli_buf_free(&head);
        return 100 + CLI_EXIT_UNAVAILABLE;
    }
    const char *why = "";
    struct cli_stream *st = NULL;
    rc = cli_stream_open(ep, &head, o->timeout_ms, &st, &why);
    cli_buf_free(&head);
    if (rc < 0) return 0;
    size_t head_end = 0;
    bool chunked = false;
    struct chunks ch = {.st = CH_SIZE};
    for (;;) {
        if (cli_buf_reserve(&rbuf, 64 * 1024, head_end ? SIZE_MAX : 1 << 20) != 0) break;
        long n = cli_stream_read(st, rbuf.data + rbuf.len, rbuf.cap - rbuf.len - 1,
                                 cli_now_ms() + CLI_WATCH_QUIET_MS);
        if (n <= 0) break; /* the end, an error, or quiet for too long */
        if (head_end == 0) {
            rbuf.len += (size_t)n;
            rbuf.data[rbuf.len] = '\0';
            char *e = strstr(rbuf.data, "\r\n\r\n");
            if (!e) continue;
            head_end = (size_t)(e - rbuf.data) + 4;
            int status = rbuf.len > 12 ? (int)strtol(rbuf.data + 9, NULL, 10) : 0;
            if (status != 200) {
                /* An error answer: read it whole. */
                struct http_response resp;
                for (;;) {
                    rc = http_response_parse(rbuf.data, rbuf.len, false, 1 << 20, &resp);
                    if (rc != 0 || resp.complete) break;
                    if (cli_buf_reserve(&rbuf, 16 * 1024, 1 << 20) != 0) break;
                    n = cli_stream_read(st, rbuf.data + rbuf.len, rbuf.cap - rbuf.len - 1,
                                        cli_now_ms() + o->timeout_ms);
                    if (n <= 0) break;
                    rbuf.len += (size_t)n;
                    rbuf.data[rbuf.len] = '\0';
                }
                if (status == 410) {
                    fprintf(stderr,
                            "stcache: watch: version %" PRIu64 " is no longer in the history "
                            "(%s): reload the keys and watch from the oldest version it names\n",
                            from, rbuf.data + head_end);
                    ret = 100 + CLI_EXIT_FAILED;
                } else if (status == 400) {
                    fprintf(stderr, "stcache: watch: %s\n", rbuf.data + head_end);
                    ret = 100 + CLI_EXIT_REJECTED;
                }
                break; /* 503 and others: the next endpoint */
            }
            for (size_t i = 0; i + 28 <= head_end; i++) {
                if (strncasecmp(rbuf.data + i, "\r\ntransfer-encoding: chunked", 28) == 0)
                    chunked = true;
            }
            if (!chunked) break;
            ret = 1;
            rc = chunks_feed(&ch, s, rbuf.data + head_end, rbuf.len - head_end);
            rbuf.len = 0;
        } else {
            rc = chunks_feed(&ch, s, rbuf.data, (size_t)n);
        }
        if (rc != 0 || s->done) break; /* the end of the stream, or malformed */
    }
    cli_stream_close(st);
    cli_buf_free(&rbuf);
    s->line_len = 0; /* a cut line is read again after the resume */
    return ret;
}

int cli_watch_run(const struct cli_watch_opts *o)
{
    struct watch_state s = {.o = o};
    size_t i = 0;
    int64_t last_served = cli_now_ms();
    int pause_ms = 50;
    int ret = CLI_EXIT_OK;
    while (!s.done) {
        int r = watch_once(&s, &o->endpoints[i % o->endpoints_n]);
        if (r >= 100) {
            ret = r - 100;
            break;
        }
        if (r == 1) {
            last_served = cli_now_ms();
            pause_ms = 50;
            continue; /* resume at once, on the same endpoint first */
        }
        i++;
        if (cli_now_ms() - last_served > o->timeout_ms) {
            fprintf(stderr, "stcache: watch: no endpoint served the watch for %d ms\n",
                    o->timeout_ms);
            ret = CLI_EXIT_UNAVAILABLE;
            break;
        }
        if (i % o->endpoints_n == 0) {
            poll(NULL, 0, pause_ms); /* a round failed: pause before the next */
            pause_ms = ST_MIN(pause_ms * 2, 1000);
        }
    }
    free(s.line);
    return ret;
}
