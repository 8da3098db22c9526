#!/usr/bin/env python3
"""stcache (3 nodes, --redis on each) against one redis-server that fsyncs
every write (appendfsync always) and, for reference, once a second
(everysec), all driven by redis-benchmark (Debian's redis-tools).

usage: bench/redis/bench.py [--stcache BIN] [--floor BIN] [--seconds S]
                            [--data-root DIR]

Cells: SET and GET of 100-byte values over a 100k key space (-r 100000)
with -c 1, 16, 128 and -c 128 -P 16. Systems alternate cell by cell (one
cell of each, then the next cell), so drift hits all alike. Each cell's
request count is sized from a 1 s probe for about --seconds seconds.
Server CPU per request: utime + stime of the server processes (all three
stcache nodes together) over the cell, from /proc/PID/stat. The floor
(bench/cluster/floor.c `replicated`) is measured in the same run for the
1-connection SET target. Prints a table with ratios stcache / redis.
Never part of CI: it measures, it does not test."""

import argparse
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "cluster"))
sys.path.insert(0, os.path.join(REPO, "tests", "redis"))

CELLS = [("set", 1, 1), ("set", 16, 1), ("set", 128, 1), ("set", 128, 16),
         ("get", 1, 1), ("get", 16, 1), ("get", 128, 1), ("get", 128, 16),
         ("incr", 128, 1)]


def bench_http(addr, seconds, plain, pids, hz):
    """wrk -c 128 against POST /txn (bench/redis/txn.lua), or PUT /kv with
    plain: requests/s, p50 and server CPU per request."""
    env = dict(os.environ, BENCH_TXN_PLAIN="1" if plain else "0")
    t0 = cpu_ticks(pids)
    out = subprocess.run(["wrk", "-t", "2", "-c", "128", "-d", "%ds" % max(1, int(seconds)),
                          "-s", os.path.join(HERE, "txn.lua"), "http://%s" % addr],
                         capture_output=True, timeout=600, env=env).stdout.decode()
    line = [x for x in out.splitlines() if x.startswith("BENCHJSON ")][-1]
    r = json.loads(line[len("BENCHJSON "):])
    r["rps"] = r["requests"] / r["seconds"]
    r["cpu_us_per_req"] = (cpu_ticks(pids) - t0) / hz * 1e6 / max(1, r["requests"])
    return r


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            pass
    return total


def bench(port, op, conns, pipeline, n):
    args = ["redis-benchmark", "-p", str(port), "-t", op, "-n", str(n), "-c", str(conns),
            "-P", str(pipeline), "-d", "100", "-r", "100000", "--csv"]
    out = subprocess.run(args, capture_output=True, timeout=600).stdout.decode()
    rows = [r for r in csv.reader(io.StringIO(out)) if r and r[0] != "test"]
    row = rows[-1]
    return {"rps": float(row[1]), "p50_ms": float(row[4]), "p99_ms": float(row[6])}


