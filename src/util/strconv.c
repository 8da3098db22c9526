/* Number parsing (strconv.h). */
#include "util/strconv.h"

#include <limits.h>

int st_parse_ll(const uint8_t *p, size_t len, long long *out)
{
    if (len == 0 || len > 20) return 0;
    size_t i = 0;
    int neg = 0;
    if (p[0] == '-') {
        neg = 1;
        i = 1;
        if (len == 1) return 0;
    }
    if (p[i] == '0') {
        if (len - i == 1 && !neg) {
            *out = 0;
            return 1;
        }
        return 0;
    }
    unsigned long long v = 0;
    for (; i < len; i++) {
        if (p[i] < '0' || p[i] > '9') return 0;
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (ULLONG_MAX - d) / 10) return 0;
        v = v * 10 + d;
    }
    if (neg) {
        if (v > (unsigned long long)LLONG_MAX + 1) return 0;
        *out = v == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)v;
    } else {
        if (v > (unsigned long long)LLONG_MAX) return 0;
        *out = (long long)v;
    }
    return 1;
}
