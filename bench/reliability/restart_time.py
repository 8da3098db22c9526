#!/usr/bin/env python3
"""Restart time of one node as a function of its WAL size (issue 14).

usage: restart_time.py [--stcache build/stcache] [--sizes 64,256,1024] [--value-kib 64]
                       [--data-root /var/tmp]

For each size S (MiB): a fresh single node with snapshots off
(--snapshot-threshold 0 --snapshot-log-bytes 0) is loaded with S MiB of
values over HTTP, stopped with SIGTERM, and started again from its data
directory; the figure is the time from exec to /readyz 200 and the node's
VmRSS then. A second series does the same with the default snapshot policy
(--snapshot-log-bytes 64 MiB), where the WAL tail a restart replays stays
bounded whatever was written. Prints a table; asserts nothing.
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import dir_mib, free_port, put_load, request, rss_mib  # noqa: E402












def run(binary, root, mib, value_kib, extra):
    data = os.path.join(root, "d%d" % mib)
    raft, http_ = "127.0.0.1:%d" % free_port(), "127.0.0.1:%d" % free_port()
    args = [binary, "server", "--id", "1", "--data", data, "--raft", raft, "--http", http_,
            "--log-level", "warn", "--max-value-bytes", str(max(value_kib << 10, 1 << 20))] + extra
    p = subprocess.Popen(args + ["--bootstrap"], stdout=subprocess.DEVNULL)
    t0 = time.time()
    while request(http_, "GET", "/readyz", timeout=5)[0] != 200:
        if time.time() - t0 > 60:
            sys.exit("node did not start")
        time.sleep(0.02)
    value = b"v" * (value_kib << 10)
    n = (mib << 10) // value_kib
    put_load(http_, n, lambda k: "/kv/k%07d" % (k % 4096), value)
    p.send_signal(signal.SIGTERM)
    p.wait()
    wal = dir_mib(os.path.join(data, "wal"))
    t0 = time.time()
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    while request(http_, "GET", "/readyz", timeout=5)[0] != 200:
        if time.time() - t0 > 600:
            sys.exit("node did not restart")
        time.sleep(0.01)
    took = time.time() - t0
    rss = rss_mib(p.pid)
    p.send_signal(signal.SIGTERM)
    p.wait()
    shutil.rmtree(data, ignore_errors=True)
    return wal, took, rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stcache", default=os.environ.get("STCACHE_BIN", "build/stcache"))
    ap.add_argument("--sizes", default="64,256,1024")
    ap.add_argument("--value-kib", type=int, default=64)
    ap.add_argument("--data-root", default=os.environ.get("BENCH_DATA_ROOT", "/var/tmp"))
    a = ap.parse_args()
    root = tempfile.mkdtemp(prefix="stcache-restart-", dir=a.data_root)
    try:
        print("| written (MiB) | policy | WAL on disk (MiB) | restart to /readyz (s) | VmRSS after (MiB) |")
        print("| --- | --- | --- | --- | --- |")
        for mib in [int(x) for x in a.sizes.split(",")]:
            for name, extra in (("no snapshots", ["--snapshot-threshold", "0",
                                                  "--snapshot-log-bytes", "0"]),
                                ("default (64 MiB log bound)", [])):
                wal, took, rss = run(a.stcache, root, mib, a.value_kib, extra)
                print("| %d | %s | %.0f | %.3f | %.0f |" % (mib, name, wal, took, rss))
                sys.stdout.flush()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