def start_redis(port, fsync, d):
    p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "yes", "--appendfsync", fsync, "--dir", d],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        r = subprocess.run(["redis-cli", "-p", str(port), "PING"], capture_output=True)
        if r.stdout.strip() == b"PONG":
            return p
        time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stcache", default=os.path.join(REPO, "build", "stcache"))
    ap.add_argument("--floor", default=os.path.join(REPO, "build", "bench", "cluster", "floor"))
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--data-root", default="/var/tmp")
    a = ap.parse_args()
    for tool in ("redis-server", "redis-benchmark", "redis-cli"):
        if shutil.which(tool) is None:
            sys.exit("bench-redis: %s missing (apt-get install redis-server redis-tools)" % tool)
    tempfile.tempdir = a.data_root
    import harness
    import run_redis
    root = tempfile.mkdtemp(prefix="stcache-bench-redis-")
    procs = []
    try:
        c = harness.Cluster(a.stcache, "bench-redis", ["--log-level", "warn"])
        ports, leader = run_redis.start_redis_cluster(c)
        st_pids = [n.proc.pid for n in c.nodes.values()]
        systems = {"stcache": (ports[leader.id], st_pids)}
        for fsync in ("always", "everysec"):
            (p,) = harness.reserve_ports(1)
            d = os.path.join(root, "redis-" + fsync)
            os.makedirs(d)
            proc = start_redis(p, fsync, d)
            procs.append(proc)
            systems["redis-" + fsync] = (p, [proc.pid])
        floor = None
        if os.access(a.floor, os.X_OK):
            fd = os.path.join(root, "floor")
            os.makedirs(fd)
            out = subprocess.run([a.floor, "replicated", fd, "2000"], capture_output=True,
                                 timeout=300).stdout.decode()
            floor = json.loads(out)
        hz = os.sysconf("SC_CLK_TCK")
        results = {}
        for op, conns, pl in CELLS:
            for name, (port, pids) in systems.items():
                probe = bench(port, op, conns, pl, max(200, conns * pl * 20))
                n = int(max(1000, probe["rps"] * a.seconds))
                t0 = cpu_ticks(pids)
                r = bench(port, op, conns, pl, n)
                r["cpu_us_per_req"] = (cpu_ticks(pids) - t0) / hz * 1e6 / n
                results[(op, conns, pl, name)] = r
                print("  %-4s -c %-3d -P %-2d %-15s %10.0f req/s  p50 %.3f ms  cpu %.1f us/req"
                      % (op, conns, pl, name, r["rps"], r["p50_ms"], r["cpu_us_per_req"]),
                      flush=True)
        print()
        print("| cell | stcache req/s | redis always | redis everysec | stcache/always | "
              "p50 stcache ms | p50 always ms | CPU us/req stcache (3 nodes) | CPU us/req always |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for op, conns, pl in CELLS:
            s = results[(op, conns, pl, "stcache")]
            al = results[(op, conns, pl, "redis-always")]
            ev = results[(op, conns, pl, "redis-everysec")]
            print("| %s -c %d%s | %.0f | %.0f | %.0f | %.2fx | %.3f | %.3f | %.1f | %.1f |" % (
                op.upper(), conns, " -P %d" % pl if pl > 1 else "", s["rps"], al["rps"], ev["rps"],
                s["rps"] / al["rps"], s["p50_ms"], al["p50_ms"], s["cpu_us_per_req"],
                al["cpu_us_per_req"]))
        if floor:
            s1 = results[("set", 1, 1, "stcache")]
            print("\nfloor (bench/cluster/floor replicated): p50 %.0f us; stcache SET -c 1 p50 %.0f us "
                  "= %.2fx the floor (target <= 1.25x)" % (floor["p50_us"], s1["p50_ms"] * 1000,
                                                           s1["p50_ms"] * 1000 / floor["p50_us"]))
        if shutil.which("wrk"):
            print("\nHTTP at 128 connections (wrk, on the leader):")
            for plain in (True, False, True, False):
                r = bench_http(leader.http, a.seconds, plain, st_pids, hz)
                print("  %-42s %8.0f req/s  p50 %.3f ms  cpu %.1f us/req  errors %d" % (
                    "PUT /kv (one key)" if plain else "POST /txn (compare + 2 puts, one entry)",
                    r["rps"], r["p50_us"] / 1000, r["cpu_us_per_req"], r["errors"]), flush=True)
        s = results[("set", 128, 1, "stcache")]
        al = results[("set", 128, 1, "redis-always")]
        print("server CPU per SET -c 128: stcache %.1f us (3 nodes) vs redis always %.1f us = %.2fx "
              "(target <= 2x)" % (s["cpu_us_per_req"], al["cpu_us_per_req"],
                                  s["cpu_us_per_req"] / max(al["cpu_us_per_req"], 1e-9)))
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for cl in list(harness._live_clusters):
            cl.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
