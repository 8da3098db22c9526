#!/usr/bin/env python3
"""Write throughput with and without --max-memory eviction (issue 14).

    bench/cluster/eviction.sh [--duration S] [--connections N] [--keys N]
                              [--value-bytes N] [--policy P] [--stcache BIN]

For each mode, a fresh 3-node static cluster on loopback: "no limit"
(no --max-memory) and "eviction" (--max-memory set to about 40% of what the
key space would use, --eviction-policy allkeys-lru by default). wrk with
kv.lua writes random keys of the key space from N connections spread over
the three nodes (followers forward to the leader): a warm-up long enough to
fill the limit (so the measured run evicts all along), then the measured
run. Prints writes/s of each mode and their ratio (target: eviction >= 90%
of no limit), the keys held, used memory and the leader's RSS per key.

Printed, never asserted; not part of CI. Python standard library + wrk.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
KEY_BYTES = 8  # kv.lua keys: "k0000000"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def http_json(addr, path):
    with urllib.request.urlopen("http://%s%s" % (addr, path), timeout=5) as r:
        return json.loads(r.read())


def metrics(addr):
    with urllib.request.urlopen("http://%s/metrics" % addr, timeout=5) as r:
        out = {}
        for line in r.read().decode().splitlines():
            if line and not line.startswith("#") and " " in line:
                k, v = line.rsplit(" ", 1)
                try:
                    out[k] = float(v)
                except ValueError:
                    pass
        return out


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Cluster:
    def __init__(self, binary, tmp, extra):
        self.procs = []
        self.nodes = []
        ids = [1, 2, 3]
        ports = {i: (free_port(), free_port()) for i in ids}
        spec = ",".join("%d=127.0.0.1:%d/127.0.0.1:%d" % (i, ports[i][0], ports[i][1])
                        for i in ids)
        for i in ids:
            raft, http = ports[i]
            log = open(os.path.join(tmp, "node%d.log" % i), "wb")
            argv = [binary, "server", "--id", str(i), "--data", os.path.join(tmp, "n%d" % i),
                    "--raft", "127.0.0.1:%d" % raft, "--http", "127.0.0.1:%d" % http,
                    "--peers", spec, "--log-level", "warn"] + extra
            p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
            log.close()
            self.procs.append(p)
            self.nodes.append(("127.0.0.1:%d" % http, p))
        self.leader = self.wait_leader()

    def wait_leader(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for addr, p in self.nodes:
                try:
                    j = http_json(addr, "/cluster")
                except OSError:
                    continue
                if j.get("role") == "leader":
                    return addr, p
            time.sleep(0.05)
        raise SystemExit("no leader within %d s" % timeout)

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def run_wrk(args, addrs, seconds, seed):
    env = dict(os.environ, BENCH_SYSTEM="stcache", BENCH_OP="write",
               BENCH_KEYS=str(args.keys), BENCH_VALUE_BYTES=str(args.value_bytes),
               BENCH_ADDRS=",".join(addrs), BENCH_SEED=str(seed))
    argv = [args.wrk, "-t", str(args.threads), "-c", str(args.connections),
            "-d", "%ds" % seconds, "--timeout", "10s", "-s", os.path.join(HERE, "kv.lua"),
            "http://%s" % addrs[0]]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith("BENCHJSON "):
            return json.loads(line[len("BENCHJSON "):])
    raise SystemExit("wrk printed no result:\n" + out[-2000:])


def one_mode(args, name, extra, tmp_root):
    tmp = tempfile.mkdtemp(prefix="evict-", dir=tmp_root)
    c = Cluster(args.stcache, tmp, extra)
    try:
        addrs = [a for a, _ in c.nodes]
        run_wrk(args, addrs, args.warmup, 1)
        res = run_wrk(args, addrs, args.duration, 2)
        addr, pid = c.wait_leader()
        info = http_json(addr, "/cluster")
        m = metrics(addr)
        keys = m.get("stcache_kv_keys", 0)
        ok = res["statuses"].get("200", 0) + res["statuses"].get("201", 0) + \
            res["statuses"].get("2xx", 0)
        row = {
            "mode": name,
            "writes_per_s": ok / (res["duration_us"] / 1e6),
            "non_2xx": res["requests"] - ok,
            "p99_ms": res["latency_us"]["p99"] / 1000.0,
            "keys": keys,
            "used_bytes": info.get("used_memory_bytes", 0),
            "max_bytes": info.get("max_memory_bytes", 0),
            "rss_bytes": rss_bytes(pid.pid),
            "evicted": m.get("stcache_evicted_keys_total", 0),
        }
        return row
    finally:
        c.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stcache", default=os.environ.get("STCACHE_BIN",
                                                        os.path.join(REPO, "build/stcache")))
    ap.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--connections", type=int, default=128)
    ap.add_argument("--threads", type=int, default=3)
    ap.add_argument("--keys", type=int, default=400000)
    ap.add_argument("--value-bytes", type=int, default=100)
    ap.add_argument("--policy", default="allkeys-lru")
    ap.add_argument("--max-memory", type=int, default=0,
                    help="default: 40%% of the key space's used bytes")
    ap.add_argument("--data-root", default=os.environ.get("BENCH_DATA_ROOT", "/var/tmp"))
    args = ap.parse_args()
    per_key = KEY_BYTES + args.value_bytes + 64
    limit = args.max_memory or int(args.keys * per_key * 0.4)
    rows = [
        one_mode(args, "no limit", [], args.data_root),
        one_mode(args, "eviction (%s)" % args.policy,
                 ["--max-memory", str(limit), "--eviction-policy", args.policy], args.data_root),
    ]
    print("eviction benchmark: 3 nodes, %d connections, %d s (after %d s warm-up), "
          "random writes of %d-byte values over %d keys; --max-memory %d"
          % (args.connections, args.duration, args.warmup, args.value_bytes, args.keys, limit))
    print("%-26s %10s %8s %8s %9s %12s %10s %10s %10s" % (
        "mode", "writes/s", "non-2xx", "p99 ms", "keys", "used bytes", "used/key",
        "RSS/key", "evicted"))
    for r in rows:
        k = max(r["keys"], 1)
        print("%-26s %10.0f %8d %8.1f %9d %12d %10.1f %10.1f %10d" % (
            r["mode"], r["writes_per_s"], r["non_2xx"], r["p99_ms"], r["keys"], r["used_bytes"],
            r["used_bytes"] / k, r["rss_bytes"] / k, r["evicted"]))
    ratio = rows[1]["writes_per_s"] / max(rows[0]["writes_per_s"], 1)
    print("throughput with eviction: %.1f%% of without (target >= 90%%)" % (100 * ratio))
    print("BENCHJSON " + json.dumps({"rows": rows, "ratio": ratio, "max_memory": limit}))


if __name__ == "__main__":
    sys.exit(main())
