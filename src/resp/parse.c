/* RESP2 request parser. Contract in parse.h; the accepted forms and error
 * texts follow Redis 7.0's processMultibulkBuffer, processInlineBuffer and
 * sdssplitargs. */
#include "resp/parse.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "util/assert.h"
#include "util/strconv.h"

static void set_err(char *err, const char *msg)
{
    snprintf(err, RESP_ERR_BYTES_MAX, "%s", msg);
}

int resp_parse_ll(const uint8_t *p, size_t len, long long *out)
{
    return st_parse_ll(p, len, out);
}

/* A header line "<c><digits>\r\n" at buf[pos]. Returns 1 with *value and
 * *next (past the \n), 0 when more bytes are needed, -1 on a line over
 * the bound (the caller names the error). A missing '\n' after '\r' is
 * not checked, as in Redis. */
static int header_line(const uint8_t *buf, size_t len, size_t pos, uint32_t line_max,
                       const uint8_t **num, size_t *num_len, size_t *next)
{
    const uint8_t *cr = memchr(buf + pos, '\r', len - pos);
    if (!cr) return len - pos > line_max ? -1 : 0;
    size_t cr_off = (size_t)(cr - buf);
    if (cr_off + 1 >= len) return 0; /* the '\n' has not arrived */
    *num = buf + pos + 1;
    *num_len = cr_off - pos - 1;
    *next = cr_off + 2;
    return 1;
}

static enum resp_parse_status parse_multibulk(uint8_t *buf, size_t len,
                                              const struct resp_limits *lim, struct resp_arg *argv,
                                              uint32_t *argc, size_t *consumed, char *err)
{
    const uint8_t *num;
    size_t num_len, pos;
    int hr = header_line(buf, len, 0, lim->inline_bytes_max, &num, &num_len, &pos);
    if (hr < 0) {
        set_err(err, "Protocol error: too big mbulk count string");
        return RESP_PARSE_ERROR;
    }
    if (hr == 0) return RESP_PARSE_MORE;
    long long n;
    if (!resp_parse_ll(num, num_len, &n) || n > INT_MAX || (n > 0 && (uint64_t)n > lim->args_max)) {
        set_err(err, "Protocol error: invalid multibulk length");
        return RESP_PARSE_ERROR;
    }
    if (n <= 0) {
        *consumed = pos; /* an empty command: skipped */
        return RESP_PARSE_MORE;
    }
    for (long long i = 0; i < n; i++) {
        if (pos >= len) return RESP_PARSE_MORE;
        hr = header_line(buf, len, pos, lim->inline_bytes_max, &num, &num_len, &pos);
        if (hr < 0) {
            set_err(err, "Protocol error: too big bulk count string");
            return RESP_PARSE_ERROR;
        }
        if (hr == 0) return RESP_PARSE_MORE;
        const uint8_t *hdr = num - 1;
        if (*hdr != '$') {
            snprintf(err, RESP_ERR_BYTES_MAX, "Protocol error: expected '$', got '%c'", *hdr);
            return RESP_PARSE_ERROR;
        }
        long long bl;
        if (!resp_parse_ll(num, num_len, &bl) || bl < 0 || (uint64_t)bl > lim->bulk_bytes_max) {
            set_err(err, "Protocol error: invalid bulk length");
            return RESP_PARSE_ERROR;
        }
        if (len - pos < (size_t)bl + 2) return RESP_PARSE_MORE;
        argv[i].p = buf + pos;
        argv[i].len = (size_t)bl;
        pos += (size_t)bl + 2; /* the trailing CRLF is not checked, as in Redis */
    }
    *argc = (uint32_t)n;
    *consumed = pos;
    return RESP_PARSE_COMMAND;
}

