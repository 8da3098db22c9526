/* The RESP reply writer: appends replies to a caller-owned st_membuf in the
 * connection's protocol (2 or 3, chosen by HELLO).
 *
 * RESP3 types have RESP2 spellings, as Redis writes them: a null is "$-1"
 * (bulk) or "*-1" (array) in RESP2 and "_" in RESP3; a map is an array of
 * 2n elements in RESP2; a double is a bulk string in RESP2; a boolean an
 * integer 0/1 in RESP2; verbatim text a bulk string in RESP2.
 *
 * The buffer's oom flag (util/membuf.h) records a failed append; the caller
 * checks it once per reply. Texts given to simple/error must not contain CR
 * or LF (replaced by spaces here, as Redis does for errors). */
#ifndef ST_RESP_REPLY_H
#define ST_RESP_REPLY_H

#include <stddef.h>
#include <stdint.h>

#include "util/membuf.h"

struct resp_out {
    struct st_membuf *b;
    int proto; /* 2 or 3 */
};

void resp_reply_simple(struct resp_out *o, const char *s);
/* msg is the full error line without '-', e.g. "ERR syntax error",
 * "WRONGTYPE Operation against ...". */
void resp_reply_error(struct resp_out *o, const char *msg);
/* "-ERR " + printf text. */
void resp_reply_errorf(struct resp_out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void resp_reply_integer(struct resp_out *o, long long v);
void resp_reply_bulk(struct resp_out *o, const void *p, size_t len);
void resp_reply_bulk_str(struct resp_out *o, const char *s);
void resp_reply_null(struct resp_out *o);       /* a missing bulk string */
void resp_reply_null_array(struct resp_out *o); /* a missing array */
void resp_reply_array(struct resp_out *o, size_t n);
void resp_reply_map(struct resp_out *o, size_t n_pairs);
/* An out-of-band push (pub/sub messages): '>' in RESP3, an array in RESP2. */
void resp_reply_push(struct resp_out *o, size_t n);
void resp_reply_double(struct resp_out *o, double d);
void resp_reply_bool(struct resp_out *o, int v);
/* fmt is 3 characters, e.g. "txt". */
void resp_reply_verbatim(struct resp_out *o, const char *fmt, const void *p, size_t len);

#endif
