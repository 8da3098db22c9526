/* RESP reply writer. Contract in reply.h. */
#include "resp/reply.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void put(struct resp_out *o, const void *p, size_t len)
{
    st_membuf_append(o->b, p, len);
}

/* A "<c><number>\r\n" header. */
static void head(struct resp_out *o, char c, long long v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%c%lld\r\n", c, v);
    put(o, tmp, (size_t)n);
}

/* Writes s with CR and LF replaced by spaces. */
static void put_line(struct resp_out *o, char c, const char *s)
{
    put(o, &c, 1);
    const char *p = s;
    while (*p) {
        size_t run = strcspn(p, "\r\n");
        put(o, p, run);
        p += run;
        if (*p) {
            put(o, " ", 1);
            p++;
        }
    }
    put(o, "\r\n", 2);
}

void resp_reply_simple(struct resp_out *o, const char *s)
{
    put_line(o, '+', s);
}

void resp_reply_error(struct resp_out *o, const char *msg)
{
    put_line(o, '-', msg);
}

void resp_reply_errorf(struct resp_out *o, const char *fmt, ...)
{
    char tmp[512];
    int n = snprintf(tmp, sizeof tmp, "ERR ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp + n, sizeof tmp - (size_t)n, fmt, ap);
    va_end(ap);
    put_line(o, '-', tmp);
}

void resp_reply_integer(struct resp_out *o, long long v)
{
    head(o, ':', v);
}

void resp_reply_bulk(struct resp_out *o, const void *p, size_t len)
{
    head(o, '$', (long long)len);
    put(o, p, len);
    put(o, "\r\n", 2);
}

void resp_reply_bulk_str(struct resp_out *o, const char *s)
{
    resp_reply_bulk(o, s, strlen(s));
}

void resp_reply_null(struct resp_out *o)
{
    if (o->proto >= 3)
        put(o, "_\r\n", 3);
    else
        put(o, "$-1\r\n", 5);
}

void resp_reply_null_array(struct resp_out *o)
{
    if (o->proto >= 3)
        put(o, "_\r\n", 3);
    else
        put(o, "*-1\r\n", 5);
}

void resp_reply_array(struct resp_out *o, size_t n)
{
    head(o, '*', (long long)n);
}

void resp_reply_push(struct resp_out *o, size_t n)
{
    head(o, o->proto == 3 ? '>' : '*', (long long)n);
}

void resp_reply_map(struct resp_out *o, size_t n_pairs)
{
    if (o->proto >= 3)
        head(o, '%', (long long)n_pairs);
    else
        head(o, '*', (long long)n_pairs * 2);
}

/* Redis's formatting of doubles: "inf"/"-inf", else %.17g. */
static int fmt_double(char *tmp, size_t cap, double d)
{
    if (isinf(d)) return snprintf(tmp, cap, "%s", d > 0 ? "inf" : "-inf");
    return snprintf(tmp, cap, "%.17g", d);
}

void resp_reply_double(struct resp_out *o, double d)
{
    char tmp[64];
    int n = fmt_double(tmp, sizeof tmp, d);
    if (o->proto >= 3) {
        put(o, ",", 1);
        put(o, tmp, (size_t)n);
        put(o, "\r\n", 2);
    } else {
        resp_reply_bulk(o, tmp, (size_t)n);
    }
}

void resp_reply_bool(struct resp_out *o, int v)
{
    if (o->proto >= 3)
        put(o, v ? "#t\r\n" : "#f\r\n", 4);
    else
        resp_reply_integer(o, v ? 1 : 0);
}

void resp_reply_verbatim(struct resp_out *o, const char *fmt, const void *p, size_t len)
{
    if (o->proto < 3) {
        resp_reply_bulk(o, p, len);
        return;
    }
    head(o, '=', (long long)len + 4);
    put(o, fmt, 3);
    put(o, ":", 1);
    put(o, p, len);
    put(o, "\r\n", 2);
}
