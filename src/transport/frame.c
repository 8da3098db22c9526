#include "transport/frame.h"

#include <string.h>

#include "stcache/api.h"
#include "stcache/errors.h"
#include "util/assert.h"
#include "util/crc32c.h"
#include "wire/le.h"
#include "wire/msg.h"

_Static_assert(FRAME_HELLO_FIXED_SIZE == 4 + 2 + 2 + 3 * 8, "hello layout");
_Static_assert(FRAME_HELLO_ACK_SIZE == 4 + 2 + 2 + 4 + 2 * 8, "hello ack layout");

uint32_t frame_header_start(uint8_t *hdr, uint8_t type, uint32_t body_len)
{
    le_put32(hdr, body_len);
    hdr[4] = type;
    hdr[5] = FRAME_VERSION;
    hdr[6] = hdr[7] = 0;
    return st_crc32c(0, hdr, 8);
}

void frame_header_set_crc(uint8_t *hdr, uint32_t crc)
{
    le_put32(hdr + 8, crc);
}

void frame_header_encode(uint8_t *hdr, uint8_t type, const uint8_t *body, uint32_t body_len)
{
    uint32_t crc = frame_header_start(hdr, type, body_len);
    frame_header_set_crc(hdr, st_crc32c(crc, body, body_len));
}

int frame_header_decode(const uint8_t *hdr, uint32_t body_max, struct frame_header *out)
{
    out->body_len = le_get32(hdr);
    out->type = hdr[4];
    out->crc = le_get32(hdr + 8);
    if (hdr[5] != FRAME_VERSION || hdr[6] != 0 || hdr[7] != 0) return ST_EPROTO;
    if (out->type < FRAME_HELLO || out->type >= FRAME_TYPE_MAX) return ST_EPROTO;
    if (out->body_len > body_max) return ST_ETOOBIG;
    return 0;
}

int frame_check(const uint8_t *hdr, const struct frame_header *h, const uint8_t *body)
{
    uint32_t crc = st_crc32c(st_crc32c(0, hdr, 8), body, h->body_len);
    return crc == h->crc ? 0 : ST_EPROTO;
}

void frame_versions_self(struct frame_versions *v)
{
    *v = (struct frame_versions){.present = true,
                                 .release_major = STCACHE_RAFT_VERSION_MAJOR,
                                 .release_minor = STCACHE_RAFT_VERSION_MINOR,
                                 .release_patch = STCACHE_RAFT_VERSION_PATCH,
                                 .wire_msg = WIRE_MSG_VERSION};
}

bool frame_versions_compatible(const struct frame_versions *self, const struct frame_versions *v)
{
    if (!v->present) return true;
    if (v->release_major != self->release_major) return false;
    int d = (int)v->release_minor - (int)self->release_minor;
    return d >= -1 && d <= 1;
}

static size_t versions_encode(const struct frame_versions *v, uint8_t *out)
{
    if (!v->present) return 0;
    le_put16(out, FRAME_VERSIONS_KNOWN_SIZE);
    le_put16(out + 2, v->release_major);
    le_put16(out + 4, v->release_minor);
    le_put16(out + 6, v->release_patch);
    le_put16(out + 8, v->wire_msg);
    return FRAME_VERSIONS_SIZE;
}

/* Decodes the optional block that is the whole of body[0..len). */
static int versions_decode(const uint8_t *body, size_t len, struct frame_versions *v)
{
    *v = (struct frame_versions){0};
    if (len == 0) return 0;
    if (len < 2) return ST_EPROTO;
    size_t block = le_get16(body);
    if (block < FRAME_VERSIONS_KNOWN_SIZE || block > FRAME_VERSIONS_LEN_MAX || len != 2 + block)
        return ST_EPROTO;
    v->present = true;
    v->release_major = le_get16(body + 2);
    v->release_minor = le_get16(body + 4);
    v->release_patch = le_get16(body + 6);
    v->wire_msg = le_get16(body + 8);
    return 0;
}

