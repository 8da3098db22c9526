"""Pub/sub and keyspace notifications on the Redis port (docs/REDIS.md,
"Pub/sub", "Keyspace notifications"), against a real redis-server 7 as the
reference, with redis-py and raw sockets:
  - RESP2 subscribed mode and RESP3 pushes, byte for byte as redis-server;
  - the notifications of a sequence of commands run through the leader, as
    seen by pattern subscribers on the leader and on a follower and by an
    exact keyevent subscriber, equal to redis-server's in content and order;
  - PUBLISH through a follower reaches the subscribers of every node;
  - expiry ("expired"), CONFIG SET/GET notify-keyspace-events;
  - a subscriber that reads nothing is disconnected past the pubsub output
    limit while the node goes on serving."""

import os
import shutil
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cluster"))

import harness  # noqa: E402
from harness import SANITIZED, Scenario, check, log, reserve_ports, scaled, step, wait_for  # noqa: E402

# Commands whose notifications are compared with redis-server's (no TTL
# runs out during the sequence: expiry is checked on its own).
EVENT_SEQ = [
    ("SET", "ev:a", "1"),
    ("SET", "ev:a", "2", "EX", "100"),
    ("SETEX", "ev:b", "100", "x"),
    ("PSETEX", "ev:c", "100000", "y"),
    ("SETNX", "ev:d", "1"),
    ("SETNX", "ev:d", "2"),  # no change: no event
    ("SET", "ev:d", "3", "NX"),  # no change
    ("MSET", "ev:e", "1", "ev:f", "2"),
    ("MSETNX", "ev:g", "1", "ev:h", "2"),
    ("INCR", "ev:n"),
    ("INCRBY", "ev:n", "5"),
    ("DECR", "ev:n"),
    ("DECRBY", "ev:n", "2"),
    ("INCRBYFLOAT", "ev:fl", "1.5"),
    ("APPEND", "ev:s", "hello"),
    ("SETRANGE", "ev:s", "1", "xy"),
    ("EXPIRE", "ev:s", "100"),
    ("PERSIST", "ev:s"),
    ("PERSIST", "ev:s"),  # no TTL: no event
    ("PEXPIRE", "ev:s", "100000"),
    ("RENAME", "ev:s", "ev:s2"),
    ("RENAMENX", "ev:s2", "ev:a"),  # ev:a exists: no change
    ("RENAMENX", "ev:s2", "ev:s3"),
    ("GETSET", "ev:a", "3"),
    ("SET", "ev:a", "4", "GET"),
    ("GETDEL", "ev:a"),
    ("DEL", "ev:e", "ev:f", "ev:none"),
    ("UNLINK", "ev:d"),
    ("SET", "ev:k", "1", "KEEPTTL"),
    ("SET", "ev:b", "y", "KEEPTTL"),
    ("GETEX", "ev:b", "PERSIST"),
    ("GETEX", "ev:n", "EX", "100"),
    ("EXPIRE", "ev:n", "-1"),  # a time already past deletes: "del"
    ("EXPIREAT", "ev:fl", "1"),
    ("HSET", "ev:h1", "f1", "1", "f2", "2"),
    ("HSETNX", "ev:h1", "f1", "x"),  # exists: no change
    ("HSETNX", "ev:h1", "f3", "3"),
    ("HMSET", "ev:h1", "f4", "4"),
    ("HINCRBY", "ev:h1", "f1", "5"),
    ("HINCRBYFLOAT", "ev:h1", "f2", "0.5"),
    ("HDEL", "ev:h1", "nofield"),  # no change
    ("HDEL", "ev:h1", "f1", "f2"),
    ("HDEL", "ev:h1", "f3", "f4"),  # the last fields: "hdel", then "del"
    ("SET", "ev:end", "1"),
]

# RESP2 subscribed mode on a raw connection, ended by RESET.
RAW2 = (b"UNSUBSCRIBE\r\nPUNSUBSCRIBE\r\nSUBSCRIBE ch1 ch2 ch1\r\nGET x\r\nECHO hi\r\nPING\r\n"
        b"PING hi\r\nPUBSUB NUMSUB ch1\r\nPSUBSCRIBE p* q?\r\nPUNSUBSCRIBE q? zz\r\n"
        b"UNSUBSCRIBE ch2 nope\r\nPUNSUBSCRIBE\r\nUNSUBSCRIBE\r\nPUBSUB NUMSUB ch1 ch2\r\n"
        b"PUBSUB CHANNELS ch*\r\nSUBSCRIBE ch3\r\nRESET\r\n")
