#include "util/membuf.h"

#include <stdlib.h>
#include <string.h>

void st_membuf_init(struct st_membuf *b)
{
    memset(b, 0, sizeof(*b));
}

void st_membuf_free(struct st_membuf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

void st_membuf_reset(struct st_membuf *b)
{
    b->len = 0;
    b->oom = 0;
}

void st_membuf_append(struct st_membuf *b, const void *data, size_t len)
{
    if (b->oom) return;
    size_t need = b->len + len + 1;
    if (need > b->cap) {
        size_t ncap = b->cap ? b->cap : 256;
        while (ncap < need)
            ncap *= 2;
        char *d = realloc(b->data, ncap);
        if (!d) {
            b->oom = 1;
            return;
        }
        b->data = d;
        b->cap = ncap;
    }
    if (len) memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = 0;
}
