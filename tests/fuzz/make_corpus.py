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


def kv_snapshot(applied, keys, meta=b"", clock=0, idem=(), version=2):
    """Keys are (key, value, version, expire[, type]); version 4 has a type
    byte per record (1: a hash, whose value is a field list) and an auth
    section (here without users)."""
    hdr = b"STKVSNAP" + struct.pack("<IIQQIQQ", version, 0, applied, len(keys), len(meta), clock,
                                     len(idem)) + meta
    out = hdr + struct.pack("<I", crc32c(hdr))
    for key, ctype, status, created, version, digest, expire, index in idem:
        rec = struct.pack("<BBBBIQQQQ", len(key), ctype, status, created, 0, version, digest,
                          expire, index)
        out += rec + struct.pack("<I", crc32c(rec)) + key
    for k in keys:
        key, value, kversion, expire = k[:4]
        vtype = k[4] if len(k) > 4 else 0
        rec = struct.pack("<HBBIQQ", len(key), vtype, 0, len(value), kversion, expire)
        out += rec + struct.pack("<I", crc32c(rec)) + key + value
    if version == 4:
        out += struct.pack("<II", 0, 0)  # the auth section, no users
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
    hval = struct.pack("<I", 2) + b"".join(struct.pack("<I", len(f)) + f + struct.pack("<I", len(v)) + v
                                           for f, v in ((b"name", b"ann"), (b"age", b"42")))
    hkeys = keys[:2] + [(b"user:h", hval, 8, 1700000000000, 1)]
    write("kv_snap", "hash_v4", kv_snapshot(9, hkeys, clock=5, version=4))
    write("kv_snap", "bad_hash_in_v2", kv_snapshot(9, hkeys, clock=5, version=2))
    write("kv_snap", "bad_hash_list", kv_snapshot(9, [(b"h", hval[:-1], 8, 0, 1)], version=4))
    good = kv_snapshot(2, keys[:1])
    write("kv_snap", "bad_truncated", good[:-3])


def wal_record(rtype, payload, wseq):
    """A sealed WAL record (src/storage/record.h, docs/DISK-FORMAT.md §3)."""
    n = len(payload)
    head = struct.pack("<IBBHI", 0x31525453, rtype, 0, 0, n)
    tail_head = struct.pack("<Q", wseq)
    hcrc = crc32c(tail_head, crc32c(head))
    rec = head + struct.pack("<I", hcrc) + tail_head + payload + b"\0" * ((8 - n % 8) % 8)
    return rec + struct.pack("<II", crc32c(rec), 0x45525453)


def wal_entries(first, entries):
    out = struct.pack("<QII", first, len(entries), 0)
    for term, etype, data in entries:
        out += struct.pack("<QIB3x", term, len(data), etype) + data
    return out


def wal_chunk(rtype, payload):
    """One chunk of the fuzz target's structured input (tests/fuzz/targets_wal.h)."""
    return struct.pack("<BH", rtype, len(payload)) + payload


def wal_corpora():
    ents = wal_entries(1, [(1, 1, b"set a 1"), (1, 2, b""), (2, 1, bytes(range(40)))])
    hs = struct.pack("<QQQ", 2, 1, 3)
    write("wal", "entries_hard_state", bytes([1]) + wal_chunk(1, ents) + wal_chunk(2, hs))
    # Two segments, the second starting at index 4 (bits 2-7 of byte 0 hold 3).
    two = (wal_chunk(1, ents) + wal_chunk(0xFF, b"") +
           wal_chunk(1, wal_entries(4, [(2, 1, b"x" * 100), (3, 1, b"y")])))
    write("wal", "two_segments", bytes([1 | 2 | (3 << 2)]) + two)
    trunc = (wal_chunk(1, wal_entries(1, [(1, 1, b"a")] * 5)) +
             wal_chunk(3, struct.pack("<Q", 4)) +
             wal_chunk(1, wal_entries(4, [(2, 1, b"b")] * 3)))
    write("wal", "truncate", bytes([1]) + trunc)
    # A snapshot mark at 3: loading from index 0 (no snapshot restored)
    # finds entries 1..3 missing and refuses.
    write("wal", "bad_snapshot_mark_without_snapshot",
          bytes([1]) + trunc + wal_chunk(4, struct.pack("<QQ", 3, 1)))
    # Raw bodies: a whole record, then a torn one (its tail never written):
    # recovery cuts the tail and opens.
    rec1 = wal_record(1, ents, 1)
    rec2 = wal_record(2, hs, 2)
    write("wal", "raw_torn_tail", bytes([0]) + rec1 + rec2[:len(rec2) - 8])
    write("wal", "bad_gap", bytes([1]) + wal_chunk(1, wal_entries(2, [(1, 1, b"a")])))
    write("wal", "bad_unknown_type", bytes([1]) + wal_chunk(9, b"12345678"))
    # Two raw segments, the first damaged: not the last, so corruption.
    bad = bytearray(rec1 + rec2)
    bad[40] ^= 1
    write("wal", "bad_damaged_first_segment", bytes([2]) + struct.pack("<H", len(bad)) + bytes(bad) +
          rec1)