# RESP3 after HELLO 3: pushes, commands allowed while subscribed.
RAW3 = (b"SUBSCRIBE a\r\nPING\r\nGET ev:nokey\r\nPSUBSCRIBE b*\r\nUNSUBSCRIBE\r\n"
        b"PUNSUBSCRIBE\r\nUNSUBSCRIBE\r\nRESET\r\n")


def raw_session(port, hello3, data, end):
    """Sends data (after HELLO 3 when asked, whose reply differs between
    servers and is dropped) and returns the replies up to `end`."""
    s = socket.create_connection(("127.0.0.1", port), timeout=scaled(10))
    try:
        if hello3:
            s.sendall(b"HELLO 3\r\n")
            got = b""
            while not got.endswith(b"$7\r\nmodules\r\n*0\r\n"):
                chunk = s.recv(65536)
                check(chunk, "HELLO 3: connection closed")
                got += chunk
        s.sendall(data)
        got = b""
        while not got.endswith(end):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        return got
    finally:
        s.close()


def drain(ps, until, timeout):
    """Messages of redis-py PubSub ps as (type, pattern, channel, data)
    until one satisfies until(msg)."""
    out = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = ps.get_message(timeout=0.2)
        if m is None:
            continue
        if m["type"] not in ("message", "pmessage"):
            continue
        t = (m["type"], m["pattern"], m["channel"], m["data"])
        out.append(t)
        if until(t):
            return out
    check(False, "no end of the notifications within %ss (got %d: %r)" % (timeout, len(out), out[-6:]))
    return out


def end_seen(t):
    return t[2] == b"__keyevent@0__:set" and t[3] == b"ev:end"


