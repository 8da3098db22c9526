"""The process around the store (issue 14): one process per data directory,
a data directory created with its parents, and running out of file
descriptors costing connections, never the store."""

import os
import shutil
import socket
import stat

from harness import (KeepAlive, Node, Scenario, Unreachable, check, kv_path, log, reserve_ports,
                     retry_503, scaled, step, wait_for)


class DoubleStart(Scenario):
    """Finding 1: a second `stcache server` on a running node's data
    directory started, led a higher term and acknowledged writes the first
    process's log later overwrote. It must exit at once, naming the
    directory and the PID holding it, without touching the directory."""

    def run(self):
        c = self.cluster("double-start")
        with step("node 1 bootstraps; PUT dup=first is acknowledged"):
            n1 = c.new_node(1).start(["--bootstrap"])
            c.wait_leader([n1])
            v1 = c.put_retry("dup", "first", via=n1)
        with step("a second process on node 1's directory (other ports) exits at once"):
            raft_port, http_port = reserve_ports(2)
            dup = Node(c, 1, raft_port, http_port, data_dir=n1.data_dir)
            c.retired.append(dup)  # its log is dumped on failure
            dup.start(expect_exit=True)
            wait_for("the second process to exit", lambda: dup.proc.poll() is not None, 15)
            text = dup.log_text()
            log("second process exited with %d: %s" % (dup.proc.returncode, text.strip()[-400:]))
            check(dup.proc.returncode != 0, "the second process exited with status 0")
            check(n1.data_dir in text, "its message does not name the directory %s" % n1.data_dir)
            check("pid %d" % n1.proc.pid in text,
                  "its message does not name the holder's PID %d" % n1.proc.pid)
            try:
                dup.request("GET", "/health", timeout=scaled(2))
                check(False, "the second process served HTTP")
            except Unreachable:
                pass
        with step("node 1 keeps serving: PUT dup=second, GET"):
            v2 = c.put_retry("dup", "second", via=n1)
            check(v2 > v1, "version did not advance: %d then %d" % (v1, v2))
            r = retry_503(lambda: n1.get("dup"))
            check(r.status == 200 and r.body == b"second", "GET dup: %s" % r.error_text())
        with step("node 1 restarts: the acknowledged write is there"):
            check(n1.stop() == 0, "node 1 did not stop cleanly")
            n1.start()
            c.wait_leader([n1])
            r = retry_503(lambda: n1.get("dup"))
            check(r.status == 200 and r.body == b"second", "GET dup after restart: %s"
                  % r.error_text())
            check(r.headers.get("etag") in ('"%d"' % v2, str(v2)),
                  "GET dup after restart: version %s, want %d" % (r.headers.get("etag"), v2))
        with step("after node 1 exits, a process may use the directory again"):
            check(n1.stop() == 0, "node 1 did not stop cleanly")
            n1.start()
            c.wait_leader([n1])
            c.verify_identical([n1])


class DataDirParents(Scenario):
    """Finding 11: `--data a/b/c` failed unless a/b existed. The directory is
    created with its parents, mode 0700, and the node restarts from it."""

    def run(self):
        c = self.cluster("data-dir-parents")
        top = os.path.join(c.dir, "deep")
        data = os.path.join(top, "a", "b", "data")
        n1 = c.new_node(1, data_dir=data)
        n1.create_parent = False
        with step("bootstrap with --data %s (no parent exists)" % data):
            check(not os.path.exists(top), "precondition: %s exists" % top)
            n1.start(["--bootstrap"])
            c.wait_leader([n1])
            v = c.put_retry("k", "v", via=n1)
        with step("the directory and its parents are private (0700), with the lock file"):
            for d in (top, os.path.join(top, "a"), os.path.join(top, "a", "b"), data):
                mode = stat.S_IMODE(os.stat(d).st_mode)
                check(mode == 0o700, "%s has mode %o, want 700" % (d, mode))
            with open(os.path.join(data, "LOCK")) as f:
                check(f.read().strip() == str(n1.proc.pid), "LOCK does not hold the PID")
        with step("restart from it"):
            check(n1.stop() == 0, "node 1 did not stop cleanly")
            n1.start()
            c.wait_leader([n1])
            r = retry_503(lambda: n1.get("k"))
            check(r.status == 200 and r.body == b"v", "GET k: %s" % r.error_text())
            log("version %d read back after restart" % v)


