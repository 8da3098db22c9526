"""Memory bounds: the log in memory, the WAL on disk and what a restart reads
back stay bounded by --snapshot-log-bytes however many bytes are written
(1 MiB values overwriting one key)."""

import os

from harness import (Scenario, check, count, log, retry_503, scaled, step, wait_for)

MIB = 1 << 20
LOG_BYTES = 8 * MIB
# The WAL preallocates 64 MiB segments and keeps one spare (docs/DISK-FORMAT.md).
WAL_SEGMENT_BYTES = 64 * MIB


def vm_rss_bytes(node):
    """VmRSS of the node's process from /proc/PID/status."""
    with open("/proc/%d/status" % node.proc.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for %r" % node)


def dir_bytes(path):
    """Bytes allocated on disk by the files under path (du)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                st = os.stat(os.path.join(root, name))
            except FileNotFoundError:
                continue
            total += st.st_blocks * 512
    return total


class LogBytes(Scenario):
    """Finding 4 of issue 14: snapshots were taken by entry count alone, so
    128 MiB written to one key left the whole log in memory (RSS 135 MiB for
    1 MiB of state) and on disk. With --snapshot-log-bytes the log since the
    last snapshot, the trailing log kept for followers, the WAL and a
    restarted node all stay within a bound derived from the flag."""

    def run(self):
        args = ["--log-level", "info", "--snapshot-log-bytes", str(LOG_BYTES),
                "--max-value-bytes", str(MIB)]
        c = self.cluster("log_bytes", args)
        n_puts = count(160, 140)
        # The log in memory: 1.25 x the flag (entries since the snapshot and
        # the trailing quarter) plus one entry; the rest of the process (kv,
        # buffers, allocator slack, one value in flight per connection) is
        # given 48 MiB, far below the ~n_puts MiB that the log used to hold.
        rss_max = LOG_BYTES * 5 // 4 + MIB + 48 * MIB
        # The WAL: the segments holding those entries (two, each larger than
        # the log bound) plus the spare, and one more for a compaction still
        # queued behind the writes.
        wal_max = 4 * WAL_SEGMENT_BYTES
        value = b"v" * (MIB - 64)
        with step("3-node cluster, --snapshot-log-bytes %d; %d PUTs of 1 MiB to one key"
                  % (LOG_BYTES, n_puts)):
            leader = c.start_static(3)
            first0 = {n.id: n.info()["first_index"] for n in c.running()}
            for i in range(n_puts):
                body = b"%08d" % i + value
                r = retry_503(lambda: leader.put("big", body, timeout=scaled(10)))
                check(r.status in (200, 201), "PUT big #%d: %s" % (i, r.error_text()))
                leader = c.wait_leader()
            final = b"%08d" % (n_puts - 1) + value
            c.verify_identical()

        with step("snapshots were taken by bytes and the log was compacted on every node"):
            for n in c.running():
                info = n.info()
                log("%r: first_index %d snapshot_index %d applied %d"
                    % (n, info["first_index"], info["snapshot_index"], info["applied"]))
                check(info["snapshot_index"] > 0, "%r took no snapshot: %r" % (n, info))
                check(info["first_index"] > first0[n.id] + n_puts // 2,
                      "%r: the log was not compacted (first_index %d)" % (n, info["first_index"]))
                # What the log holds now is bounded by bytes, not by the
                # 65,536-entry default threshold.
                check(info["applied"] - info["first_index"] + 1 <= 2 * LOG_BYTES // MIB + 2,
                      "%r holds %d entries of 1 MiB in its log"
                      % (n, info["applied"] - info["first_index"] + 1))

        with step("RSS and WAL size of every node within the bounds"):
            for n in c.running():
                wal = os.path.join(n.data_dir, "wal")

                def wal_small(wal=wal):
                    return dir_bytes(wal) <= wal_max or None
                # Compaction of the WAL is queued behind the writes: wait for it.
                wait_for("%r WAL <= %d bytes" % (n, wal_max), wal_small, timeout=scaled(20))
                rss = vm_rss_bytes(n)
                log("%r: VmRSS %.1f MiB (bound %.1f), WAL %.1f MiB (bound %.1f)"
                    % (n, rss / MIB, rss_max / MIB, dir_bytes(wal) / MIB, wal_max / MIB))
                check(rss <= rss_max, "%r: VmRSS %d > %d after %d MiB written to one key"
                      % (n, rss, rss_max, n_puts))

        follower = next(n for n in c.running() if n.id != c.wait_leader().id)
        with step("restart follower %d: memory after recovery within the bound; data intact"
                  % follower.id):
            follower.stop()
            follower.start()
            leader = c.wait_leader()
            c.wait_caught_up(follower, leader.info()["commit"])
            rss = vm_rss_bytes(follower)
            log("%r after restart: VmRSS %.1f MiB (bound %.1f)" % (follower, rss / MIB,
                                                                   rss_max / MIB))
            check(rss <= rss_max, "%r: VmRSS %d > %d after restart" % (follower, rss, rss_max))
            r = follower.get("big", consistency="stale")
            check(r.status == 200 and r.body == final,
                  "%r GET big after restart: %d, %d bytes" % (follower, r.status, len(r.body)))
            c.verify_identical()


SCENARIOS = {
    "log_bytes": LogBytes,
}