static int is_space(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static int hex_val(uint8_t c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* sdssplitargs over line[0, n) (NUL ends the line, as in C strings), in
 * place. Returns the number of arguments, -1 for unbalanced quotes, -2 for
 * more than args_max arguments. */
static int split_inline(uint8_t *line, size_t n, struct resp_arg *argv, uint32_t args_max)
{
    size_t r = 0;
    uint32_t argc = 0;
    for (;;) {
        while (r < n && line[r] && is_space(line[r]))
            r++;
        if (r >= n || !line[r]) return (int)argc;
        if (argc == args_max) return -2;
        size_t w = r, start = r;
        int inq = 0, insq = 0, done = 0;
        while (!done) {
            uint8_t c = r < n ? line[r] : 0;
            if (inq) {
                if (c == 0) return -1;
                if (c == '\\' && r + 3 < n + 0 && line[r + 1] == 'x' && hex_val(line[r + 2]) >= 0 &&
                    hex_val(line[r + 3]) >= 0) {
                    line[w++] = (uint8_t)(hex_val(line[r + 2]) * 16 + hex_val(line[r + 3]));
                    r += 3;
                } else if (c == '\\' && r + 1 < n && line[r + 1]) {
                    uint8_t e = line[++r];
                    switch (e) {
                    case 'n':
                        e = '\n';
                        break;
                    case 'r':
                        e = '\r';
                        break;
                    case 't':
                        e = '\t';
                        break;
                    case 'b':
                        e = '\b';
                        break;
                    case 'a':
                        e = '\a';
                        break;
                    default:
                        break;
                    }
                    line[w++] = e;
                } else if (c == '"') {
                    /* closing quote must be followed by a space or nothing */
                    if (r + 1 < n && line[r + 1] && !is_space(line[r + 1])) return -1;
                    done = 1;
                } else {
                    line[w++] = c;
                }
            } else if (insq) {
                if (c == 0) return -1;
                if (c == '\\' && r + 1 < n && line[r + 1] == '\'') {
                    r++;
                    line[w++] = '\'';
                } else if (c == '\'') {
                    if (r + 1 < n && line[r + 1] && !is_space(line[r + 1])) return -1;
                    done = 1;
                } else {
                    line[w++] = c;
                }
            } else {
                switch (c) {
                case ' ':
                case '\n':
                case '\r':
                case '\t':
                case 0:
                    done = 1;
                    break;
                case '"':
                    inq = 1;
                    break;
                case '\'':
                    insq = 1;
                    break;
                default:
                    line[w++] = c;
                    break;
                }
                if (done) break; /* r stays on the separator */
            }
            r++;
        }
        argv[argc].p = line + start;
        argv[argc].len = w - start;
        argc++;
    }
}

static enum resp_parse_status parse_inline(uint8_t *buf, size_t len, const struct resp_limits *lim,
                                           struct resp_arg *argv, uint32_t *argc, size_t *consumed,
                                           char *err)
{
    const uint8_t *nl = memchr(buf, '\n', len);
    if (!nl) {
        if (len > lim->inline_bytes_max) {
            set_err(err, "Protocol error: too big inline request");
            return RESP_PARSE_ERROR;
        }
        return RESP_PARSE_MORE;
    }
    size_t line_len = (size_t)(nl - buf);
    size_t total = line_len + 1;
    if (line_len > 0 && buf[line_len - 1] == '\r') line_len--;
    int n = split_inline(buf, line_len, argv, lim->args_max);
    if (n == -1) {
        set_err(err, "Protocol error: unbalanced quotes in request");
        return RESP_PARSE_ERROR;
    }
    if (n == -2) {
        set_err(err, "Protocol error: too many arguments in inline request");
        return RESP_PARSE_ERROR;
    }
    *consumed = total;
    if (n == 0) return RESP_PARSE_MORE; /* an empty line: skipped */
    *argc = (uint32_t)n;
    return RESP_PARSE_COMMAND;
}

enum resp_parse_status resp_parse(uint8_t *buf, size_t len, const struct resp_limits *lim,
                                  struct resp_arg *argv, uint32_t *argc, size_t *consumed,
                                  char *err)
{
    ST_ASSERT(lim->args_max > 0);
    *consumed = 0;
    *argc = 0;
    err[0] = '\0';
    if (len == 0) return RESP_PARSE_MORE;
    if (buf[0] == '*') return parse_multibulk(buf, len, lim, argv, argc, consumed, err);
    return parse_inline(buf, len, lim, argv, argc, consumed, err);
}