SEGMENT = 1 << 20          # --wal-segment-bytes
VALUE = 64 << 10           # bytes per PUT: 16 per segment
NOFILE = 100               # prlimit --nofile (soft and hard)
IDLE = 120                 # idle client connections, more than NOFILE


def value_of(i):
    return (b"%08d" % i) * (VALUE // 8)


def wal_segment_seq(node):
    """Highest WAL segment sequence number in the node's data directory."""
    names = [f for f in os.listdir(os.path.join(node.data_dir, "wal")) if f.endswith(".wal")]
    return max(int(f[:-4], 16) for f in names) if names else 0


class FdExhaustion(Scenario):
    """Finding 3: under `prlimit --nofile=100`, 120 idle HTTP connections and
    writes until the WAL rolled a segment stopped the store ("directory
    fsync failed (input/output error)") and the node exited. Now: the node
    never exits, excess connections are refused, writes go through (or wait)
    while descriptors are exhausted and all go through once they are free,
    and every acknowledged write reads back, also after a restart."""

    def run(self):
        check(shutil.which("prlimit") is not None, "prlimit (util-linux) is needed")
        c = self.cluster("fd-exhaustion", ["--log-level", "info",
                                           "--wal-segment-bytes", str(SEGMENT),
                                           "--max-value-bytes", str(2 * VALUE)])
        n1 = c.new_node(1)
        n1.wrapper = ["prlimit", "--nofile=%d" % NOFILE, "--"]
        acked = {}
        with step("node 1 under prlimit --nofile=%d; a keep-alive client connects first" % NOFILE):
            n1.start(["--bootstrap"])
            c.wait_leader([n1])
            k = KeepAlive(n1.http, timeout=scaled(30))
            r = k.request("GET", "/metrics")
            limit = [l for l in r.text().splitlines()
                     if l.startswith("stcache_open_files_limit ")]
            check(limit == ["stcache_open_files_limit %d" % NOFILE],
                  "metric stcache_open_files_limit: %s" % limit)
            check("open files limit %d" % NOFILE in n1.log_text(),
                  "the log does not report the open files limit")
            seq0 = wal_segment_seq(n1)

        idle = []
        with step("%d idle connections exhaust the node's descriptors" % IDLE):
            host, port = n1.http.rsplit(":", 1)
            for _ in range(IDLE):
                s = socket.create_connection((host, int(port)), timeout=scaled(5))
                idle.append(s)

            def refused():
                try:
                    r = n1.request("GET", "/health", timeout=scaled(2))
                    return r is None
                except Unreachable:
                    return True
            wait_for("a new connection to be refused", refused, 30)
            r = k.request("GET", "/health")
            check(r.status == 200, "the established connection: %s" % r.error_text())

        i = 0
        with step("PUTs of %d KiB through the established connection while exhausted"
                  % (VALUE >> 10)):
            stalled = False
            while wal_segment_seq(n1) < seq0 + 3 and i < 100:
                key = "fd/%05d" % i
                try:
                    r = k.request("PUT", kv_path(key), body=value_of(i))
                except Unreachable as e:
                    check(n1.running(), "node 1 exited: %s" % e)
                    raise
                if r.status in (200, 201):
                    acked[key] = i
                    i += 1
                    continue
                check(r.status == 503, "PUT %s while exhausted: %s" % (key, r.error_text()))
                # a roll waits for a descriptor: the write is not lost, it waits
                log("PUT %s while exhausted: %s (the WAL waits for a descriptor)"
                    % (key, r.error_text()))
                stalled = True
                i += 1
                break
            log("while exhausted: %d writes acknowledged, WAL segment %d -> %d%s"
                % (len(acked), seq0, wal_segment_seq(n1), ", then a write waited" if stalled
                   else ""))
            check(n1.running(), "node 1 exited while descriptors were exhausted")
            check(wal_segment_seq(n1) > seq0 or stalled,
                  "no WAL roll was attempted while descriptors were exhausted")
            m = k.request("GET", "/metrics").text()
            log("metrics: %s" % [l for l in m.splitlines() if not l.startswith("#") and
                                 ("accept_failures" in l or "refused_nofile" in l or
                                  "enfile" in l or "open_files" in l)])

        with step("idle connections close: new connections and writes go through"):
            for s in idle:
                s.close()
            k.close()
            wait_for("/health 200 on a new connection", lambda: n1.health() == 200, 30)
            seq1 = wal_segment_seq(n1)
            while wal_segment_seq(n1) < seq1 + 2:
                key = "fd/%05d" % i
                c.put_retry(key, value_of(i), via=n1)
                acked[key] = i
                i += 1
            check(n1.running(), "node 1 exited")

        with step("every acknowledged write reads back (%d), also after a restart" % len(acked)):
            def verify():
                kk = KeepAlive(n1.http)
                try:
                    for key, j in sorted(acked.items()):
                        r = kk.request("GET", kv_path(key))
                        check(r.status == 200 and r.body == value_of(j),
                              "GET %s: %s" % (key, r.error_text()[:80]))
                finally:
                    kk.close()
            verify()
            check(n1.stop() == 0, "node 1 did not stop cleanly")
            n1.start()
            c.wait_leader([n1])
            verify()
            c.verify_identical([n1])


class FdExhaustionPeers(Scenario):
    """Finding 3 on a cluster: with the leader out of descriptors, peer
    connections are refused and dials fail, never the store; a follower that
    restarts meanwhile comes back once descriptors are free; replicas end
    byte-identical with every acknowledged write."""

    def run(self):
        check(shutil.which("prlimit") is not None, "prlimit (util-linux) is needed")
        c = self.cluster("fd-exhaustion-peers", ["--log-level", "info",
                                                 "--wal-segment-bytes", str(SEGMENT),
                                                 "--max-value-bytes", str(2 * VALUE)])
        nodes = [c.new_node(i) for i in (1, 2, 3)]
        for n in nodes:
            n.wrapper = ["prlimit", "--nofile=%d" % NOFILE, "--"]
        ledger = {}
        with step("3 nodes under prlimit --nofile=%d" % NOFILE):
            spec = c.peers_spec(nodes)
            for n in nodes:
                n.start(["--peers", spec])
            leader = c.wait_leader()
            k = KeepAlive(leader.http, timeout=scaled(30))
            r = k.request("GET", "/health")  # connects now, before the exhaustion
            check(r.status == 200, "leader /health: %s" % r.error_text())
            follower = next(n for n in nodes if n is not leader)
        with step("follower %d is killed; %d idle connections exhaust the leader"
                  % (follower.id, IDLE)):
            follower.kill9()
            host, port = leader.http.rsplit(":", 1)
            idle = [socket.create_connection((host, int(port)), timeout=scaled(5))
                    for _ in range(IDLE)]

            def refused():
                try:
                    return leader.request("GET", "/health", timeout=scaled(2)) is None
                except Unreachable:
                    return True
            wait_for("a new connection to the leader to be refused", refused, 30)
        i = 0
        with step("writes through the established connection; follower %d restarts"
                  % follower.id):
            seq0 = wal_segment_seq(leader)
            follower.start()
            while wal_segment_seq(leader) < seq0 + 2 and i < 100:
                key = "fdp/%05d" % i
                r = k.request("PUT", kv_path(key), body=value_of(i))
                i += 1
                if r.status in (200, 201):
                    ledger[key] = value_of(i - 1)
                    continue
                check(r.status == 503, "PUT %s while exhausted: %s" % (key, r.error_text()))
                break
            log("while exhausted: %d writes acknowledged, leader WAL segment %d -> %d"
                % (len(ledger), seq0, wal_segment_seq(leader)))
            check(leader.running(), "the leader exited while out of descriptors")
        with step("descriptors come back: follower %d catches up" % follower.id):
            for s in idle:
                s.close()
            k.close()
            for j in range(i, i + 20):
                key = "fdp/%05d" % j
                c.put_retry(key, value_of(j))
                ledger[key] = value_of(j)
            c.verify_ledger(ledger)


SCENARIOS = {"double_start": DoubleStart, "data_dir_parents": DataDirParents,
             "fd_exhaustion": FdExhaustion, "fd_exhaustion_peers": FdExhaustionPeers}
