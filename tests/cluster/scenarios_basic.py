"""Cluster formation and the client API on a healthy cluster:
bootstrap + joins, static --peers starts (3 and 5 nodes), the HTTP API's
semantics through every node, and the `stcache` CLI against real nodes."""

import json
import os
import subprocess

import harness
from harness import (Scenario, Unreachable, check, count, log, retry_503, scaled, step, wait_for)
from scenarios_membership import wait_transferred


def write_through_each_and_read_everywhere(c, tag):
    """A write through each node is readable linearizably from every node."""
    nodes = sorted(c.running(), key=lambda n: n.id)
    written = {}
    for n in nodes:
        key = "%s/via-%d" % (tag, n.id)
        value = "value written through node %d" % n.id
        c.put_retry(key, value, via=n)
        written[key] = value
    for reader in nodes:
        for key, value in written.items():
            r = c.get_retry(key, reader)  # default consistency: linearizable
            check(r.status == 200 and r.text() == value,
                  "%r reads %r: %s (want %r)" % (reader, key, r.error_text(), value))
            r = c.get_retry(key, reader, consistency="linearizable")
            check(r.status == 200 and r.text() == value,
                  "%r reads %r linearizably: %s" % (reader, key, r.error_text()))
    return written


class Basic(Scenario):
    """bootstrap + two joins; writes through each node; API semantics."""

    def run(self):
        c = self.cluster("basic", ["--seed-api"])
        with step("bootstrap node 1, join nodes 2 and 3 through node 1"):
            leader = c.start_bootstrap_and_join(3)
            c.wait_members(voters=[1, 2, 3])
            infos = c.infos()
            ids = {i["cluster_id"] for i in infos.values()}
            check(len(ids) == 1, "nodes disagree on cluster_id: %s" % infos)
            for nid, i in infos.items():
                check(i["id"] == nid, "node %d answers /cluster with id %s" % (nid, i["id"]))
                for f in ("term", "commit", "applied", "role", "members"):
                    check(f in i, "/cluster of node %d lacks %r: %s" % (nid, f, i))
            log("leader is node %d, cluster_id %s" % (leader.id, ids.pop()))

        with step("a write through each node is readable linearizably from every node"):
            write_through_each_and_read_everywhere(c, "basic")

        with step("stale reads converge on every node once it has applied the commit index"):
            key = "basic/stale"
            c.put_retry(key, "s1", via=leader)
            commit = leader.info()["commit"]
            for n in c.running():
                c.wait_caught_up(n, commit)
                r = n.get(key, consistency="stale")
                check(r.status == 200 and r.text() == "s1", "%r stale: %s" % (n, r.error_text()))
                r = c.get_retry(key, n, consistency="lease")
                check(r.status == 200 and r.text() == "s1", "%r lease: %s" % (n, r.error_text()))

        with step("versions, ETag and compare-and-set through a follower"):
            follower = next(n for n in c.running() if n.id != leader.id)
            r = retry_503(lambda: follower.put("basic/cas", "one", if_absent=True))
            check(r.status in (200, 201), "If-None-Match * on a new key: %s" % r.error_text())
            v1 = r.json()["version"]
            r = retry_503(lambda: follower.put("basic/cas", "two", if_absent=True))
            check(r.status == 412, "If-None-Match * on an existing key: %s" % r.error_text())
            g = follower.get("basic/cas")
            check(g.status == 200 and g.text() == "one", "value after failed CAS: %s" % g.error_text())
            check(g.headers.get("etag") == '"%d"' % v1,
                  "ETag %r, want \"%d\"" % (g.headers.get("etag"), v1))
            r = retry_503(lambda: follower.put("basic/cas", "three", if_match=v1 + 1000))
            check(r.status == 412, "If-Match with a wrong version: %s" % r.error_text())
            r = retry_503(lambda: follower.put("basic/cas", "four", if_match=v1))
            check(r.status in (200, 201), "If-Match with the right version: %s" % r.error_text())
            v2 = r.json()["version"]
            check(v2 > v1, "version did not grow: %d -> %d" % (v1, v2))
            for n in c.running():
                g = c.get_retry("basic/cas", n)
                check(g.text() == "four", "%r after CAS: %s" % (n, g.error_text()))

        with step("delete through a follower: 404 everywhere, second delete 404"):
            r = retry_503(lambda: follower.delete("basic/via-1"))
            check(r.status in (200, 204), "DELETE: %s" % r.error_text())
            for n in c.running():
                g = c.get_retry("basic/via-1", n)
                check(g.status == 404, "%r after delete: %s" % (n, g.error_text()))
            r = retry_503(lambda: follower.delete("basic/via-1"))
            check(r.status == 404, "second DELETE: %s" % r.error_text())

        with step("binary keys and values survive the round trip"):
            key = bytes(range(256))[1:] + b"\x00end"
            value = bytes(range(256)) * 4
            r = retry_503(lambda: follower.put(key, value))
            check(r.status in (200, 201), "binary PUT: %s" % r.error_text())
            for n in c.running():
                g = c.get_retry(key, n)
                check(g.status == 200 and g.body == value, "%r binary GET: %s" % (n, g.error_text()))
            r = retry_503(lambda: follower.put("basic/empty-value", b""))
            check(r.status in (200, 201), "empty value PUT: %s" % r.error_text())
            g = c.get_retry("basic/empty-value", leader)
            check(g.status == 200 and g.body == b"", "empty value GET: %s" % g.error_text())

        with step("a key with a TTL expires on every node"):
            r = retry_503(lambda: follower.put("basic/ttl", "short-lived", ttl=1))
            check(r.status in (200, 201), "PUT with ttl: %s" % r.error_text())
            for n in c.running():
                wait_for("%r: basic/ttl to expire" % n,
                         lambda n=n: c.get_retry("basic/ttl", n).status == 404, timeout=20)

        with step("the seed's endpoints: /set, /get, /join"):
            for n in c.running():
                r = retry_503(lambda: n.request("GET", "/set?key=seed-%d&value=v%d" % (n.id, n.id)))
                check(r.status == 200 and r.text().strip() == "ok", "%r /set: %s" % (n, r.error_text()))
            for n in c.running():
                for m in c.running():
                    r = n.request("GET", "/get?key=seed-%d" % m.id)
                    check(r.status == 200 and r.text().strip() == "v%d" % m.id,
                          "%r /get seed-%d: %s" % (n, m.id, r.error_text()))
            r = leader.request("GET", "/join")
            check(400 <= r.status < 500, "/join without peerAddress: %s" % r.error_text())

        with step("/metrics speaks Prometheus text on every node"):
            for n in c.running():
                r = n.request("GET", "/metrics")
                check(r.status == 200, "%r /metrics: %s" % (n, r.error_text()))
                lines = [l for l in r.text().splitlines() if l and not l.startswith("#")]
                check(lines, "%r /metrics is empty" % n)
                for l in lines:
                    parts = l.rsplit(" ", 1)
                    check(len(parts) == 2, "%r /metrics: bad line %r" % (n, l))
                    float(parts[1])


