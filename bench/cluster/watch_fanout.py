#!/usr/bin/env python3
"""Watch fan-out (issue 20): N watchers on one prefix of a 3-node cluster
while writes under that prefix arrive at a fixed offered rate.

usage: watch_fanout.py [--stcache build/stcache] [--watchers-bin build/bench/cluster/watchers]
                       [--watchers 1000] [--rate 10000] [--duration 10] [--data-root /var/tmp]

Two phases on the same cluster, the same wrk write load (kv.lua with
BENCH_DELAY_MS, 100-byte values, keys k0000000.. all under the prefix "k"):
  1. no watcher: the servers' CPU for the writes alone;
  2. N watchers (build/bench/cluster/watchers, spread evenly over the three
     nodes, keys_only) draining their streams.
Prints the writes per second achieved, the events delivered per second (the
nodes' stcache_watch_events_sent_total, and the client's own count), the
watches canceled for falling behind, and the servers' CPU per delivered event
(the CPU of phase 2 minus phase 1, per event). Asserts nothing (bench/)."""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "bench", "reliability"))
from common import free_port, request  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / CLK_TCK


def metric(addr, name):
    st, body = request(addr, "GET", "/metrics")
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.split()[-1])
    return total


def wait(what, fn, timeout=120):
    t = time.time()
    while time.time() - t < timeout:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    sys.exit("timed out waiting for " + what)


def leader_of(https):
    for h in https:
        st, body = request(h, "GET", "/cluster", timeout=5)
        if st == 200 and json.loads(body).get("leader_http"):
            return json.loads(body)["leader_http"]
    return None


def run_wrk(a, leader, conns, delay_ms, seconds):
    env = dict(os.environ, BENCH_SYSTEM="stcache", BENCH_OP="write", BENCH_KEYS="100000",
               BENCH_ADDRS=leader, BENCH_DELAY_MS=str(delay_ms), BENCH_SEED="7")
    out = subprocess.run(["wrk", "-t1", "-c%d" % conns, "-d%ds" % seconds, "--latency",
                          "-s", os.path.join(HERE, "kv.lua"), "http://%s" % leader],
                         env=env, capture_output=True, text=True, check=True).stdout
    m = re.search(r"BENCHJSON (\{.*\})", out)
    return json.loads(m.group(1)) if m else {}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stcache", default=os.path.join(REPO, "build", "stcache"))
    ap.add_argument("--watchers-bin", default=os.path.join(REPO, "build", "bench", "cluster",
                                                           "watchers"))
    ap.add_argument("--watchers", type=int, default=1000)
    ap.add_argument("--rate", type=int, default=10000, help="offered writes per second")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--data-root", default=os.environ.get("BENCH_DATA_ROOT", "/var/tmp"))
    a = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found (apt-get install wrk)")
    root = tempfile.mkdtemp(prefix="stcache-fanout-", dir=a.data_root)
    procs = []
    try:
        nodes = [("127.0.0.1:%d" % free_port(), "127.0.0.1:%d" % free_port()) for _ in range(3)]
        peers = ",".join("%d=%s/%s" % (i + 1, r, h) for i, (r, h) in enumerate(nodes))
        per_node = (a.watchers + 2) // 3
        for i, (raft, http_) in enumerate(nodes, 1):
            log = open(os.path.join(root, "n%d.log" % i), "wb")
            procs.append(subprocess.Popen(
                [a.stcache, "server", "--id", str(i), "--data", os.path.join(root, "n%d" % i),
                 "--raft", raft, "--http", http_, "--peers", peers, "--log-level", "warn",
                 "--watch-max", str(max(1024, per_node + 16)),
                 "--max-conns-per-ip", "0"],
                stdout=log, stderr=log))
        https = [h for _, h in nodes]
        for h in https:
            wait("node %s" % h, lambda h=h: request(h, "GET", "/readyz", timeout=2)[0] == 200)
        leader = wait("a leader", lambda: leader_of(https))
        # Connections and per-connection delay for the offered rate: a write
        # takes about 1-2 ms here, so conns x 1000 / (delay + 1.5) ~ rate.
        conns = 32
        delay_ms = max(0, int(round(conns * 1000.0 / a.rate - 1.5)))
        pids = [p.pid for p in procs]

        def phase(with_watchers):
            w = None
            if with_watchers:
                w = subprocess.Popen([a.watchers_bin, str(a.watchers), "k", str(a.duration + 6),
                                      ",".join(https)], stdout=subprocess.PIPE, text=True)
                wait("%d watches open" % a.watchers,
                     lambda: sum(metric(h, "stcache_watches") for h in https) >= a.watchers,
                     timeout=60)
            ev0 = sum(metric(h, "stcache_watch_events_sent_total") for h in https)
            slow0 = sum(metric(h, "stcache_watch_canceled_slow_total") for h in https)
            cpu0 = [cpu_s(p) for p in pids]
            t0 = time.time()
            res = run_wrk(a, leader, conns, delay_ms, a.duration)
            took = time.time() - t0
            cpu1 = [cpu_s(p) for p in pids]
            ev1 = sum(metric(h, "stcache_watch_events_sent_total") for h in https)
            slow1 = sum(metric(h, "stcache_watch_canceled_slow_total") for h in https)
            client = {}
            if w:
                out = w.communicate()[0]
                m = re.search(r"WATCHERS (\{.*\})", out)
                client = json.loads(m.group(1)) if m else {}
            ok = int(res.get("statuses", {}).get("2xx", 0))
            return {"writes_per_s": ok / took, "events": ev1 - ev0, "events_per_s": (ev1 - ev0) / took,
                    "slow": slow1 - slow0, "cpu_s": [c1 - c0 for c0, c1 in zip(cpu0, cpu1)],
                    "took": took, "client": client, "wrk": res}

        base = phase(False)
        fan = phase(True)
        extra_cpu = sum(fan["cpu_s"]) - sum(base["cpu_s"])
        print("offered: %d conns x %d ms delay (target %d writes/s), %d s per phase"
              % (conns, delay_ms, a.rate, a.duration))
        print()
        print("| phase | writes/s | events delivered/s | watches canceled (slow) | server CPU s "
              "(3 nodes) | CPU per event |")
        print("| --- | --- | --- | --- | --- | --- |")
        print("| no watcher | %.0f | 0 | 0 | %.2f | - |" % (base["writes_per_s"], sum(base["cpu_s"])))
        per_ev = (extra_cpu / fan["events"] * 1e6) if fan["events"] else float("nan")
        print("| %d watchers | %.0f | %.0f | %d | %.2f | %.2f us |"
              % (a.watchers, fan["writes_per_s"], fan["events_per_s"], fan["slow"],
                 sum(fan["cpu_s"]), per_ev))
        print()
        print("client side: %s" % json.dumps(fan["client"]))
        print("CPU per node with watchers: %s s (phase took %.1f s)"
              % (", ".join("%.2f" % c for c in fan["cpu_s"]), fan["took"]))
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
