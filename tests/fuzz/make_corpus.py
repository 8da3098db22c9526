#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz drivers (tests/fuzz/corpus/{msg,frame}).

An independent encoder of docs/WIRE-FORMAT.md: the seeds must decode with
the C codec (the smoke tests and fuzz runs would show otherwise)."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def msg(mtype, entries=(), snapshot=None, reject=False, **f):
    flags = (1 if reject else 0) | (2 if snapshot is not None else 0)
    out = struct.pack("<BBBBI", 1, mtype, flags, 0, len(entries))
    for k in ("from_", "to", "term", "index", "log_term", "commit", "reject_hint",
              "hint_term", "context"):
        out += struct.pack("<Q", f.get(k, 0))
    if snapshot is not None:
        index, term, members = snapshot
        out += struct.pack("<QQI", index, term, len(members))
        for mid, role, ctx in members:
            out += struct.pack("<QBH", mid, role, len(ctx)) + ctx
    for etype, term, index, payload in entries:
        out += struct.pack("<BBBBIQQ", etype, 0, 0, 0, len(payload), term, index)
    for _, _, _, payload in entries:
        out += payload
    return out


def frame(ftype, body):
    hdr = struct.pack("<IBBH", len(body), ftype, 1, 0)
    return hdr + struct.pack("<I", crc32c(body, crc32c(hdr))) + body


def hello(cluster, frm, to, addr):
    return struct.pack("<IHHQQQ", 0x54435453, 1, len(addr), cluster, frm, to) + addr


def hello_ack(status, cluster, node):
    return struct.pack("<IHHiQQ", 0x54435453, 1, 0, status, cluster, node)


def write(kind, name, data):
    d = os.path.join(HERE, "corpus", kind)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    base = dict(from_=1, to=2, term=5, index=10, log_term=4, commit=9, context=77)
    members = [(1, 1, b"127.0.0.1:7001"), (2, 1, b"127.0.0.1:7002"), (3, 2, b"")]
    seeds = {
        "append": msg(1, entries=[(1, 5, 11, b"set a 1"), (3, 5, 12, b""),
                                  (2, 5, 13, bytes(range(40)))], **base),
        "append_resp_reject": msg(2, reject=True, reject_hint=7, hint_term=3, **base),
        "vote": msg(3, **base),
        "prevote_resp": msg(6, reject=True, **base),
        "heartbeat": msg(7, **base),
        "snapshot": msg(9, snapshot=(100, 4, members), **base),
        "read_index_resp": msg(12, **base),
        "propose": msg(13, entries=[(1, 1, 1, b"x" * 300)], **base),
    }
    for name, data in seeds.items():
        write("msg", name, data)
    write("msg", "snapshot_meta", struct.pack("<QQI", 9, 2, 1) + struct.pack("<QBH", 1, 1, 3) + b"abc")

    write("frame", "hello", hello(0xC1, 1, 2, b"10.0.0.1:7000"))
    write("frame", "hello_ack", hello_ack(0, 0xC1, 2))
    write("frame", "hello_ack_refused", hello_ack(-18, 0xC1, 2))
    write("frame", "status", struct.pack("<Ii", 3, -15))
    write("frame", "frame_msg", frame(3, seeds["heartbeat"]))
    write("frame", "frame_hello", frame(1, hello(7, 1, 2, b"[::1]:7000")))
    write("frame", "frame_chunk", frame(5, struct.pack("<IQ", 1, 0) + b"chunk-bytes"))
    write("frame", "addr_v4", b"127.0.0.1:7000")
    write("frame", "addr_v6", b"[fe80::1]:65535")


if __name__ == "__main__":
    main()
