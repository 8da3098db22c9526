#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz drivers (tests/fuzz/corpus/<driver>).

Independent encoders of docs/WIRE-FORMAT.md, docs/KV.md (snapshot) and
docs/DISK-FORMAT.md (snapshot meta), and samples of the JSON, URLs and HTTP
responses the API exchanges: the seeds must be accepted by the C code (the
smoke tests check it), except files named bad_*, which must be refused."""
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


def kv_snapshot(applied, keys, meta=b"", clock=0, idem=()):
    hdr = b"STKVSNAP" + struct.pack("<IIQQIQQ", 2, 0, applied, len(keys), len(meta), clock,
                                     len(idem)) + meta
    out = hdr + struct.pack("<I", crc32c(hdr))
    for key, ctype, status, created, version, digest, expire, index in idem:
        rec = struct.pack("<BBBBIQQQQ", len(key), ctype, status, created, 0, version, digest,
                          expire, index)
        out += rec + struct.pack("<I", crc32c(rec)) + key
    for key, value, version, expire in keys:
        rec = struct.pack("<IIQQ", len(key), len(value), version, expire)
        out += rec + struct.pack("<I", crc32c(rec)) + key + value
    out += struct.pack("<Q", len(keys))
    return out + struct.pack("<I", crc32c(out))


def snap_meta(index, term, data_bytes, data_crc, members):
    body = b"".join(struct.pack("<QBBH", mid, role, 0, len(ctx)) + ctx
                    for mid, role, ctx in members)
    total = 48 + len(body) + 4
    out = b"STCSNAP1" + struct.pack("<IIQQQII", 1, total, index, term, data_bytes, data_crc,
                                    len(members)) + body
    return out + struct.pack("<I", crc32c(out))


def text_corpora():
    json_seeds = {
        "join_request": b'{"id":4,"raft":"127.0.0.1:9004","http":"127.0.0.1:8004"}',
        "join_reply": b'{"cluster_id":"00c1","members":[{"id":1,"raft":"h:1","http":"h:2",'
                      b'"voter":true},{"id":2,"raft":"[::1]:9","voter":false}]}',
        "error": b'{"error":"not the leader","code":"not_leader","leader":"127.0.0.1:8001"}',
        "cluster": b'{"id":2,"leader":1,"term":7,"role":"follower","commit":10,"applied":9,'
                   b'"members":[{"id":1,"a":[1,2.5e-3,{}]}]}',
        "escapes": b'"a\\u00e9\\ud83d\\ude00\\n\\"\\/"',
        "numbers": b'[0,-0,1.5,-2e10,18446744073709551615,true,false,null]',
        "nested": b'[[[[{"a":[[{}]]}]]]]',
        "value": b'{"key":"k","version":12,"value":"v\\u0000"}',
        "bad_trailing_comma": b'{"a":1,}',
        "bad_leading_zero": b'[01]',
    }
    for name, data in json_seeds.items():
        write("json", name, data)
    url_seeds = {
        "key": b"user%3A42%2Fprofile",
        "binary": b"%00%FF%80x%0A",
        "query": b"consistency=lease&ttl=30&value=a+b%20c",
        "hostport": b"127.0.0.1:8001",
        "v6": b"[::1]:9001",
        "bad_escape": b"ab%4",
        "bad_hex": b"%zz",
    }
    for name, data in url_seeds.items():
        write("url", name, data)
    guard_seeds = {  # "ALLOWLIST\nHOST": accepted when the Host is allowed
        "loopback": b"localhost,127.0.0.1,[::1]\n127.0.0.1:8001",
        "v6": b"localhost,127.0.0.1,[::1]\n[::1]:8001",
        "name_any_port": b"cache.example\nCACHE.example:443",
        "exact_port": b"cache.example:8443,10.0.0.5\ncache.example:8443",
        "star": b"*\nanything.example",
        "origin_like": b"*\nhttp://evil.example:8080/x",
        "bad_rebinding": b"localhost,127.0.0.1,[::1]\nevil.example:8001",
        "bad_other_port": b"cache.example:8443\ncache.example:8001",
        "bad_suffix": b"localhost\nlocalhost.evil.example",
        "bad_empty": b"localhost\n",
    }
    for name, data in guard_seeds.items():
        write("guard", name, data)
    err = b'{"error":"no leader","code":"no_leader"}'
    responses = {
        "value": b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                 b"ETag: \"42\"\r\nContent-Length: 5\r\n\r\nhello",
        "error": b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(err), err),
        "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"5\r\nhello\r\n1;ext=1\r\n \r\n0\r\nX-T: 1\r\n\r\n",
        "no_content": b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
        "http10_close": b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc",
        "created": b"HTTP/1.1 201 Created\r\nLocation: /kv/a\r\nContent-Length: 0\r\n\r\n",
        "bad_status": b"HTTP/1.1 20 OK\r\n\r\n",
        "bad_te": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
    }
    for name, data in responses.items():
        write("http_response", name, data)


def snapshot_corpora():
    members = [(1, 1, b"127.0.0.1:9001|127.0.0.1:8001"), (2, 1, b"h2"), (3, 2, b"")]
    write("snap_meta", "three", snap_meta(100, 4, 4096, 0xDEADBEEF, members))
    write("snap_meta", "empty_conf", snap_meta(1, 1, 0, 0, []))
    write("snap_meta", "one", snap_meta(7, 2, 52, 0x1234, [(9, 1, b"x" * 40)]))
    # An even first byte turns the target's CRC repair off: a damaged magic.
    bad = snap_meta(5, 1, 0, 0, [(1, 1, b"a")])
    write("snap_meta", "bad_magic", bytes([bad[0] ^ 1]) + bad[1:])

    keys = [(b"a", b"1", 3, 0), (b"user:42", b"x" * 100, 5, 0), (b"ttl", b"", 6, 1700000000000),
            (bytes(range(1, 20)), bytes(range(256)), 7, 0)]
    write("kv_snap", "four_keys", kv_snapshot(9, keys, meta=b"membership", clock=1234))
    write("kv_snap", "empty", kv_snapshot(0, []))
    write("kv_snap", "idem", kv_snapshot(12, keys[:2], clock=99,
                                         idem=[(b"req-1", 1, 0, 1, 5, 0x1122, 5000, 5),
                                               (b"req-2", 2, 2, 0, 0, 0x3344, 6000, 11)]))
    good = kv_snapshot(2, keys[:1])
    write("kv_snap", "bad_truncated", good[:-3])


if __name__ == "__main__":
    main()
    text_corpora()
    snapshot_corpora()
