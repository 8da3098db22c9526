/* Transport frames and handshake: encode/decode helpers (pure, no IO).
 * Byte layout in docs/WIRE-FORMAT.md.
 *
 * Every frame: a 12-byte header then body_len bytes of body.
 *     0  u32 body_len
 *     4  u8  type (enum frame_type)
 *     5  u8  version (FRAME_VERSION)
 *     6  u16 reserved, 0
 *     8  u32 crc32c over header bytes 0..7 followed by the body
 * The CRC covers the length and type, so a corrupted length is detected once
 * the (bounded) body has arrived. */
#ifndef ST_TRANSPORT_FRAME_H
#define ST_TRANSPORT_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FRAME_HEADER_SIZE 12
#define FRAME_VERSION 1
#define FRAME_HELLO_MAGIC 0x54435453u /* "STCT" as LE bytes 'S','T','C','T' */
#define FRAME_PROTO_VERSION 1         /* handshake protocol version */
#define FRAME_HELLO_FIXED_SIZE 32
#define FRAME_HELLO_ADDR_MAX 255
#define FRAME_HELLO_ACK_SIZE 28
/* The versions block that follows HELLO's address and HELLO_ACK's fixed part
 * (docs/WIRE-FORMAT.md §3): u16 block_len, then block_len bytes of which the
 * first FRAME_VERSIONS_KNOWN_SIZE are known to this release. */
#define FRAME_VERSIONS_KNOWN_SIZE 8
#define FRAME_VERSIONS_SIZE (2 + FRAME_VERSIONS_KNOWN_SIZE) /* as this release writes it */
#define FRAME_VERSIONS_LEN_MAX 64                           /* largest block_len accepted */
/* Every SNAP_* body starts with the u32 stream id (non-zero) of its stream. */
#define FRAME_SNAP_BEGIN_FIXED_SIZE 12 /* u32 stream, u64 size, then a Raft message */
#define FRAME_SNAP_CHUNK_FIXED_SIZE 12 /* u32 stream, u64 offset, then data */
#define FRAME_SNAP_END_SIZE 16         /* u32 stream, u64 size, u32 crc32c of all bytes */
#define FRAME_SNAP_STATUS_SIZE 8       /* u32 stream, i32 status (SNAP_ACK, SNAP_ABORT) */

enum frame_type {
    FRAME_HELLO = 1,      /* dialer -> acceptor, first frame */
    FRAME_HELLO_ACK = 2,  /* acceptor -> dialer, status 0 or refusal */
    FRAME_MSG = 3,        /* a Raft message (wire/msg.h payload) */
    FRAME_SNAP_BEGIN = 4, /* sender -> receiver: size + the RAFT_MSG_SNAPSHOT */
    FRAME_SNAP_CHUNK = 5, /* sender -> receiver: offset + bytes */
    FRAME_SNAP_END = 6,   /* sender -> receiver: size + crc32c of the whole snapshot */
    FRAME_SNAP_ACK = 7,   /* receiver -> sender: 0 stored, negative refused/failed */
    FRAME_SNAP_ABORT = 8, /* sender -> receiver: stream abandoned (status) */
    FRAME_TYPE_MAX
};

struct frame_header {
    uint32_t body_len;
    uint8_t type;
    uint32_t crc;
};

/* Writes header bytes 0..7 and returns the CRC of them, to be extended over
 * the body with st_crc32c() and stored with frame_header_set_crc(). */
uint32_t frame_header_start(uint8_t *hdr, uint8_t type, uint32_t body_len);
void frame_header_set_crc(uint8_t *hdr, uint32_t crc);
/* Convenience for a contiguous body. */
void frame_header_encode(uint8_t *hdr, uint8_t type, const uint8_t *body, uint32_t body_len);

/* Parses a header. ST_EPROTO (bad version, type or reserved bits),
 * ST_ETOOBIG (body_len > body_max). */
