"""Data written by earlier releases is read by this build: every
tests/fixtures/<release>/ (written by tests/fixtures/generate.py) holds a
node's data directory and a backup file with what they contain."""

import glob
import json
import os
import re
import shutil
import socket
import subprocess

from harness import Scenario, check, log, reserve_ports, step, wait_for

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")


def cli(binary, *args):
    p = subprocess.run([binary] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def listing(node, consistency):
    out, nxt = {}, None
    while True:
        path = "/kv?prefix=&limit=1000&consistency=%s" % consistency + ("&next=" + nxt if nxt else "")
        r = node.request("GET", path)
        check(r.status == 200, "%r listing: %s" % (node, r.error_text()))
        doc = r.json()
        for kv in doc["kvs"]:
            if kv.get("value_type") == "hash":  # listed without its fields
                out[kv["key"]] = [None, kv["version"], kv["expire_at_ms"], "hash"]
            else:
                out[kv["key"]] = [kv["value"], kv["version"], kv["expire_at_ms"]]
        if not doc["more"]:
            return out
        nxt = doc["next"]


def resp_command(port, *args, readonly=False):
    """One Redis command on a fresh connection (RESP2), after READONLY
    (stale reads: the node may be alone) if asked: the command's reply as
    text, read until it parses (simple types, bulk strings and one level of
    arrays: what the fixtures need)."""
    cmds = ([("READONLY",)] if readonly else []) + [args]
    msg = b"".join(b"*%d\r\n" % len(c) + b"".join(
        b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in c) for c in cmds)
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(msg)
        buf = b""
        while True:
            chunk = s.recv(65536)
            check(chunk, "connection closed after %r" % buf[:80])
            buf += chunk
            ends = _resp_ends(buf, len(cmds))
            if ends:
                return buf[ends[-2] if len(ends) > 1 else 0:].decode()
    finally:
        s.close()


def _resp_ends(buf, n):
    """The end offsets of the first n replies in buf, or None while they are
    incomplete."""
    def one(i):
        end = buf.find(b"\r\n", i)
        if end < 0:
            return None
        t, n = buf[i:i + 1], buf[i + 1:end]
        if t in (b"+", b"-", b":"):
            return end + 2
        if t == b"$":
            ln = int(n)
            return end + 2 if ln < 0 else (end + 4 + ln if len(buf) >= end + 4 + ln else None)
        if t == b"*":
            j = end + 2
            for _ in range(max(int(n), 0)):
                j = one(j)
                if j is None:
                    return None
            return j
        return None
    ends, i = [], 0
    for _ in range(n):
        i = one(i)
        if i is None:
            return None
        ends.append(i)
    return ends


def hgetall(port, key):
    """HGETALL as a dict (RESP2: a flat array of bulk strings)."""
    lines = resp_command(port, "HGETALL", key, readonly=True).split("\r\n")
    vals = [lines[i + 1] for i in range(1, len(lines) - 1) if lines[i].startswith("$")]
    return dict(zip(vals[0::2], vals[1::2]))


def same_keys(got, want, what):
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    differ = sorted(k for k in want if k in got and got[k] != want[k])
    check(not missing and not extra and not differ,
          "%s: missing %s, extra %s, differ %s" % (what, missing[:3], extra[:3],
                                                   [(k, got[k], want[k]) for k in differ[:3]]))


def metric(node, name):
    r = node.request("GET", "/metrics")
    m = re.search(r"^%s (\d+)$" % re.escape(name), r.text(), re.M)
    return int(m.group(1)) if m else None


class Fixtures(Scenario):
    """For every release's fixtures: a server restarts from a copy of the
    data directory (snapshot + WAL tail) and holds every key with its value,
    version and expiry, not the deleted key, and the idempotency records;
    forced alone it leads and takes writes. `snapshot inspect` reads the
    backup file and `snapshot restore` builds a cluster that serves it."""

    def run(self):
        dirs = sorted(glob.glob(os.path.join(FIXTURES, "*", "expected.json")))
        check(dirs, "no fixtures under %s" % FIXTURES)
        for path in dirs:
            self.one(os.path.dirname(path))

    def one(self, fdir):
        with open(os.path.join(fdir, "expected.json")) as f:
            want = json.load(f)
        rel = "%s (%s)" % (want["release"], os.path.basename(fdir))
        c = self.cluster("fixtures-" + os.path.basename(fdir), ["--log-level", "info"] + want["server_args"])
        n = c.new_node(want["node_id"])
        (redis_port,) = reserve_ports(1)
        n.extra_args = ["--redis", "127.0.0.1:%d" % redis_port]
        with step("%s: restart from a copy of the data directory" % rel):
            shutil.copytree(os.path.join(fdir, "data-node1"), n.data_dir)
            n.start()
            wait_for("%r to apply %d" % (n, want["applied"]),
                     lambda: (n.info() or {}).get("applied", 0) >= want["applied"])
            info = n.info()
            check(info["cluster_id"] == want["cluster_id"], "cluster id %r" % info["cluster_id"])
            check(sorted(m["id"] for m in info["members"]) == want["members"],
                  "members %r" % info["members"])
        with step("%s: every key with its value, version and expiry; no deleted key" % rel):
            same_keys(listing(n, "stale"), want["keys"], "data directory")
            for k in want["deleted"]:
                check(n.get(k, consistency="stale").status == 404, "%s is back" % k)
            got = metric(n, "stcache_kv_idempotency_records")
            check(got == len(want["idempotency"]), "idempotency records: %r" % got)
            log("%s: %d keys, %d idempotency records" % (rel, len(want["keys"]), got))
        if want.get("hashes") or want.get("sessions"):
            with step("%s: hashes with their fields, the session with its key" % rel):
                for key, fields in want.get("hashes", {}).items():
                    got = hgetall(redis_port, key)
                    check(got == fields, "%s: %r, want %r" % (key, got, fields))
                r = n.request("GET", "/sessions?consistency=stale")
                check(r.status == 200, "sessions: %s" % r.error_text())
                got = [{k: s[k] for k in ("id", "ttl_ms", "name", "attached")}
                       for s in r.json()["sessions"]]
                check(got == want["sessions"], "sessions %r, want %r" % (got, want["sessions"]))
                log("%s: %d hashes, %d sessions" % (rel, len(want.get("hashes", {})), len(got)))
        with step("%s: forced alone, the node leads and takes writes" % rel):
            n.stop()
            n.start(extra=["--force-new-cluster"])
            c.wait_leader([n])
            same_keys(listing(n, "linearizable"), want["keys"], "forced")
            c.put_retry("fixture/new", "x", via=n)
        bak = os.path.join(fdir, "backup.stcbak")
        b = want["backup"]
        with step("%s: snapshot inspect reads the backup" % rel):
            rc, out, err = cli(self.binary, "snapshot", "inspect", bak, "--json")
            check(rc == 0, "inspect: %d %s %s" % (rc, out, err))
            doc = json.loads(out)
            check(doc["ok"] and doc["index"] == b["index"] and doc["term"] == b["term"] and
                  doc["keys"] == b["keys"] and doc["cluster_id"] == b["cluster_id"],
                  "inspect: %r, want %r" % (doc, b))
        with step("%s: snapshot restore builds a node that serves it" % rel):
            r = c.new_node(9)
            rc, out, err = cli(self.binary, "snapshot", "restore", bak, "--data", r.data_dir,
                               "--id", "9", "--peers", c.peers_spec([r]), "--json")
            check(rc == 0, "restore: %d %s %s" % (rc, out, err))
            r.start()
            c.wait_leader([r])
            same_keys(listing(r, "linearizable"), want["keys"], "restored")


SCENARIOS = {"fixtures": Fixtures}