class PubSub(Scenario):
    def run(self):
        import redis
        import run_redis  # (imported here: it imports this file)
        tmp = harness.tempfile.mkdtemp(prefix="stcache-redis-ref-")
        ref, ref_port = run_redis.start_redis_server(tmp)
        try:
            self._run(redis, run_redis, ref_port)
        finally:
            run_redis.stop_redis_server(ref)
            shutil.rmtree(tmp, ignore_errors=True)

    def _run(self, redis, run_redis, ref_port):
        c = self.cluster("redis-pubsub")
        ports = {}
        for i in (1, 2, 3):
            n = c.new_node(i)
            (p,) = reserve_ports(1)
            n.extra_args = ["--redis", "127.0.0.1:%d" % p, "--notify-keyspace-events", "KEA"]
            ports[i] = p
        spec = c.peers_spec()
        for n in c.nodes.values():
            n.start(["--peers", spec])
        leader = c.wait_leader()
        follower = [n for n in c.nodes.values() if n.id != leader.id][0]
        ref = redis.Redis(host="127.0.0.1", port=ref_port)
        ref.config_set("notify-keyspace-events", "KEA")
        lead = redis.Redis(host="127.0.0.1", port=ports[leader.id], socket_timeout=scaled(10))
        fol = redis.Redis(host="127.0.0.1", port=ports[follower.id], socket_timeout=scaled(10))

        with step("RESP2 subscribed mode and RESP3 pushes: the bytes of redis-server"):
            for name, hello3, data in (("RESP2", False, RAW2), ("RESP3", True, RAW3)):
                want = raw_session(ref_port, hello3, data, b"+RESET\r\n")
                for node in (leader, follower):
                    got = raw_session(ports[node.id], hello3, data, b"+RESET\r\n")
                    if got != want:
                        log("  %s differs on %r\n    redis:   %r\n    stcache: %r" % (name, node, want, got))
                    check(got == want, "%s subscribed session differs from redis-server's" % name)

        with step("a RESP3 subscriber gets keyspace notifications as push messages, as redis-server's"):
            def resp3_message(port, writer):
                s = socket.create_connection(("127.0.0.1", port), timeout=scaled(10))
                try:
                    got = b""
                    s.sendall(b"HELLO 3\r\nSUBSCRIBE __keyevent@0__:del\r\n")
                    while not got.endswith(b"$18\r\n__keyevent@0__:del\r\n:1\r\n"):
                        chunk = s.recv(65536)
                        check(chunk, "closed while subscribing")
                        got += chunk
                    writer.set("r3:key", "1")
                    writer.delete("r3:key")
                    got = b""
                    while not got.endswith(b"r3:key\r\n"):
                        chunk = s.recv(65536)
                        check(chunk, "closed before the message")
                        got += chunk
                    return got
                finally:
                    s.close()
            want = resp3_message(ref_port, ref)
            got = resp3_message(ports[follower.id], lead)
            check(want == b">3\r\n$7\r\nmessage\r\n$18\r\n__keyevent@0__:del\r\n$6\r\nr3:key\r\n",
                  "redis-server's RESP3 message: %r" % want)
            check(got == want, "RESP3 message on a follower: %r" % got)

        with step("notifications of a command sequence, on the leader and a follower, as redis-server's"):
            subs = {}
            for tag, r in (("ref", ref), ("leader", lead), ("follower", fol)):
                ps = r.pubsub()
                ps.psubscribe("__key*__:*")
                subs[tag] = ps
            ex = {}
            for tag, r in (("ref", ref), ("follower", fol)):
                ps = r.pubsub()
                ps.subscribe("__keyevent@0__:set")
                ex[tag] = ps
            for tag in list(subs) + ["ex-" + t for t in ex]:
                ps = subs.get(tag) or ex[tag[3:]]
                m = ps.get_message(timeout=scaled(5))
                check(m and m["type"] in ("psubscribe", "subscribe"), "%s confirmation: %r" % (tag, m))
            for args in EVENT_SEQ:
                w = run_redis.outcome(lambda a=args: ref.execute_command(*a))
                g = run_redis.outcome(lambda a=args: lead.execute_command(*a))
                check(w == g, "%r: redis %r, stcache %r" % (args, w, g))
            want = drain(subs["ref"], end_seen, scaled(10))
            log("  redis-server notified %d messages" % len(want))
            for tag in ("leader", "follower"):
                got = drain(subs[tag], end_seen, scaled(10))
                if got != want:
                    for i in range(max(len(got), len(want))):
                        w = want[i] if i < len(want) else None
                        g = got[i] if i < len(got) else None
                        if w != g:
                            log("  %s: first difference at %d: redis %r, stcache %r" % (tag, i, w, g))
                            break
                check(got == want, "the %s's notifications differ from redis-server's" % tag)
            wantx = drain(ex["ref"], end_seen, scaled(10))
            gotx = drain(ex["follower"], end_seen, scaled(10))
            check(gotx == wantx and wantx[0][0] == "message",
                  "exact keyevent subscriber: redis %r, stcache %r" % (wantx, gotx))

        with step("a key running out of time notifies \"expired\" on every node"):
            for r in (ref, lead):
                r.set("ev:ttl", "1", px=100)
            for tag in ("ref", "leader", "follower"):
                got = drain(subs[tag], lambda t: t[2] == b"__keyevent@0__:expired", scaled(20))
                check(got[-2:] == [("pmessage", b"__key*__:*", b"__keyspace@0__:ev:ttl", b"expired"),
                                   ("pmessage", b"__key*__:*", b"__keyevent@0__:expired", b"ev:ttl")],
                      "%s expiry: %r" % (tag, got[-2:]))
            for ps in list(subs.values()) + list(ex.values()):
                ps.close()

        with step("PUBLISH through a follower reaches the subscribers of every node, as redis-server's"):
            subs = {}
            for tag, r in (("ref", ref), ("leader", lead), ("follower", fol)):
                ps = r.pubsub()
                ps.subscribe("news")
                ps.psubscribe("n*")
                for _ in range(2):
                    m = ps.get_message(timeout=scaled(5))
                    check(m and m["type"] in ("subscribe", "psubscribe"), "%s confirmation: %r" % (tag, m))
                subs[tag] = ps
            check(ref.publish("news", "hi") == 2, "redis-server PUBLISH receivers")
            n = fol.publish("news", "hi")
            check(n == 2, "PUBLISH through the follower counts its own 2 receivers: %r" % n)
            check(lead.publish("other", "x") == 0, "PUBLISH without receivers")
            want = drain(subs["ref"], lambda t: t[0] == "pmessage", scaled(10))
            check(want == [("message", None, b"news", b"hi"), ("pmessage", b"n*", b"news", b"hi")],
                  "redis-server's messages: %r" % want)
            for tag in ("leader", "follower"):
                got = drain(subs[tag], lambda t: t[0] == "pmessage", scaled(10))
                check(got == want, "%s's messages: %r" % (tag, got))
            for ps in subs.values():
                ps.close()

        with step("at most 4096 subscriptions per connection"):
            conn = redis.Connection(host="127.0.0.1", port=ports[follower.id], socket_timeout=scaled(10))
            for half in (0, 2048):  # (4096 arguments at most per command)
                conn.send_command("SUBSCRIBE", *["c%d" % i for i in range(half, half + 2048)])
            last = None
            for _ in range(4096):
                last = conn.read_response()
            check(last == [b"subscribe", b"c4095", 4096], "the 4096th subscription: %r" % (last,))
            conn.send_command("PSUBSCRIBE", "one-more*")
            try:
                got = conn.read_response()
            except redis.exceptions.ResponseError as e:
                got = str(e)
            check(isinstance(got, str) and "too many subscriptions" in got, "the 4097th: %r" % (got,))
            conn.send_command("SUBSCRIBE", "c0")  # already held: not a new one
            check(conn.read_response() == [b"subscribe", b"c0", 4096], "re-subscribing at the bound")
            conn.disconnect()

        with step("CONFIG SET/GET notify-keyspace-events as redis-server"):
            for v in ("Kg$", "KEA", "E"):
                ref.config_set("notify-keyspace-events", v)
                fol.config_set("notify-keyspace-events", v)
                check(fol.config_get("notify-keyspace-events") == ref.config_get("notify-keyspace-events"),
                      "CONFIG GET after SET %r: %r" % (v, fol.config_get("notify-keyspace-events")))
            e = run_redis.outcome(lambda: fol.config_set("notify-keyspace-events", "KQ"))
            w = run_redis.outcome(lambda: ref.config_set("notify-keyspace-events", "KQ"))
            check(e == w, "CONFIG SET bad letters: redis %r, stcache %r" % (w, e))
            wait_for("the closed subscribers to leave", lambda: fol.pubsub_numpat() == 0,
                     timeout=scaled(10))
            check(fol.pubsub_numpat() == 0 and fol.pubsub_channels() == [], "PUBSUB after unsubscribing")

        with step("a subscriber that reads nothing is disconnected; the node goes on serving"):
            fol.config_set("notify-keyspace-events", "KEA")
            fol.config_set("client-output-buffer-limit", "pubsub 256kb 128kb 60")
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
            s.connect(("127.0.0.1", ports[follower.id]))
            s.sendall(b"PSUBSCRIBE *\r\n")
            wait_for("the slow subscriber to count", lambda: fol.pubsub_numpat() == 1, timeout=scaled(10))
            before = fol.info("stats")["client_output_buffer_limit_disconnections"]
            key = "k" * 1000
            n = 0
            batches = 20 if SANITIZED else 60
            # Each key notifies ~2 kB (keyspace + keyevent): 60 x 100 keys
            # outgrow the kernel's socket buffers and the 256 kB limit.
            while n < batches and fol.info("stats")["client_output_buffer_limit_disconnections"] == before:
                lead.mset({"%s%d:%d" % (key[:900], n, i): "v" for i in range(100)})
                n += 1
            wait_for("the slow subscriber's disconnection",
                     lambda: fol.info("stats")["client_output_buffer_limit_disconnections"] > before,
                     timeout=scaled(20))
            log("  disconnected after %d batches of 100 writes" % n)
            check(fol.pubsub_numpat() == 0, "the slow subscriber still counts")
            lead.set("after", "1")
            check(fol.get("after") == b"1", "the follower serves reads after the drop")
            s.close()


SCENARIOS = {"pubsub": PubSub}
