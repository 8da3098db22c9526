"""Data written by earlier releases is read by this build: every
tests/fixtures/<release>/ (written by tests/fixtures/generate.py) holds a
node's data directory and a backup file with what they contain."""

import glob
import json
import os
import re
import shutil
import subprocess

from harness import Scenario, check, log, step, wait_for

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
            out[kv["key"]] = [kv["value"], kv["version"], kv["expire_at_ms"]]
        if not doc["more"]:
            return out
        nxt = doc["next"]


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
        rel = want["release"]
        c = self.cluster("fixtures-" + rel, ["--log-level", "info"] + want["server_args"])
        n = c.new_node(want["node_id"])
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
