#!/usr/bin/env python3
"""RSS per node after writing many large values to few keys (issue 14:
target <= state + the log bound + 64 MiB).

usage: big_values_rss.py [--stcache build/stcache] [--gib 10] [--keys 100]
                         [--value-kib 1024] [--log-bytes 67108864] [--data-root /var/tmp]

A 3-node cluster (static --peers) with --snapshot-log-bytes LOG_BYTES takes
GIB GiB of PUTs of VALUE_KIB KiB spread over KEYS keys (8 writer threads to
the leader); then prints, per node, VmRSS, the state size (keys x value),
the bound and the WAL size on disk. Prints; asserts nothing.
"""
import argparse
import json
import os
import shutil
import sys
import subprocess
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import dir_mib, free_port, put_load, request, rss_mib  # noqa: E402












def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stcache", default=os.environ.get("STCACHE_BIN", "build/stcache"))
    ap.add_argument("--gib", type=float, default=10)
    ap.add_argument("--keys", type=int, default=100)
    ap.add_argument("--value-kib", type=int, default=1024)
    ap.add_argument("--log-bytes", type=int, default=64 << 20)
    ap.add_argument("--data-root", default=os.environ.get("BENCH_DATA_ROOT", "/var/tmp"))
    a = ap.parse_args()
    root = tempfile.mkdtemp(prefix="stcache-bigvals-", dir=a.data_root)
    procs = []
    try:
        nodes = [(i, "127.0.0.1:%d" % free_port(), "127.0.0.1:%d" % free_port()) for i in (1, 2, 3)]
        peers = ",".join("%d=%s/%s" % n for n in nodes)
        for i, raft, http_ in nodes:
            procs.append(subprocess.Popen(
                [a.stcache, "server", "--id", str(i), "--data", os.path.join(root, "n%d" % i),
                 "--raft", raft, "--http", http_, "--peers", peers, "--log-level", "warn",
                 "--snapshot-log-bytes", str(a.log_bytes),
                 "--max-value-bytes", str(max(a.value_kib << 10, 1 << 20))],
                stdout=subprocess.DEVNULL))
        leader = None
        t0 = time.time()
        while leader is None and time.time() - t0 < 30:
            for i, raft, http_ in nodes:
                st, body = request(http_, "GET", "/cluster")
                if st == 200 and json.loads(body).get("role") == "leader":
                    leader = http_
            time.sleep(0.05)
        value = b"v" * (a.value_kib << 10)
        total = int(a.gib * (1 << 30)) // len(value)
        t0 = time.time()
        put_load(leader, total, lambda k: "/kv/big%04d" % (k % a.keys), value)
        took = time.time() - t0
        time.sleep(2)  # heap trim after the last snapshot
        state = a.keys * len(value) / (1 << 20)
        bound = state + a.log_bytes / (1 << 20) + 64
        print("wrote %.1f GiB (%d PUTs of %d KiB to %d keys) in %.0f s (%.0f MB/s)" % (
            a.gib, total, a.value_kib, a.keys, took, total * len(value) / took / 1e6))
        print("| node | VmRSS (MiB) | state (MiB) | target: state + log bound + 64 MiB | WAL on disk (MiB) |")
        print("| --- | --- | --- | --- | --- |")
        for (i, raft, http_), p in zip(nodes, procs):
            print("| %d | %.0f | %.0f | %.0f | %.0f |" % (
                i, rss_mib(p.pid), state, bound, dir_mib(os.path.join(root, "n%d" % i, "wal"))))
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