def http_request_corpora():
    """Client connections for fuzz_http_request (tests/fuzz/targets_api.h):
    bad_* ones answer an error first (or nothing), the others a success."""
    def req(method, target, headers=(), body=b"", version=b"HTTP/1.1"):
        head = method + b" " + target + b" " + version + b"\r\nHost: 127.0.0.1\r\n"
        for h in headers:
            head += h + b"\r\n"
        if method == b"POST":
            head += b"Content-Type: application/json\r\n"
        elif body:
            head += b"Content-Type: application/octet-stream\r\n"
        if body:
            head += b"Content-Length: %d\r\n" % len(body)
        return head + b"\r\n" + body
    seeds = {
        "put_then_get": req(b"PUT", b"/kv/a", body=b"hello") + req(b"GET", b"/kv/a"),
        "put_ttl_stale_read": req(b"PUT", b"/kv/t?ttl=5", body=b"v") +
        req(b"GET", b"/kv/t?consistency=stale") + req(b"GET", b"/kv/t?consistency=lease"),
        "put_if_none_match_delete": req(b"PUT", b"/kv/c", (b"If-None-Match: *",), b"x") +
        req(b"DELETE", b"/kv/c"),
        "put_if_match": req(b"PUT", b"/kv/m", body=b"1") +
        req(b"PUT", b"/kv/m", (b'If-Match: "1"',), b"2"),
        "put_chunked": b"PUT /kv/ch HTTP/1.1\r\nContent-Type: application/octet-stream\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n"
                       b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        "put_expect_continue": req(b"PUT", b"/kv/e", (b"Expect: 100-continue",), b"body"),
        "put_idempotency_key": req(b"PUT", b"/kv/i", (b"Idempotency-Key: k-1",), b"v") +
        req(b"PUT", b"/kv/i", (b"Idempotency-Key: k-1",), b"v"),
        "put_percent_key": req(b"PUT", b"/kv/a%2Fb%20c", body=b"v"),
        "health": req(b"GET", b"/health") + req(b"GET", b"/readyz") + req(b"GET", b"/livez"),
        "metrics": req(b"GET", b"/metrics"),
        "cluster": req(b"GET", b"/cluster"),
        "snapshot": req(b"POST", b"/snapshot"),
        "seed_set_get": req(b"GET", b"/set?key=s&value=v+w") + req(b"GET", b"/get?key=s"),
        "http10_keep_alive": req(b"GET", b"/health", (b"Connection: keep-alive",),
                                 version=b"HTTP/1.0"),
        "bad_get_absent": req(b"GET", b"/kv/absent"),
        "bad_no_route": req(b"GET", b"/nope"),
        "bad_method": req(b"PATCH", b"/kv/a", body=b"x"),
        "bad_malformed": b"GARBAGE\r\n\r\n",
        "bad_empty_key": req(b"PUT", b"/kv/", body=b"x"),
        "bad_ttl": req(b"PUT", b"/kv/t?ttl=-1", body=b"x"),
        "bad_incomplete": b"GET /kv/a HTTP/1.1\r\n",
    }
    for name, data in seeds.items():
        write("http_request", name, data)


def kv_txn(guards, success, failure, ts=1000, vmax=1024, version=4):
    """A TXN kv command (docs/KV.md, "TXN"): items are (kind, flags, key,
    val, num); version 6 for the hash ops."""
    out = struct.pack("<BBBBIQQQ", version, 6, 0, 0, 0, 1, 7, ts)
    out += struct.pack("<IHHHH", vmax, len(guards), len(success), len(failure), 0)
    for kind, flags, key, val, num in list(guards) + list(success) + list(failure):
        out += struct.pack("<BBHIIq", kind, flags, 0, len(key), len(val), num) + key + val
    return out


