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
The node's loop gauges are read before and after the save:
stcache_loop_iteration_max_seconds (longest iteration since start) with
the loop's CPU time in it (..._max_cpu_seconds) and the most CPU of one
iteration (..._cpu_max_seconds). They count since start, so a figure that
did not grow during the save means the save stayed below it (the load
phase set it); the table says which. The node process's CPU time during
the save (utime + stime from /proc) is printed too. With --restart (the
default) the node is restarted on its data after the load, so the
since-start gauges cover only its recovery and the save.
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


GAUGES = ("stcache_loop_iteration_max_seconds", "stcache_loop_iteration_max_cpu_seconds",
          "stcache_loop_iteration_cpu_max_seconds")


def gauges(addr):
    """{name: value} of the loop stall and CPU gauges (GAUGES)."""
    _, body = request(addr, "GET", "/metrics")
    out = {}
    for line in body.decode().splitlines():
        name = line.split(" ")[0]
        if name in GAUGES:
            out[name] = float(line.split()[-1])
    return out


def cpu_seconds(pid):
    """utime + stime of process pid, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fmt_gauge(before, after, name):
    b, a = before.get(name, 0.0), after.get(name, 0.0)
    if a > b:
        return "%.1f ms (save)" % (a * 1000)
    return "<= %.1f ms (set before the save)" % (b * 1000) if b else "0"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stcache", default=os.environ.get("STCACHE_BIN", "build/stcache"))
    ap.add_argument("--keys", type=int, default=1000000)
    ap.add_argument("--value-bytes", type=int, default=100)
    ap.add_argument("--data-root", default=os.environ.get("BENCH_DATA_ROOT", "/var/tmp"))
    ap.add_argument("--no-restart", dest="restart", action="store_false",
                    help="keep the node that took the load (its gauges include the load)")
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
        if a.restart:
            proc.terminate()
            proc.wait()
            t0 = time.time()
            proc = subprocess.Popen([a.stcache, "server", "--id", "1", "--data",
                                     os.path.join(root, "n1"), "--raft", raft, "--http", http_,
                                     "--log-level", "warn"], stdout=log, stderr=log)
            wait("node 1 restarted", lambda: request(http_, "GET", "/readyz")[0] == 200)
            print("restarted on its data in %.1f s (the gauges now count from there)"
                  % (time.time() - t0))
        path = os.path.join(root, "backup.stcbak")
        before, _ = hist(http_)
        g_before = gauges(http_)
        cpu0 = cpu_seconds(proc.pid)
        t0 = time.time()
        out = subprocess.run([a.stcache, "snapshot", "save", path, "--endpoints", http_,
                              "--timeout", "600"], stdout=subprocess.PIPE, check=True)
        save_s = time.time() - t0
        after, _ = hist(http_)
        g_after = gauges(http_)
        save_cpu = cpu_seconds(proc.pid) - cpu0
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
        print()
        print("| longest loop iteration (gauge) | loop CPU in it | most loop CPU in one "
              "iteration | node process CPU during the save |")
        print("| --- | --- | --- | --- |")
        print("| %s | %s | %s | %.2f s |" % (
            fmt_gauge(g_before, g_after, GAUGES[0]),
            "%.1f ms" % (g_after.get(GAUGES[1], 0.0) * 1000),
            fmt_gauge(g_before, g_after, GAUGES[2]), save_cpu))
        print("gauges before the save: %r" % g_before)
        print("gauges after the save:  %r" % g_after)
    finally:
        if proc:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
