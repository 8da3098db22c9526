/* An incremental RESP2 request parser (the Redis protocol, request side).
 *
 * Pure: no IO, no allocation. The caller owns a buffer holding the bytes
 * received so far and calls resp_parse() on it; each call looks at the
 * buffer's beginning and either finds one whole command there or says it
 * needs more bytes. A command is returned as argv spans pointing INTO the
 * caller's buffer (valid until the caller moves or reuses those bytes); an
 * inline command's quoted arguments are unescaped in place, which only ever
 * shortens them, so the buffer is written to inside the consumed prefix only.
 *
 * Forms (as Redis 7's networking.c accepts them):
 *   multibulk:  *<n>\r\n then n times $<len>\r\n<len bytes>\r\n
 *               (n <= 0: an empty command, consumed and skipped)
 *   inline:     a line of space-separated words, "double" quotes with
 *               \n \r \t \b \a \\ \" \xHH escapes, 'single' quotes with \'
 *               (what redis-cli and telnet users type); an empty line is
 *               consumed and skipped
 *
 * Bounds (struct resp_limits, all checked before any byte is trusted):
 * arguments per command, bytes per bulk argument, bytes of an inline line
 * (and of a "*<n>" or "$<len>" header line). A violated bound or a malformed
 * byte is a protocol error: the reply text is Redis's own ("Protocol error:
 * invalid multibulk length", ...), after which Redis, and so the server,
 * answers it and closes the connection (the stream cannot be resynchronised).
 * A pending multibulk whose declared bulk does not fit the buffer yet is
 * RESP_PARSE_MORE: the caller grows its buffer up to its own bound.
 *
 * Re-parsing after MORE starts over at the command's first byte: the cost of
 * a command arriving in k pieces is k scans of its header lines (bulk bodies
 * are skipped by length, never scanned). */
#ifndef ST_RESP_PARSE_H
#define ST_RESP_PARSE_H

#include <stddef.h>
#include <stdint.h>

/* Redis's PROTO_INLINE_MAX_SIZE: an inline command, or a header line, longer
 * than this without a newline is a protocol error. */
#define RESP_INLINE_BYTES_MAX (64u * 1024u)
/* Default bound on arguments per command (MSET/MGET/DEL size). */
#define RESP_ARGS_MAX_DEFAULT 4096u

struct resp_limits {
    uint32_t args_max;         /* arguments per command (argv capacity) */
    uint64_t bulk_bytes_max;   /* bytes of one bulk argument */
    uint32_t inline_bytes_max; /* bytes of an inline line or header line */
};

struct resp_arg {
    const uint8_t *p;
    size_t len;
};

enum resp_parse_status {
    RESP_PARSE_MORE = 0, /* no whole command yet; *consumed may be > 0 (skipped empties) */
    RESP_PARSE_COMMAND,  /* argv[0..*argc) is one command of *consumed bytes */
    RESP_PARSE_ERROR,    /* *err is Redis's error text (without "-ERR ") */
};

/* Parses the command at the start of buf[0, len). argv has lim->args_max
 * entries. On RESP_PARSE_COMMAND: *argc >= 1 and *consumed bytes belong to
 * the command (drop them before the next call, after the spans' last use).
 * On RESP_PARSE_MORE: *consumed bytes of empty commands may be dropped; call
 * again with more bytes. On RESP_PARSE_ERROR: err (RESP_ERR_BYTES_MAX bytes)
 * holds Redis's text, e.g. "Protocol error: invalid bulk length". */
#define RESP_ERR_BYTES_MAX 96u
enum resp_parse_status resp_parse(uint8_t *buf, size_t len, const struct resp_limits *lim,
                                  struct resp_arg *argv, uint32_t *argc, size_t *consumed,
                                  char *err);

/* Redis's string2ll: an optional '-', digits without leading zeros, no
 * spaces, within long long. Returns 1 and *out, or 0. */
int resp_parse_ll(const uint8_t *p, size_t len, long long *out);

#endif