def txn_corpora():
    """Seeds of fuzz_txn_json (POST /txn bodies) and fuzz_kv_cmd."""
    bodies = {
        "full": b'{"compare":[{"key":"a","target":"version","op":"=","version":3},'
                b'{"key":"b","target":"value","op":"!=","value":"x"},'
                b'{"key":"c","target":"exists","exists":false},{"key":"d","target":"ttl","ttl":true}],'
                b'"success":[{"put":{"key":"a","value":"1","ttl_ms":500}},{"get":{"key":"a"}},'
                b'{"delete":{"key":"b"}},{"delete_prefix":{"prefix":""}},{"incr":{"key":"n","by":-2}}],'
                b'"failure":[{"put":{"key":"a","value":"\\u00e9\\n","keep_ttl":true,"if_exists":true}}]}',
        "empty": b"{}",
        "only_ops": b'{"success":[{"get":{"key":"k"}}]}',
        "bad_target": b'{"compare":[{"key":"a","target":"size"}]}',
        "bad_nul": b'{"success":[{"get":{"key":"a\u0000b"}}]}',
        "bad_op": b'{"success":[{"frob":{"key":"a"}}]}',
        "bad_json": b'{"success":[',
        "bad_empty_key": b'{"success":[{"put":{"key":"","value":"v"}}]}',
    }
    for name, data in bodies.items():
        write("txn_json", name, data)
    write("kv_cmd", "txn_all_ops", kv_txn(
        [(1, 0, b"a", b"", 1), (2, 1, b"b", b"12", 0), (3, 0, b"zz", b"", 0), (4, 1, b"k", b"", 1)],
        [(1, 0, b"a", b"", 0), (2, 1 | 8, b"x", b"v", 5000), (3, 0, b"b", b"", 0),
         (4, 0, b"", b"", 0), (5, 0, b"n", b"", 7), (6, 0, b"n", b"1.5", 0), (7, 0, b"a", b"yz", 0),
         (8, 0, b"a", b"Q", 4), (9, 2 | 16, b"k", b"", 100), (10, 0, b"k", b"", 0),
         (11, 1, b"a", b"c", 0), (12, 0, b"c", b"", 0)],
        [(2, 4, b"a", b"w", 0)]))
    write("kv_cmd", "txn_empty", kv_txn([], [], []))
    write("kv_cmd", "txn_guard_fails", kv_txn([(3, 0, b"a", b"", 0)], [(3, 0, b"a", b"", 0)],
                                              [(1, 0, b"a", b"", 0)]))
    write("kv_cmd", "put", struct.pack("<BBBBIQQQ", 1, 1, 0, 0, 0, 1, 2, 1000) +
          struct.pack("<QQII", 0, 0, 1, 2) + b"k" + b"vv")
    write("kv_cmd", "bad_txn_v3", b"\x03" + kv_txn([], [], [])[1:])
    write("kv_cmd", "bad_txn_flags", kv_txn([], [(1, 1, b"a", b"", 0)], []))

    def hlist(pairs):  # a hash field list (docs/KV.md, "Value types")
        out = struct.pack("<I", len(pairs))
        for f, v in pairs:
            out += struct.pack("<I", len(f)) + f + struct.pack("<I", len(v)) + v
        return out
    hash_ops = [(13, 0, b"h", hlist([(b"f", b"1"), (b"g", b"x"), (b"f", b"2")]), 0),
                (14, 0, b"h", hlist([(b"g", b"y")]), 0), (16, 0, b"h", b"f", 5),
                (17, 0, b"h", hlist([(b"e", b"1.5")]), 0), (18, 0, b"h", b"g", 0), (19, 0, b"h", b"", 0),
                (15, 0, b"h", hlist([(b"g", b""), (b"zz", b"")]), 0), (1, 0, b"h", b"", 0),
                (13, 0, b"a", hlist([(b"f", b"1")]), 0), (2, 64, b"h", b"v", 0), (3, 64, b"h", b"", 0),
                (9, 0, b"h", b"", 100), (11, 0, b"h", b"h2", 0), (15, 0, b"h2", hlist([(b"f", b""), (b"e", b"")]), 0)]
    write("kv_cmd", "txn_hash_ops", kv_txn([], hash_ops, [], version=6))
    write("kv_cmd", "bad_txn_hash_v4", kv_txn([], hash_ops, [], version=4))
    write("kv_cmd", "bad_txn_hash_list", kv_txn([], [(13, 0, b"h", b"\x01\x00\x00\x00\x05", 0)], [], version=6))


if __name__ == "__main__":
    main()
    text_corpora()
    snapshot_corpora()
    wal_corpora()
    http_request_corpora()
    txn_corpora()
