#include "storage/record.h"

#include <string.h>

#include "stcache/errors.h"
#include "util/crc32c.h"
#include "wire/le.h"

_Static_assert(ST_REC_HEADER_BYTES % 8 == 0, "records stay 8-byte aligned");
_Static_assert(ST_SEG_HEADER_BYTES % 8 == 0, "records stay 8-byte aligned");
_Static_assert(sizeof(ST_SEG_MAGIC) - 1 == 8, "segment magic is 8 bytes");

static uint32_t header_crc(const uint8_t *p)
{
    uint32_t c = st_crc32c(0, p, 12);
    return st_crc32c(c, p + 16, 8);
}

void st_rec_seal(uint8_t *out, uint8_t type, uint32_t len, uint64_t wseq)
{
    le_put32(out, ST_REC_MAGIC);
    out[4] = type;
    out[5] = 0;
    le_put16(out + 6, 0);
    le_put32(out + 8, len);
    le_put64(out + 16, wseq);
    le_put32(out + 12, header_crc(out));
    uint32_t padded = st_rec_padded(len);
    if (padded > len) memset(out + ST_REC_HEADER_BYTES + len, 0, padded - len);
    uint8_t *t = out + ST_REC_HEADER_BYTES + padded;
    le_put32(t, st_crc32c(0, out, ST_REC_HEADER_BYTES + padded));
    le_put32(t + 4, ST_REC_TAIL);
}

enum st_rec_check st_rec_parse(const uint8_t *p, uint64_t avail, uint32_t len_max,
                               struct st_rec_view *v)
{
    v->size = 0;
    if (avail < ST_REC_HEADER_BYTES) return ST_REC_SHORT;
    if (le_get32(p) != ST_REC_MAGIC || le_get32(p + 12) != header_crc(p)) return ST_REC_BAD_HEADER;
    uint32_t len = le_get32(p + 8);
    if (len > len_max) return ST_REC_BAD_HEADER;
    v->type = p[4];
    v->len = len;
    v->wseq = le_get64(p + 16);
    v->payload = p + ST_REC_HEADER_BYTES;
    v->size = st_rec_size(len);
    if (avail < v->size) return ST_REC_SHORT;
    uint32_t padded = st_rec_padded(len);
    const uint8_t *t = p + ST_REC_HEADER_BYTES + padded;
    if (le_get32(t + 4) != ST_REC_TAIL) return ST_REC_BAD_BODY;
    if (le_get32(t) != st_crc32c(0, p, ST_REC_HEADER_BYTES + padded)) return ST_REC_BAD_BODY;
    return ST_REC_OK;
}

void st_seg_header_encode(const struct st_seg_header *h, uint8_t out[ST_SEG_HEADER_BYTES])
{
    memset(out, 0, ST_SEG_HEADER_BYTES);
    memcpy(out, ST_SEG_MAGIC, 8);
    le_put32(out + 8, ST_SEG_VERSION);
    le_put32(out + 12, ST_SEG_HEADER_BYTES);
    le_put64(out + 16, h->seq);
    le_put64(out + 24, h->first_index);
    le_put64(out + 32, h->segment_bytes);
    le_put64(out + 40, h->snap_index);
    le_put64(out + 48, h->snap_term);
    le_put64(out + 56, h->hs.term);
    le_put64(out + 64, h->hs.vote);
    le_put64(out + 72, h->hs.commit);
    le_put64(out + 80, h->wseq);
    le_put32(out + ST_SEG_HEADER_BYTES - 4, st_crc32c(0, out, ST_SEG_HEADER_BYTES - 4));
}

int st_seg_header_decode(const uint8_t in[ST_SEG_HEADER_BYTES], struct st_seg_header *h)
{
    if (memcmp(in, ST_SEG_MAGIC, 8) != 0) return ST_ECORRUPT;
    if (le_get32(in + ST_SEG_HEADER_BYTES - 4) != st_crc32c(0, in, ST_SEG_HEADER_BYTES - 4))
        return ST_ECORRUPT;
    if (le_get32(in + 8) != ST_SEG_VERSION || le_get32(in + 12) != ST_SEG_HEADER_BYTES)
        return ST_EINVAL;
    h->seq = le_get64(in + 16);
    h->first_index = le_get64(in + 24);
    h->segment_bytes = le_get64(in + 32);
    h->snap_index = le_get64(in + 40);
    h->snap_term = le_get64(in + 48);
    h->hs.term = le_get64(in + 56);
    h->hs.vote = le_get64(in + 64);
    h->hs.commit = le_get64(in + 72);
    h->wseq = le_get64(in + 80);
    return 0;
}
