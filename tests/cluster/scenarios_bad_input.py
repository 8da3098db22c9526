"""Bad input of every kind: malformed HTTP, oversized keys/values/bodies,
unknown routes and bad parameters, garbage on the raft port, nodes of other
clusters and wrong data directories. Each gets a clear error; the cluster
keeps serving and loses nothing."""

import os
import random
import socket
import time

from harness import (Scenario, check, log, scaled, step, wait_for)

MAX_VALUE = 65536


def raw_exchange(addr, data, read_timeout=None, shutdown_write=False):
    """Sends raw bytes; returns what the server answered before closing (or
    before read_timeout seconds of silence)."""
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=scaled(10))
    try:
        try:
            s.sendall(data)
            if shutdown_write:
                s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may answer and close before reading everything
        s.settimeout(read_timeout or scaled(10))
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out and _complete(out):
                break
        return out
    finally:
        s.close()


def _complete(resp):
    head, _, body = resp.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    return False


def status_of(resp):
    parts = resp.split(b" ", 2)
    if len(parts) < 2 or not resp.startswith(b"HTTP/1."):
        return None
    try:
        return int(parts[1])
    except ValueError:
        return None


class BadInput(Scenario):
    def run(self):
        c = self.cluster("badinput", ["--log-level", "info", "--max-value-bytes", str(MAX_VALUE)])
        ledger = {}

        def serving(tag):
            key = "bad/alive/%s" % tag
            c.put_retry(key, tag)
            ledger[key] = tag
            for n in c.nodes.values():
                check(n.running(), "%r died (%s)" % (n, tag))

        with step("3-node cluster with --max-value-bytes %d" % MAX_VALUE):
            leader = c.start_bootstrap_and_join(3)
            follower = next(n for n in c.running() if n.id != leader.id)
            serving("start")

        with step("malformed HTTP gets a 400 and the connection closes"):
            cases = [
                b"THIS IS NOT HTTP\r\n\r\n",
                b"GET /kv/x HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
                b"PUT /kv/x HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
                b"GET /kv/x HTTP/9.9\r\n\r\n",
                b"\x00\x01\x02\x03\xff\xfe\r\n\r\n",
                b"GET /kv/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            ]
            for data in cases:
                for n in (leader, follower):
                    resp = raw_exchange(n.http, data)
                    st = status_of(resp)
                    check(st is not None and 400 <= st < 500,
                          "%r answered %r to %r" % (n, resp[:200], data[:60]))
            resp = raw_exchange(leader.http, b"GET /kv/x HTTP/1.1\r\nX: " + b"a" * 100000 + b"\r\n\r\n")
            st = status_of(resp)
            check(st in (400, 413, 414, 431), "a 100 KB header: %r" % resp[:200])
            # a client that sends half a request and goes away
            raw_exchange(leader.http, b"PUT /kv/half HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc",
                         read_timeout=0.2, shutdown_write=True)
            serving("malformed")

        with step("oversized key, value and body: 4xx with a JSON error"):
            r = follower.put("k" * 2000, "v")
            check(r.status in (400, 413, 414, 431), "2000-byte key: %s" % r.error_text())
            check("error" in r.json(), "no JSON error for a long key: %r" % r.body[:200])
            r = leader.put("bad/big", os.urandom(MAX_VALUE + 1))
            check(r.status == 413, "value over --max-value-bytes: %s" % r.error_text())
            check("error" in r.json(), "no JSON error for a big value: %r" % r.body[:200])
            value = os.urandom(MAX_VALUE)
            r = leader.put("bad/max", value)
            check(r.status in (200, 201), "value of exactly --max-value-bytes: %s" % r.error_text())
            ledger["bad/max"] = value
            resp = raw_exchange(follower.http, b"PUT /kv/huge HTTP/1.1\r\nHost: %s\r\n" % follower.http.encode() +
                                b"Content-Length: 1000000000000\r\n\r\nabc")
            check(status_of(resp) == 413, "Content-Length 1e12: %r" % resp[:200])
            resp = raw_exchange(leader.http, b"GET /kv/" + b"%41" * 20000 + b" HTTP/1.1\r\n\r\n")
            check(status_of(resp) in (400, 413, 414, 431), "60 KB URL: %r" % resp[:200])
            serving("oversized")

        with step("unknown routes, methods and bad parameters: clear 4xx errors"):
            checks = [
                ("GET", "/nope", None, {}, (404,)),
                ("GET", "/kv", None, {}, (400, 404)),
                ("GET", "/kv/", None, {}, (400, 404)),
                ("POST", "/kv/x", b"v", {}, (405,)),
                ("PATCH", "/kv/x", b"v", {}, (405, 501)),
                ("GET", "/kv/x?consistency=bogus", None, {}, (400,)),
                ("PUT", "/kv/x?ttl=abc", b"v", {}, (400,)),
                ("PUT", "/kv/x?ttl=-5", b"v", {}, (400,)),
                ("PUT", "/kv/x", b"v", {"If-Match": "not-a-version"}, (400, 412)),
                ("GET", "/kv/%zz", None, {}, (400,)),
                ("POST", "/cluster/members", b"{not json", {}, (400,)),
                ("POST", "/cluster/members", b'{"id":0,"raft":"x","http":"y"}', {}, (400,)),
                ("DELETE", "/cluster/members/abc", None, {}, (400, 404)),
                ("DELETE", "/cluster/members/424242", None, {}, (400, 404)),
                ("POST", "/cluster/transfer", None, {}, (400,)),
                ("POST", "/cluster/transfer?to=abc", None, {}, (400,)),
            ]
            for method, path, body, headers, want in checks:
                r = leader.request(method, path, body=body, headers=headers)
                check(r.status in want, "%s %s: %s (want %s)" % (method, path, r.error_text(), want))
                if r.status != 405 and r.status != 501:
                    try:
                        doc = r.json()
                    except ValueError:
                        doc = {}
                    check("error" in doc, "%s %s: no JSON error body: %r" % (method, path, r.body[:200]))
            g = leader.get("x")
            check(g.status == 404, "bad requests created key x: %s" % g.error_text())
            serving("routes")

        with step("garbage on every raft port: nodes survive, cluster serves"):
            rnd = random.Random(7)
            for n in c.running():
                raw_exchange(n.raft, bytes(rnd.getrandbits(8) for _ in range(8192)), read_timeout=0.5)
                raw_exchange(n.raft, b"\xff" * 64, read_timeout=0.5, shutdown_write=True)
                raw_exchange(n.raft, b"GET / HTTP/1.1\r\n\r\n", read_timeout=0.5)
                # a frame header that promises a huge frame, then silence
                raw_exchange(n.raft, b"\x00\x00\x00\x7f" * 4 + b"\xff\xff\xff\xff" * 4,
                             read_timeout=0.5, shutdown_write=True)
            serving("raft-garbage")

        with step("a node of another cluster added as a learner gets nothing and gives nothing"):
            other = self.cluster("badinput-other")
            b = other.new_node(1).start(["--bootstrap"])
            other.wait_leader()
            check(b.put("other/own", "mine").status in (200, 201), "write in the other cluster")
            b_cid = b.info()["cluster_id"]
            a_cid = leader.info()["cluster_id"]
            check(b_cid != a_cid, "two bootstraps produced the same cluster_id %s" % a_cid)
            leader = c.wait_leader()
            body = '{"id":9,"raft":"%s","http":"%s"}' % (b.raft, b.http)
            r = leader.request("POST", "/cluster/members", body=body,
                               headers={"Content-Type": "application/json"})
            check(200 <= r.status < 300, "adding a foreign node as learner: %s" % r.error_text())
            for i in range(30):  # exposure: the leader replicates to the foreign node meanwhile
                c.put_retry("bad/foreign/%d" % i, "x")
                ledger["bad/foreign/%d" % i] = "x"
            bi = b.info()
            check(b.running(), "the foreign node died")
            check(bi["cluster_id"] == b_cid and [m["id"] for m in bi["members"]] == [1],
                  "the foreign node was changed by the other cluster: %s" % bi)
            check(b.get("bad/foreign/0", consistency="stale").status == 404,
                  "the foreign node accepted another cluster's entries")
            check(b.get("other/own").text() == "mine", "the foreign node lost its own data")
            li = leader.info()
            check(any(m["id"] == 9 and not m["voter"] for m in li["members"]),
                  "the foreign node was promoted to voter: %s" % li["members"])
            r = leader.request("DELETE", "/cluster/members/9")
            check(200 <= r.status < 300, "removing the foreign learner: %s" % r.error_text())
            c.wait_members(voters=sorted(c.nodes))
            serving("foreign-learner")

        with step("a foreign node campaigning at our raft port wins no votes"):
            # C thinks its peer 2 lives at node 1's raft address.
            target = c.nodes[1]
            intruder = other.new_node(2)
            spec = "2=%s/%s,1=%s/%s" % (intruder.raft, intruder.http, target.raft, target.http)
            intruder.start(["--peers", spec])
            wait_for("the intruder's HTTP API", lambda: intruder.info() is not None)
            t_end = time.monotonic() + scaled(2)
            i = 0
            while time.monotonic() < t_end or i < 20:  # exposure, while writing
                c.put_retry("bad/intruder/%d" % i, "y")
                ledger["bad/intruder/%d" % i] = "y"
                i += 1
            ii = intruder.info()
            check(ii["leader"] is None, "the intruder elected a leader with a foreign vote: %s" % ii)
            check(intruder.running(), "the intruder crashed")
            intruder.kill9()
            serving("intruder")

        with step("wrong data directories are refused with a clear error"):
            b.stop()
            wrong = c.new_node(8)
            wrong.data_dir = b.data_dir  # another cluster's data, asked to join this one
            wrong.start(["--join", leader.http], expect_exit=True)
            code = wait_for("the node with a foreign data dir to exit",
                            lambda: wrong.proc.poll() is not None and [wrong.proc.returncode])[0]
            check(code != 0, "a join with another cluster's data dir exited 0")
            log("foreign data dir refused: exit %d, log tail: %s"
                % (code, wrong.log_text().strip().splitlines()[-1:]))
            c.retire(wrong)
            # a member's data directory started under another id
            donor = next(n for n in c.running() if n.id != c.wait_leader().id)
            donor.stop()
            imposter = c.new_node(11)
            imposter.data_dir = donor.data_dir
            imposter.start(expect_exit=True)
            code = wait_for("the node with another id's data dir to exit",
                            lambda: imposter.proc.poll() is not None and [imposter.proc.returncode])[0]
            check(code != 0, "starting node 2's data dir as node 11 exited 0")
            log("wrong-id data dir refused: exit %d, log tail: %s"
                % (code, imposter.log_text().strip().splitlines()[-1:]))
            c.retire(imposter)
            donor.start()
            serving("wrong-data-dir")

        with step("nothing lost: every acknowledged write on every node"):
            c.verify_ledger(ledger)


SCENARIOS = {"bad_input": BadInput}
