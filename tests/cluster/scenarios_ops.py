"""Operating stcache: versions (`stcache version`, /cluster, the
stcache_build_info metric, the handshake)."""

import json
import os
import re
import subprocess
import threading
import time

import harness
from harness import Scenario, Unreachable, check, count, log, scaled, step, wait_for


def run_cli(binary, *args):
    eps = next((args[i + 1] for i, a in enumerate(args[:-1]) if a == "--endpoints"), None)
    p = subprocess.run([binary] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60, env=harness.cli_env(eps))
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


class Versions(Scenario):
    """`stcache --version` and `stcache version` agree with /cluster and the
    stcache_build_info metric of every node of a running cluster."""

    def run(self):
        with step("--version and version print release, commit, formats, compiler"):
            rc, out, err = run_cli(self.binary, "--version")
            check(rc == 0, "--version exit %d: %s" % (rc, err))
            rc2, out2, _ = run_cli(self.binary, "version")
            check(rc2 == 0 and out2 == out, "`version` differs from `--version`: %r" % out2)
            m = re.match(r"stcache (\d+\.\d+\.\d+)\ncommit: (\S+)\n", out)
            check(m is not None, "no release/commit in %r" % out)
            release, commit = m.group(1), m.group(2)
            for what in ("disk formats: wal segment 1", "kv snapshot 5", "wire formats: frame 1",
                         "raft message 1", "kv command 8", "compiler: "):
                check(what in out, "%r missing from %r" % (what, out))
            log("binary: %s (%s)" % (release, commit))
        c = self.cluster("versions")
        with step("a 3-node cluster forms: the handshake accepts peers of the same release"):
            c.start_bootstrap_and_join(3)
            c.wait_members(voters=[1, 2, 3])
            c.put_retry("k", "v")
        with step("/cluster and /metrics of every node carry the same release and commit"):
            for n in c.running():
                v = n.info()["version"]
                check(v["release"] == release and v["commit"] == commit,
                      "%r /cluster version %r" % (n, v))
                check(v["formats"]["wire_msg"] == 1 and v["formats"]["kv_snapshot"] == 5,
                      "%r formats %r" % (n, v["formats"]))
                check(v["compiler"] in out, "%r compiler %r" % (n, v["compiler"]))
                r = n.request("GET", "/metrics")
                line = 'stcache_build_info{version="%s",commit="%s"} 1' % (release, commit)
                check(r.status == 200 and line in r.text(), "%r metrics lack %s" % (n, line))


SCENARIOS = {"versions": Versions}


class VersionedWriter(threading.Thread):
    """Puts fresh keys continuously through every running node and records
    each acknowledged one with its version (the index it was applied at) and
    the time its answer came."""

    def __init__(self, cluster, prefix):
        super().__init__(daemon=True)
        self.c = cluster
        self.prefix = prefix
        self.acked = {}  # key -> (version, value, monotonic time of the answer)
        self.errors = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def run(self):
        i = 0
        while not self.stopping.is_set():
            nodes = [n for n in list(self.c.nodes.values()) if n.running()]
            n = nodes[i % len(nodes)]
            key, value = "%s/%07d" % (self.prefix, i), "v%d" % i
            i += 1
            try:
                r = n.put(key, value, timeout=scaled(10))
            except Unreachable:
                continue
            if r.status in (200, 201):
                with self.lock:
                    self.acked[key] = (r.json()["version"], value, time.monotonic())
            elif r.status < 500:
                self.errors.append("PUT %s: %s" % (key, r.error_text()))

    def stop(self):
        self.stopping.set()
        self.join(scaled(30))
        check(not self.is_alive() and not self.errors, "writer: %s" % self.errors[:3])
        with self.lock:
            return dict(self.acked)


