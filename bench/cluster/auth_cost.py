#!/usr/bin/env python3
"""The cost of --auth on the write path: write c128 leader (wrk + kv.lua,
100-byte values, 100k keys) against two 3-node clusters on loopback, one
with --auth (every request carries a token; the verified-token cache
answers after the first) and one without, alternating run by run in one
process so both see the same machine state. Prints the medians and the
ratio; docs/BENCHMARKS.md records the figures. Figures, never asserted.

usage: auth_cost.py STCACHE_BINARY [--rounds N] [--seconds S]
(make bench-auth; run it under the CPU lock on a shared machine)."""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "cluster"))

import harness  # noqa: E402
from scenarios_auth import auth_cluster, wait_admin  # noqa: E402


class Bench(harness.Scenario):
    pass


def wrk(addr, token, seconds, seed, tmp):
    env = dict(os.environ, BENCH_SYSTEM="stcache", BENCH_OP="write", BENCH_KEYS="100000",
               BENCH_VALUE_BYTES="100", BENCH_ADDRS=addr, BENCH_SEED=str(seed),
               BENCH_TOKEN=token or "")
    out = subprocess.run(["wrk", "-t", "1", "-c", "128", "-d", "%ds" % seconds, "--timeout", "5s",
                          "-s", os.path.join(HERE, "kv.lua"), "http://%s/" % addr],
                         env=env, capture_output=True, timeout=seconds + 60).stdout.decode()
    for line in out.splitlines():
        if line.startswith("BENCHJSON "):
            r = json.loads(line[len("BENCHJSON "):])
            return r
    raise SystemExit("wrk printed no result:\n" + out[-2000:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("stcache")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=10)
    args = ap.parse_args()
    sc = Bench(os.path.abspath(args.stcache))
    tmp = tempfile.mkdtemp(prefix="stcache-auth-bench-")
    try:
        on = auth_cluster(sc, "bench-auth-on")
        off = sc.cluster("bench-auth-off", tls=False)
        for c in (on, off):
            c.start_static(3)
        lead_on, lead_off = on.wait_leader(), off.wait_leader()
        wait_admin(on, lead_on)
        rps = {"off": [], "on": []}
        p99 = {"off": [], "on": []}
        for rnd in range(args.rounds):
            order = [("off", lead_off, None), ("on", lead_on, on.token)]
            if rnd % 2:
                order.reverse()
            for name, leader, token in order:
                r = wrk(leader.http, token, args.seconds, rnd + 1, tmp)
                bad = {k: v for k, v in r.get("statuses", {}).items() if not k.startswith("2")}
                bad.update({k: v for k, v in r["errors"].items() if v})
                if bad:
                    raise SystemExit("%s: errors %r %r" % (name, bad, r.get("error_bodies")))
                rps[name].append(r["requests"] * 1e6 / r["duration_us"])
                p99[name].append(r["latency_us"]["p99"])
                print("round %d %-3s %8.0f req/s p99 %6.0f us" % (rnd + 1, name, rps[name][-1],
                                                                p99[name][-1]), flush=True)
        m_off, m_on = statistics.median(rps["off"]), statistics.median(rps["on"])
        print("write c128 leader: auth off %.0f req/s (p99 %.0f us), auth on %.0f req/s "
              "(p99 %.0f us): %.1f%% of the throughput without auth"
              % (m_off, statistics.median(p99["off"]), m_on, statistics.median(p99["on"]),
                 100.0 * m_on / m_off))
        st = lead_on.request("GET", "/metrics").body.decode()
        print("\n".join(line for line in st.splitlines() if line.startswith("stcache_auth")))
    finally:
        for c in sc.clusters:
            c.close()


if __name__ == "__main__":
    main()
