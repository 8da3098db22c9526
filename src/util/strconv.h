/* Number parsing shared by the front ends and the state machine. */
#ifndef ST_UTIL_STRCONV_H
#define ST_UTIL_STRCONV_H

#include <stddef.h>
#include <stdint.h>

/* Redis's string2ll: an optional '-', digits without leading zeros (but
 * "0"), no '+', no spaces, within long long. Returns 1 and *out, or 0. */
int st_parse_ll(const uint8_t *p, size_t len, long long *out);

#endif
