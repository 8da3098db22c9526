#!/usr/bin/env python3
"""Backup throughput and the serving node's longest event-loop stall while
`stcache snapshot save` takes a backup of a large state (issue 19).

usage: backup.py [--stcache build/stcache] [--keys 1000000] [--value-bytes 100]
                 [--data-root /var/tmp]

Starts node 1 (bootstrap), loads KEYS keys of VALUE_BYTES bytes over HTTP
(keep-alive, 16 threads), then runs `stcache snapshot save FILE` against it
(a fresh snapshot, streamed off the loop, verified by the CLI) and prints the
file size, the time, MB/s, and the longest loop iteration of node 1 meanwhile,
from its stcache_loop_iteration_seconds histogram (busy time of one
iteration: the highest bucket that grew), the time `inspect` takes and the
time `snapshot restore` takes to build a data directory from the file.
Asserts nothing (bench/, not tests/).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import free_port, put_load, request  # noqa: E402
from snapshot_stall import hist, wait, worst  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stcache", default=os.environ.get("STCACHE_BIN", "build/stcache"))
    ap.add_argument("--keys", type=int, default=1000000)
    ap.add_argument("--value-bytes", type=int, default=100)
    ap.add_argument("--data-root", default=os.environ.get("BENCH_DATA_ROOT", "/var/tmp"))
    a = ap.parse_args()
    root = tempfile.mkdtemp(prefix="stcache-backup-", dir=a.data_root)
    proc = None
    try:
        raft, http_ = "127.0.0.1:%d" % free_port(), "127.0.0.1:%d" % free_port()
        log = open(os.path.join(root, "n1.log"), "wb")
        proc = subprocess.Popen([a.stcache, "server", "--id", "1", "--data",
                                 os.path.join(root, "n1"), "--raft", raft, "--http", http_,
                                 "--bootstrap", "--log-level", "warn"], stdout=log, stderr=log)
        wait("node 1", lambda: request(http_, "GET", "/readyz")[0] == 200)
        t0 = time.time()
        put_load(http_, a.keys, lambda k: "/kv/k%08d" % k, b"v" * a.value_bytes, threads=16)
        print("loaded %d keys of %d bytes in %.1f s" % (a.keys, a.value_bytes, time.time() - t0))
        path = os.path.join(root, "backup.stcbak")
        before, _ = hist(http_)
        t0 = time.time()
        out = subprocess.run([a.stcache, "snapshot", "save", path, "--endpoints", http_,
                              "--timeout", "600"], stdout=subprocess.PIPE, check=True)
        save_s = time.time() - t0
        after, _ = hist(http_)
        size = os.path.getsize(path)
        print(out.stdout.decode().strip())
        t0 = time.time()
        subprocess.run([a.stcache, "snapshot", "inspect", path], stdout=subprocess.DEVNULL,
                       check=True)
        inspect_s = time.time() - t0
        rdir = os.path.join(root, "restored")
        t0 = time.time()
        subprocess.run([a.stcache, "snapshot", "restore", path, "--data", rdir, "--id", "1",
                        "--peers", "1=%s/%s" % (raft, http_)], stdout=subprocess.DEVNULL,
                       check=True)
        restore_s = time.time() - t0
        w = worst(before, after)
        print()
        print("| keys | backup bytes | save (snapshot + stream + verify) | MB/s | "
              "longest loop iteration on the node | inspect | restore (offline) |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        print("| %d | %d | %.2f s | %.1f | <= %s ms | %.2f s | %.2f s |" % (
            a.keys, size, save_s, size / save_s / 1e6,
            "inf" if w == float("inf") else "%g" % (w * 1000), inspect_s, restore_s))
    finally:
        if proc:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
