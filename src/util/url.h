/* The URL codec (RFC 3986 percent-encoding) shared by the HTTP server, its
 * routes and the CLI. Binary-safe both ways: keys may hold any byte. */
#ifndef ST_UTIL_URL_H
#define ST_UTIL_URL_H

#include <stddef.h>
#include <stdint.h>

/* st_url_decode flag: '+' decodes to ' ' (query components, form style);
 * without it '+' stays '+' (path segments). */
#define ST_URL_PLUS_AS_SPACE 1u

/* Bytes that st_url_encode() produces for src_len bytes of src (without NUL). */
size_t st_url_encoded_len(const void *src, size_t src_len);

/* Percent-encodes every byte of src except the unreserved set [A-Za-z0-9-._~]
 * (NUL, '/', '%', '?', '+' and bytes >= 0x80 are all encoded). Writes a
 * NUL-terminated string into dst (dst_cap bytes, caller-owned). Returns 0, or
 * ST_ETOOBIG when dst_cap < st_url_encoded_len() + 1 (dst then holds an empty
 * string). *dst_len_out (may be NULL) gets the length. */
int st_url_encode(const void *src, size_t src_len, char *dst, size_t dst_cap, size_t *dst_len_out);

/* Percent-decodes src[0..src_len) into dst (dst_cap bytes; dst may equal src:
 * the output never outruns the input). flags: 0 or ST_URL_PLUS_AS_SPACE.
 * Unencoded bytes pass through. Returns 0 and *dst_len_out (may be NULL),
 * ST_EINVAL for a '%' not followed by two hex digits within src_len, or
 * ST_ETOOBIG when dst_cap is too small (dst then holds a prefix). */
int st_url_decode(const char *src, size_t src_len, unsigned flags, void *dst, size_t dst_cap,
                  size_t *dst_len_out);

/* Splits "host:port" or "[v6]:port" into host (NUL-terminated, without the
 * brackets; host_cap bytes) and a port in 1..65535. A bare IPv6 address
 * without brackets is refused. 0 or ST_EINVAL. */
int st_url_hostport_split(const char *addr, char *host, size_t host_cap, uint16_t *port);
/* st_url_hostport_split() that also takes port 0 ("any": a listener binds an
 * ephemeral port). */
int st_url_hostport_split_any(const char *addr, char *host, size_t host_cap, uint16_t *port);

#endif