int frame_header_decode(const uint8_t *hdr, uint32_t body_max, struct frame_header *out);
/* Checks the CRC of a complete frame: ST_EPROTO on mismatch. */
int frame_check(const uint8_t *hdr, const struct frame_header *h, const uint8_t *body);

/* Release and wire-format versions a node announces in the handshake. A
 * block absent (a peer from before versions were exchanged) decodes as
 * present == false and all zero. */
struct frame_versions {
    bool present;
    uint16_t release_major, release_minor, release_patch;
    uint16_t wire_msg; /* WIRE_MSG_VERSION */
};

/* Fills v with this build's versions (STCACHE_RAFT_VERSION_*, the release). */
void frame_versions_self(struct frame_versions *v);
/* The compatibility rule (docs/ARCHITECTURE.md, "Versions and upgrades"):
 * true when a node of this build may talk to a peer announcing v: the same
 * major release and minor releases at most one apart, or no block (older
 * peer: its wire format is the one this release still reads). */
bool frame_versions_compatible(const struct frame_versions *self, const struct frame_versions *v);

struct frame_hello {
    uint16_t proto_version;
    uint64_t cluster_id;
    uint64_t from_id; /* the dialer */
    uint64_t to_id;   /* the id the dialer expects at this address */
    uint16_t addr_len;
    char addr[FRAME_HELLO_ADDR_MAX + 1]; /* dialer's advertised address, NUL-terminated */
    struct frame_versions versions;
};

/* The largest HELLO body a node accepts before the handshake. */
#define FRAME_HELLO_BODY_MAX                                                                       \
    (FRAME_HELLO_FIXED_SIZE + FRAME_HELLO_ADDR_MAX + 2 + FRAME_VERSIONS_LEN_MAX)

/* Returns the body size written (FRAME_HELLO_FIXED_SIZE + addr_len, plus
 * FRAME_VERSIONS_SIZE when h->versions.present); out must hold
 * FRAME_HELLO_BODY_MAX bytes. */
size_t frame_hello_encode(const struct frame_hello *h, uint8_t *out);
/* ST_EPROTO on bad magic, length, address or versions block (block_len <
 * FRAME_VERSIONS_KNOWN_SIZE or > FRAME_VERSIONS_LEN_MAX, or not exactly the
 * rest of the body; bytes past the known fields are ignored). The protocol
 * version and the versions are NOT checked here (the acceptor answers a
 * mismatch with a refusal). */
int frame_hello_decode(const uint8_t *body, size_t len, struct frame_hello *out);

struct frame_hello_ack {
    uint16_t proto_version;
    int32_t status; /* 0 accepted, else ST_EMISMATCH / ST_EPROTO */
    uint64_t cluster_id;
    uint64_t node_id; /* the acceptor */
    struct frame_versions versions;
};

#define FRAME_HELLO_ACK_BODY_MAX (FRAME_HELLO_ACK_SIZE + 2 + FRAME_VERSIONS_LEN_MAX)

/* encode: FRAME_HELLO_ACK_SIZE bytes, plus FRAME_VERSIONS_SIZE when
 * a->versions.present; out must hold FRAME_HELLO_ACK_BODY_MAX bytes.
 * decode: ST_EPROTO as frame_hello_decode, or a positive status. */
size_t frame_hello_ack_encode(const struct frame_hello_ack *a, uint8_t *out);
int frame_hello_ack_decode(const uint8_t *body, size_t len, struct frame_hello_ack *out);

/* SNAP_ACK / SNAP_ABORT bodies. decode: ST_EPROTO unless len ==
 * FRAME_SNAP_STATUS_SIZE, the stream id is non-zero and the status is 0 or a
 * negative code. */
size_t frame_status_encode(uint32_t stream, int32_t status, uint8_t *out);
int frame_status_decode(const uint8_t *body, size_t len, uint32_t *stream, int32_t *status);

#endif