class Static(Scenario):
    """static 3-node and 5-node starts with --peers."""

    def run(self):
        for size in (3, 5):
            c = self.cluster("static%d" % size)
            with step("start %d nodes with --peers and wait for one leader" % size):
                leader = c.start_static(size)
                c.wait_members(voters=list(range(1, size + 1)))
                ids = {i["cluster_id"] for i in c.infos().values()}
                check(len(ids) == 1, "cluster_id differs between nodes: %s" % ids)
                log("%d-node static cluster: leader %d" % (size, leader.id))
            with step("%d nodes: a write through each node is readable from every node" % size):
                write_through_each_and_read_everywhere(c, "static%d" % size)
            with step("%d nodes: a minority down keeps the cluster writable" % size):
                minority = [n for n in c.running() if n.id != leader.id][: (size - 1) // 2]
                for n in minority:
                    n.kill9()
                c.put_retry("static/minority-down", "still writable", via=leader)
                for n in c.running():
                    r = c.get_retry("static/minority-down", n)
                    check(r.text() == "still writable", "%r: %s" % (n, r.error_text()))
                for n in minority:
                    n.start()
                commit = leader.info()["commit"]
                for n in minority:
                    c.wait_caught_up(n, commit)
                    r = n.get("static/minority-down", consistency="stale")
                    check(r.status == 200, "restarted %r stale read: %s" % (n, r.error_text()))
            c.close()


class Cli(Scenario):
    """The `stcache` client subcommands against a real 3-node cluster."""

    def cli(self, *args, endpoints=None, stdin=None, env_endpoints=None):
        env = harness.cli_env(endpoints or env_endpoints)
        env.pop("STCACHE_ENDPOINTS", None)
        if env_endpoints:
            env["STCACHE_ENDPOINTS"] = env_endpoints
        argv = [self.binary] + list(args)
        if endpoints:
            argv += ["--endpoints", endpoints]
        p = subprocess.run(argv, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=env, timeout=scaled(60))
        return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")

    def expect(self, want_rc, *args, **kw):
        rc, out, err = self.cli(*args, **kw)
        check(rc == want_rc, "stcache %s: exit %d, want %d\nstdout: %r\nstderr: %s"
              % (" ".join(str(a) for a in args), rc, want_rc, out[:300], err[:1000]))
        return out, err

    def run(self):
        c = self.cluster("cli")
        with step("3-node cluster (bootstrap + 2 joins)"):
            leader = c.start_bootstrap_and_join(3)
            all_eps = ",".join(n.http for n in sorted(c.running(), key=lambda n: n.id))
            follower = next(n for n in c.running() if n.id != leader.id)

        with step("put / get / del through a follower, human output"):
            out, _ = self.expect(0, "put", "cli/a b", "hello world", endpoints=follower.http)
            check(out.startswith(b"OK"), "put output %r" % out)
            out, _ = self.expect(0, "get", "cli/a b", endpoints=follower.http)
            check(out == b"hello world", "get output %r" % out)
            wait_for("a stale read through the CLI to see the value",
                     lambda: self.cli("get", "cli/a b", "--consistency", "stale",
                                      endpoints=leader.http)[:2] == (0, b"hello world"))
            self.expect(0, "del", "cli/a b", endpoints=follower.http)
            _, err = self.expect(1, "get", "cli/a b", endpoints=follower.http)
            check("not found" in err, "get of a deleted key: stderr %r" % err)
            self.expect(1, "del", "cli/a b", endpoints=follower.http)

        with step("binary value through stdin, --json output"):
            value = bytes(range(256)) * 16
            self.expect(0, "put", "cli/bin", "-", endpoints=all_eps, stdin=value)
            out, _ = self.expect(0, "get", "cli/bin", endpoints=all_eps)
            check(out == value, "binary round trip: %d bytes back, want %d" % (len(out), len(value)))
            out, _ = self.expect(0, "get", "cli/bin", "--json", endpoints=all_eps)
            doc = json.loads(out)
            check(doc["found"] is True and "value_base64" in doc and doc["version"] > 0,
                  "get --json of a binary value: %r" % doc)
            out, _ = self.expect(0, "put", "cli/j", "v", "--json", endpoints=all_eps)
            v = json.loads(out)["version"]
            out, _ = self.expect(0, "get", "cli/j", "--json", endpoints=all_eps)
            doc = json.loads(out)
            check(doc == {"key": "cli/j", "found": True, "version": v, "value": "v"},
                  "get --json: %r" % doc)

        with step("compare-and-set and TTL flags"):
            self.expect(1, "put", "cli/j", "w", "--if-absent", endpoints=all_eps)
            self.expect(1, "put", "cli/j", "w", "--if-match", str(v + 999), endpoints=all_eps)
            self.expect(0, "put", "cli/j", "w", "--if-match", str(v), endpoints=all_eps)
            self.expect(0, "put", "cli/new", "n", "--if-absent", endpoints=all_eps)
            self.expect(0, "put", "cli/ttl", "t", "--ttl", "1", endpoints=all_eps)
            wait_for("cli/ttl to expire",
                     lambda: self.cli("get", "cli/ttl", endpoints=all_eps)[0] == 1, timeout=20)

        with step("members and status"):
            out, _ = self.expect(0, "members", endpoints=all_eps)
            text = out.decode()
            for n in c.running():
                check(n.raft in text and n.http in text, "members lacks %r:\n%s" % (n, text))
            check("(leader)" in text, "members marks no leader:\n%s" % text)
            out, _ = self.expect(0, "members", "--json", endpoints=all_eps)
            check(len(json.loads(out)["members"]) == 3, "members --json: %r" % out)
            out, _ = self.expect(0, "status", endpoints=all_eps)
            check(out.decode().count("\n") == 4, "status: want a header and 3 lines:\n%s" % out.decode())
            out, _ = self.expect(0, "status", "--json", endpoints=all_eps)
            st = json.loads(out)
            check(len(st) == 3 and all(e["cluster"] for e in st), "status --json: %r" % st)

        with step("failover in the endpoint list: dead endpoints first, env variable"):
            dead = "127.0.0.1:1"
            self.expect(0, "put", "cli/fo", "x", endpoints=dead + "," + all_eps)
            out, _ = self.expect(0, "get", "cli/fo", env_endpoints=dead + "," + follower.http)
            check(out == b"x", "get via env endpoints: %r" % out)
            _, err = self.expect(3, "get", "cli/fo", endpoints=dead + ",127.0.0.1:2")
            check("127.0.0.1:1" in err and "127.0.0.1:2" in err, "unavailable stderr: %s" % err)

        with step("snapshot and transfer"):
            self.expect(0, "snapshot", endpoints=leader.http)
            target = next(n for n in c.running() if n.id != leader.id)
            term_before = leader.info()["term"]
            out, _ = self.expect(0, "transfer", str(target.id), endpoints=all_eps)
            check(("transferred to node %d" % target.id).encode() in out, "transfer: %r" % out)
            wait_transferred(c, target, term_before)
            leader = c.wait_leader()

        with step("URL-unsafe and non-ASCII keys through the CLI match the HTTP API's"):
            key = "we/ird%20key?&=#+\u00fc\u20ac"
            self.expect(0, "put", key, "odd", endpoints=all_eps)
            r = c.get_retry(key.encode("utf-8"), follower)
            check(r.status == 200 and r.body == b"odd", "the CLI's key read over HTTP: %s"
                  % r.error_text())
            out, _ = self.expect(0, "get", key, endpoints=all_eps)
            check(out == b"odd", "get of an odd key: %r" % out)

        with step("a paused (SIGSTOP) endpoint: --timeout bounds the wait, the next one answers"):
            sleeper = next(n for n in c.running() if n.id != leader.id)
            awake = next(n for n in c.running() if n is not sleeper)
            sleeper.pause()
            try:
                out, err = self.expect(0, "get", "cli/fo", "--consistency", "stale", "--timeout",
                                       "1", endpoints=sleeper.http + "," + awake.http)
                check(out == b"x", "get past a paused endpoint: %r (stderr %s)" % (out, err))
                _, err = self.expect(3, "get", "cli/fo", "--timeout", "0.5",
                                     endpoints=sleeper.http)
                check("timed out" in err, "a paused endpoint alone: stderr %r" % err)
            finally:
                sleeper.resume()

        with step("kill the leader: the CLI with all endpoints still writes and reads"):
            leader.kill9()
            out, err = self.expect(0, "put", "cli/after-kill", "y", "--timeout", str(scaled(10)),
                                   endpoints=all_eps)
            out, _ = self.expect(0, "get", "cli/after-kill", endpoints=all_eps)
            check(out == b"y", "get after the leader died: %r" % out)
            out, _ = self.expect(0, "status", endpoints=all_eps)
            check("unreachable" in out.decode(), "status shows no unreachable node:\n%s" % out.decode())

        with step("usage errors exit 2"):
            self.expect(2, "get")
            self.expect(2, "put", "k")
            self.expect(2, "frobnicate")
            self.expect(2, "get", "k", "--consistency", "bogus")
            self.expect(2, "get", "k", endpoints="no-port")
            self.expect(2, "remove", "abc")


SCENARIOS = {"basic": Basic, "static": Static, "cli": Cli}