def damage(src, dst, how):
    data = bytearray(open(src, "rb").read())
    if how == "truncated":
        data = data[:len(data) // 2]
    elif how == "bit":
        data[len(data) // 2] ^= 0x04
    elif how == "magic":
        data[0:8] = b"NOTABKUP"
    with open(dst, "wb") as f:
        f.write(data)
    return len(data)


class BackupSave(Scenario):
    """`stcache snapshot save` under write load: the file holds one applied
    index that covers every write acknowledged before the save began, its
    checksums hold (inspect), the node served writes meanwhile; damaged
    copies are refused by inspect with the offset and the reason."""

    def run(self):
        c = self.cluster("backup")
        with step("a 3-node cluster under a continuous writer"):
            c.start_bootstrap_and_join(3)
            c.wait_members(voters=[1, 2, 3])
            w = VersionedWriter(c, "bk")
            w.start()
            wait_for("writes acknowledged", lambda: len(w.acked) >= count(300))
        d = os.path.join(c.dir, "backups")
        os.makedirs(d)
        path = os.path.join(d, "b1.stcbak")
        with step("save a backup through node 2 while the writes go on"):
            t0 = time.monotonic()
            with w.lock:
                before = {k: v for k, v in w.acked.items()}
            node = c.nodes[2]
            rc, out, err = run_cli(self.binary, "snapshot", "save", path, "--json",
                                   "--endpoints", node.http)
            check(rc == 0, "save exit %d: %s %s" % (rc, out, err))
            saved = json.loads(out)
            acked = w.stop()
            during = [k for k, v in acked.items() if v[2] > t0 and k not in before]
            log("saved %s; %d writes acknowledged during the save"
                % ({k: saved[k] for k in ("index", "keys", "bytes")}, len(during)))
            check(not os.path.exists(path + ".tmp"), "the temporary file is left behind")
        with step("the backup is at one index covering every write acknowledged before it"):
            index = saved["index"]
            check(all(v[0] <= index for v in before.values()),
                  "a write acknowledged before the save is above the backup's index %d" % index)
            # Every key is written once, at its version: exactly the acknowledged
            # ones at or below the index are in (plus unacknowledged ones that
            # applied anyway: none here, the writer gets every answer).
            at_or_below = sum(1 for v in acked.values() if v[0] <= index)
            check(saved["keys"] == at_or_below,
                  "backup holds %d keys, %d acknowledged writes are at or below its index %d"
                  % (saved["keys"], at_or_below, index))
            info = node.info()
            check(saved["cluster_id"] == info["cluster_id"], "cluster id %r" % saved["cluster_id"])
            check(sorted(m["id"] for m in saved["members"]) == [1, 2, 3], "members %r" % saved)
        with step("inspect reads it back: meta, keys, checksum"):
            rc, out, err = run_cli(self.binary, "snapshot", "inspect", path)
            check(rc == 0 and "checksum:   ok" in out and "keys:       %d" % saved["keys"] in out,
                  "inspect: %d %s %s" % (rc, out, err))
        with step("damaged copies are refused with the offset and the reason"):
            for how, want in (("truncated", "truncated"), ("bit", "checksum fails"),
                              ("magic", "wrong magic")):
                bad = os.path.join(d, "bad-%s" % how)
                damage(path, bad, how)
                rc, out, err = run_cli(self.binary, "snapshot", "inspect", bad)
                check(rc == 1 and re.search(r"damaged at offset \d+: .*%s" % want, err),
                      "%s: exit %d, %r" % (how, rc, err))
                rc, out, err = run_cli(self.binary, "snapshot", "inspect", bad, "--json")
                doc = json.loads(out)
                check(doc["ok"] is False and isinstance(doc["offset"], int) and want in doc["reason"],
                      "%s --json: %r" % (how, doc))
        with step("`compact` and the old `snapshot` still compact"):
            for cmd in (["compact"], ["snapshot"]):
                rc, out, err = run_cli(self.binary, *cmd, "--endpoints", node.http)
                check(rc == 0 and "snapshot taken" in out, "%s: %d %s %s" % (cmd, rc, out, err))


SCENARIOS["backup_save"] = BackupSave


class BackupRestore(Scenario):
    """A backup saved under write load, restored into a new 3-node cluster:
    every write acknowledged at or below the backup's index is there with its
    value and version; the new cluster has a new id (the same from each
    member's restore), accepts writes, and a node of the old cluster pointed
    at it is refused. Damaged backups are refused by restore, creating
    nothing."""

    def run(self):
        old = self.cluster("old")
        with step("a 3-node cluster under a continuous writer; a backup through node 3"):
            old.start_bootstrap_and_join(3)
            old.wait_members(voters=[1, 2, 3])
            w = VersionedWriter(old, "rs")
            w.start()
            wait_for("writes acknowledged", lambda: len(w.acked) >= count(300))
            path = os.path.join(old.dir, "b.stcbak")
            rc, out, err = run_cli(self.binary, "snapshot", "save", path, "--json",
                                   "--endpoints", old.nodes[3].http)
            check(rc == 0, "save: %d %s %s" % (rc, out, err))
            saved = json.loads(out)
            acked = w.stop()
            index = saved["index"]
            want = {k: v for k, v in acked.items() if v[0] <= index}
            check(len(want) == saved["keys"], "%d keys acked at or below %d, backup has %d"
                  % (len(want), index, saved["keys"]))
            old_cid = old.nodes[1].info()["cluster_id"]
        new = self.cluster("restored")
        nodes = [new.new_node(i) for i in (1, 2, 3)]
        spec = new.peers_spec(nodes)
        with step("damaged backups are refused by restore and create nothing"):
            for how in ("truncated", "bit", "magic"):
                bad = os.path.join(old.dir, "bad-%s" % how)
                damage(path, bad, how)
                target = os.path.join(new.dir, "never-%s" % how)
                rc, out, err = run_cli(self.binary, "snapshot", "restore", bad, "--data", target,
                                       "--id", "1", "--peers", spec)
                check(rc == 1 and re.search(r"damaged at offset \d+: ", err),
                      "%s: %d %r" % (how, rc, err))
                check(not os.path.exists(target), "%s: restore created %s" % (how, target))
        with step("restore on each member: one new cluster id, not the old one"):
            cids = set()
            for n in nodes:
                rc, out, err = run_cli(self.binary, "snapshot", "restore", path, "--data",
                                       n.data_dir, "--id", str(n.id), "--peers", spec, "--json")
                check(rc == 0, "restore %d: %d %s %s" % (n.id, rc, out, err))
                doc = json.loads(out)
                check(doc["index"] == index and doc["keys"] == saved["keys"], "restore %r" % doc)
                cids.add(doc["cluster_id"])
            check(len(cids) == 1 and old_cid not in cids, "cluster ids %r (old %s)" % (cids, old_cid))
            rc, out, err = run_cli(self.binary, "snapshot", "restore", path, "--data",
                                   nodes[0].data_dir, "--id", "1", "--peers", spec)
            check(rc == 1 and "holds data" in err, "restore over data: %d %r" % (rc, err))
        with step("the new cluster starts from the restored directories"):
            for n in nodes:
                n.start()
            new.wait_leader()
            check(new.nodes[1].info()["cluster_id"] in cids, "cluster id")
        with step("every write acknowledged at or below the backup's index is there"):
            reader = new.nodes[2]
            for key, (version, value, _) in sorted(want.items()):
                r = new.get_retry(key, reader)
                check(r.status == 200 and r.text() == value and
                      r.headers.get("etag") == '"%d"' % version,
                      "%s: %s etag %s, want %r at %d" % (key, r.error_text(),
                                                         r.headers.get("etag"), value, version))
            log("%d keys compared" % len(want))
        with step("the restored cluster accepts writes"):
            for i in range(20):
                new.put_retry("after/%d" % i, "x%d" % i)
            r = new.get_retry("after/19", new.nodes[3])
            check(r.status == 200 and r.text() == "x19", "read back: %s" % r.error_text())
        with step("a node of the old cluster at member 3's address is refused"):
            nodes[2].stop()
            stale = old.nodes[3]
            stale.stop()
            # The old node 3 (old data, old cluster id) now listens where the
            # new cluster expects its member 3: members 1 and 2 dial it.
            stale.raft, stale.http = nodes[2].raft, nodes[2].http
            stale.raft_port, stale.http_port = nodes[2].raft_port, nodes[2].http_port
            stale.start()
            wait_for("the handshake refused by cluster id",
                     lambda: "cluster id of the dialer differs" in stale.log_text())
            info = stale.info()
            check(info["cluster_id"] == old_cid, "the old node changed cluster: %r" % info)
            new.put_retry("after/stale", "y", via=new.nodes[2])
            check(stale.get("after/stale", consistency="stale").status == 404,
                  "the old node got the new cluster's data")


SCENARIOS["backup_restore"] = BackupRestore
