"""Exactly-once writes (issue 14, finding 9): a write retried with the same
Idempotency-Key, through another node after the leader died, is answered
with the first result and applied once; the records survive snapshots and
restarts of every node; the CLI sends a key on every write."""

import os
import subprocess
import uuid

from harness import (Scenario, Unreachable, check, scaled, step, wait_for)

IDEM_ARGS = ["--log-level", "info", "--idempotency-keys-max", "1000",
             "--idempotency-ttl-s", "3600"]


def idem_put(node, key, value, idem, if_match=None):
    headers = {"Idempotency-Key": idem}
    if if_match is not None:
        headers["If-Match"] = '"%s"' % if_match
    return node.request("PUT", "/kv/" + key, body=value.encode(), headers=headers)


def retry_until_answered(what, fn, timeout=30):
    """Calls fn until it returns a response that is not a 503 (an election)
    and the node was reachable; returns that response."""
    def attempt():
        try:
            r = fn()
        except Unreachable:
            return None
        return None if r.status == 503 else r
    return wait_for(what, attempt, scaled(timeout))


class Idempotency(Scenario):
    """A conditional write (If-Match) with an Idempotency-Key, retried after
    kill -9 of the leader through a follower: without deduplication the
    retry fails its condition (or, unconditional, writes a new version);
    with it, it answers the first result: same version, applied once."""

    def run(self):
        c = self.cluster("idempotency", IDEM_ARGS)
        with step("3-node cluster; a counter key at version v0"):
            leader = c.start_bootstrap_and_join(3)
            v0 = c.put_retry("idem/counter", "0", via=leader)

        k1 = "k1-" + uuid.uuid4().hex
        with step("increment with If-Match v0 and an Idempotency-Key through the leader"):
            r = idem_put(leader, "idem/counter", "1", k1, if_match=v0)
            check(r.status == 200, "first conditional PUT: %s" % r.error_text())
            v1 = r.json()["version"]
            check(v1 > v0, "version did not advance: %d -> %d" % (v0, v1))
            check("idempotent-replayed" not in r.headers, "a first write marked replayed")
            k2 = "k2-" + uuid.uuid4().hex
            r = idem_put(leader, "idem/plain", "x", k2)
            check(r.status == 201, "plain PUT: %s" % r.error_text())
            vx = r.json()["version"]
            k3 = "k3-" + uuid.uuid4().hex
            r = c.put_retry("idem/doomed", "d", via=leader)
            r = leader.request("DELETE", "/kv/idem/doomed", headers={"Idempotency-Key": k3})
            check(r.status == 200, "DELETE: %s" % r.error_text())
            vd = r.json()["version"]

        with step("kill -9 the leader; retry each write through a follower"):
            leader.kill9()
            new = c.wait_leader()
            via = next(n for n in c.running() if n is not new)
            r = retry_until_answered("conditional retry", lambda: idem_put(
                via, "idem/counter", "1", k1, if_match=v0))
            check(r.status == 200, "retried conditional PUT through %r: %s (applied twice?)"
                  % (via, r.error_text()))
            check(r.json()["version"] == v1, "retry answered version %d, want the first %d"
                  % (r.json()["version"], v1))
            check(r.headers.get("idempotent-replayed") == "true",
                  "retry not marked Idempotent-Replayed: %r" % r.headers)
            r = retry_until_answered("plain retry", lambda: idem_put(via, "idem/plain", "x", k2))
            check(r.status == 201 and r.json()["version"] == vx,
                  "retried plain PUT: %s, want 201 version %d" % (r.error_text(), vx))
            r = retry_until_answered("delete retry", lambda: via.request(
                "DELETE", "/kv/idem/doomed", headers={"Idempotency-Key": k3}))
            check(r.status == 200 and r.json()["version"] == vd,
                  "retried DELETE: %s, want 200 version %d" % (r.error_text(), vd))

        with step("the key was applied once: value and version unchanged everywhere"):
            for n in c.running():
                g = c.get_retry("idem/counter", n)
                check(g.status == 200 and g.body == b"1" and g.headers.get("etag") == '"%d"' % v1,
                      "%r counter: %s etag %s, want 1 at %d" % (n, g.error_text(),
                                                               g.headers.get("etag"), v1))
            r = retry_until_answered("mismatch", lambda: idem_put(via, "idem/counter", "2", k1))
            check(r.status == 422 and r.json().get("code") == "idempotency_key_reused",
                  "same key, different request: %s, want 422" % r.error_text())

        with step("restart the old leader; snapshot every node; kill -9 all; restart"):
            leader.start()
            c.wait_leader()
            c.verify_identical()
            for n in c.running():
                r = retry_until_answered("snapshot", lambda n=n: n.request("POST", "/snapshot"))
                check(200 <= r.status < 300, "%r POST /snapshot: %s" % (n, r.error_text()))
            for n in list(c.nodes.values()):
                n.kill9()
            for n in c.nodes.values():
                n.start()
            c.wait_leader()

        with step("after snapshot + restart, retries on every node still replay"):
            for n in c.running():
                r = retry_until_answered("retry after restart", lambda n=n: idem_put(
                    n, "idem/counter", "1", k1, if_match=v0))
                check(r.status == 200 and r.json()["version"] == v1,
                      "%r retry after restart: %s, want version %d" % (n, r.error_text(), v1))
                check(r.headers.get("idempotent-replayed") == "true", "not replayed on %r" % n)
            c.verify_identical()

        with step("the CLI: --idempotency-key makes a repeated command a replay; "
                  "without it every invocation is a new write"):
            eps = ",".join(n.http for n in c.running())
            env = dict(os.environ)
            env.pop("STCACHE_ENDPOINTS", None)

            def cli(*args):
                p = subprocess.run([self.binary] + list(args) + ["--endpoints", eps, "--json"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                   timeout=scaled(60))
                check(p.returncode == 0, "stcache %s: exit %d: %s"
                      % (" ".join(args), p.returncode, p.stderr.decode()[:500]))
                import json
                return json.loads(p.stdout.decode())

            a = cli("put", "idem/cli", "v", "--idempotency-key", "cli-key-1")
            b = cli("put", "idem/cli", "v", "--idempotency-key", "cli-key-1")
            check(a["version"] == b["version"], "CLI retry with one key: %r then %r" % (a, b))
            x = cli("put", "idem/cli", "v")
            y = cli("put", "idem/cli", "v")
            check(x["version"] < y["version"] and x["version"] > a["version"],
                  "CLI without a key: two writes, got %r then %r" % (x, y))
            c.verify_identical()


SCENARIOS = {"idempotency": Idempotency}