size_t frame_hello_encode(const struct frame_hello *h, uint8_t *out)
{
    ST_ASSERT(h->addr_len <= FRAME_HELLO_ADDR_MAX);
    le_put32(out, FRAME_HELLO_MAGIC);
    le_put16(out + 4, h->proto_version);
    le_put16(out + 6, h->addr_len);
    le_put64(out + 8, h->cluster_id);
    le_put64(out + 16, h->from_id);
    le_put64(out + 24, h->to_id);
    memcpy(out + FRAME_HELLO_FIXED_SIZE, h->addr, h->addr_len);
    size_t n = FRAME_HELLO_FIXED_SIZE + h->addr_len;
    return n + versions_encode(&h->versions, out + n);
}

int frame_hello_decode(const uint8_t *body, size_t len, struct frame_hello *out)
{
    memset(out, 0, sizeof(*out));
    if (len < FRAME_HELLO_FIXED_SIZE || le_get32(body) != FRAME_HELLO_MAGIC) return ST_EPROTO;
    out->proto_version = le_get16(body + 4);
    out->addr_len = le_get16(body + 6);
    out->cluster_id = le_get64(body + 8);
    out->from_id = le_get64(body + 16);
    out->to_id = le_get64(body + 24);
    size_t fixed = (size_t)FRAME_HELLO_FIXED_SIZE + out->addr_len;
    if (out->addr_len > FRAME_HELLO_ADDR_MAX || len < fixed) return ST_EPROTO;
    if (versions_decode(body + fixed, len - fixed, &out->versions) != 0) return ST_EPROTO;
    memcpy(out->addr, body + FRAME_HELLO_FIXED_SIZE, out->addr_len);
    for (uint16_t i = 0; i < out->addr_len; i++)
        if (out->addr[i] < 0x20 || out->addr[i] > 0x7e) /* printable ASCII: it gets traced */
            return ST_EPROTO;
    out->addr[out->addr_len] = '\0';
    return 0;
}

size_t frame_hello_ack_encode(const struct frame_hello_ack *a, uint8_t *out)
{
    le_put32(out, FRAME_HELLO_MAGIC);
    le_put16(out + 4, a->proto_version);
    le_put16(out + 6, 0);
    le_put32(out + 8, (uint32_t)a->status);
    le_put64(out + 12, a->cluster_id);
    le_put64(out + 20, a->node_id);
    return FRAME_HELLO_ACK_SIZE + versions_encode(&a->versions, out + FRAME_HELLO_ACK_SIZE);
}

int frame_hello_ack_decode(const uint8_t *body, size_t len, struct frame_hello_ack *out)
{
    memset(out, 0, sizeof(*out));
    if (len < FRAME_HELLO_ACK_SIZE || le_get32(body) != FRAME_HELLO_MAGIC ||
        le_get16(body + 6) != 0)
        return ST_EPROTO;
    out->proto_version = le_get16(body + 4);
    out->status = (int32_t)le_get32(body + 8);
    out->cluster_id = le_get64(body + 12);
    out->node_id = le_get64(body + 20);
    if (out->status > 0) return ST_EPROTO;
    return versions_decode(body + FRAME_HELLO_ACK_SIZE, len - FRAME_HELLO_ACK_SIZE, &out->versions);
}

size_t frame_status_encode(uint32_t stream, int32_t status, uint8_t *out)
{
    le_put32(out, stream);
    le_put32(out + 4, (uint32_t)status);
    return FRAME_SNAP_STATUS_SIZE;
}

int frame_status_decode(const uint8_t *body, size_t len, uint32_t *stream, int32_t *status)
{
    if (len != FRAME_SNAP_STATUS_SIZE) return ST_EPROTO;
    *stream = le_get32(body);
    *status = (int32_t)le_get32(body + 4);
    return *stream != 0 && *status <= 0 ? 0 : ST_EPROTO;
}
