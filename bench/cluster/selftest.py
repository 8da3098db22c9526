#!/usr/bin/env python3
"""Self-test of the benchmark's own tools (a ctest test; no cluster, no etcd,
no wrk): the floor helper's three probes and its refusal of bad arguments,
and the driver's floor summary, target rules, table and result-file naming.

usage: selftest.py FLOOR_BINARY
"""

import io
import json
import os
import subprocess
import sys
import tempfile
from contextlib import redirect_stdout

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import driver  # noqa: E402

FAILS = []


def check(cond, what):
    if not cond:
        FAILS.append(what)
        print("  FAIL %s" % what)


def probe(floor, *argv):
    out = subprocess.run([floor] + list(argv), capture_output=True, text=True, timeout=120)
    check(out.returncode == 0, "floor %s exits 0 (stderr: %s)" % (" ".join(argv), out.stderr.strip()))
    return json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else None


def test_floor(floor):
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/var/tmp")) as d:
        for argv, what, count in [(["fsync", d, "20"], "fdatasync_4k", 20),
                                  (["rtt", "200"], "loopback_rtt", 200),
                                  (["replicated", d, "20"], "replicated_write_3", 20)]:
            r = probe(floor, *argv)
            if r is None:
                continue
            check(r["what"] == what and r["count"] == count, "%s: what/count %r" % (what, r))
            check(0 < r["min_us"] <= r["p50_us"] <= r["p99_us"], "%s: 0 < min <= p50 <= p99 %r"
                  % (what, r))
        check(os.listdir(d) == [], "the probes leave no file behind: %r" % os.listdir(d))
        # a replicated write is at least one round trip plus one sync: the
        # probe must really wait for the disk and the followers (a probe that
        # answered at once would measure nothing)
        rep = probe(floor, "replicated", d, "50")
        rtt = probe(floor, "rtt", "200")
        if rep and rtt:
            check(rep["min_us"] > rtt["min_us"], "replicated min %.1f > rtt min %.1f"
                  % (rep["min_us"], rtt["min_us"]))
    for bad in (["replicated"], ["replicated", "/nonexistent-dir", "5"], ["fsync", "/tmp", "0"],
                ["rtt", "x"], ["nope", "3"], ["rtt", "5", "extra"]):
        out = subprocess.run([floor] + bad, capture_output=True, text=True, timeout=60)
        check(out.returncode == 1 and out.stderr.strip() != "" and out.stdout == "",
              "floor %s: exit 1 with a message (got %d, %r)" % (" ".join(bad), out.returncode,
                                                                out.stderr.strip()))


def fake_probe(when, fs, rtt, rep=None):
    p = {"when": when, "fdatasync": {"p50_us": fs, "p99_us": fs * 2},
         "rtt": {"p50_us": rtt, "p99_us": rtt * 2}, "floor_us": fs + rtt}
    if rep is not None:
        p["replicated"] = {"p50_us": rep, "p99_us": rep * 2}
    return p


def test_floor_summary_and_targets():
    probes = [fake_probe("start", 100.0, 50.0, 300.0), fake_probe("round 1", 80.0, 40.0, 200.0),
              fake_probe("end", 120.0, 60.0, 250.0)]
    fl = driver.floor_summary(probes)
    check(fl["floor_us"] == 120.0 and fl["floor_us_max"] == 180.0, "floor: lowest probe %r" % fl)
    check(fl["replicated_us"] == 200.0 and fl["replicated_us_median"] == 250.0,
          "bare 3-replica write: lowest probe %r" % fl)
    old = driver.floor_summary([fake_probe("start", 100.0, 50.0)])
    check("replicated_us" not in old, "a result file without the probe still summarizes")

    def wl(name, st, et):
        return {"name": name, "summary": {"stcache": st, "etcd": et}}

    def m(rps, p50, p99, cpu):
        return {"rps": {"median": rps, "min": rps, "max": rps}, "p50_ms": {"median": p50},
                "p99_ms": {"median": p99}, "p999_ms": {"median": p99}, "errors": {"median": 0},
                "cpu_us_per_op": {"median": cpu}, "peak_rss_mb_max": {"median": 40.0}}
    result = {"floor": fl, "systems": ["stcache", "etcd"],
              "config": {"rounds": 3, "duration_s": 10},
              "meta": {"machine": "test"},
              "workloads": [wl("write c1 leader", m(3000, 0.30, 1.0, 300), m(1000, 1.0, 3.0, 1500)),
                            wl("write c128 leader", m(56000, 2.0, 9.0, 20), m(7000, 18, 45, 250)),
                            wl("lin-read c128 leader", m(90000, 1, 3, 12), m(8000, 15, 40, 230))],
              "big": {"keys": 1000000,
                      "stcache": {"rss_mb_loaded_mean": 166.0, "restart_to_lin_read_s": 0.4},
                      "etcd": {"rss_mb_loaded_mean": 550.0, "restart_to_lin_read_s": 4.0}}}
    t = {x["name"]: x for x in driver.compute_targets(result)}
    check(t["writes c128: throughput >= 8x etcd"]["met"] is True, "56k vs 7k meets 8x")
    c1 = t["writes c1: p50 <= 1.5x floor (RTT + fdatasync)"]
    check(c1["met"] is False and abs(c1["value"] - 2.5) < 1e-9, "0.30 ms vs 0.12 ms: 2.5x, missed")
    check("bare 3-replica write 0.200 ms: 1.50x" in c1["detail"], "c1 detail: %s" % c1["detail"])
    result["targets"] = list(t.values())
    buf = io.StringIO()
    with redirect_stdout(buf):
        driver.print_table(result)
    out = buf.getvalue()
    check("== bare 3-replica write (lowest probe): 200.0 us = 1.67x the floor" in out,
          "table prints the bare 3-replica write")
    check("bare 3-replica write p50 300.0 us" in out, "table prints it per probe")
    check("MET    writes c128: throughput >= 8x etcd" in out, "table prints the targets")


def test_run_kind():
    ap = driver.arg_parser()
    kinds = {(): "", ("--quick",): "-quick", ("--only", "write c1"): "-partial",
             ("--skip-big",): "-partial", ("--rounds", "2"): "-partial",
             ("--systems", "stcache"): "-partial", ("--warmup", "0"): "-partial",
             ("--duration", "5"): "-partial", ("--big-keys", "1000"): "-partial",
             ("--stcache", "/x/stcache"): ""}
    for argv, want in kinds.items():
        got = driver.run_kind(ap.parse_args(list(argv)))
        check(got == want, "run kind of %r: %r, want %r (only a full run replaces latest.json)"
              % (argv, got, want))


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    test_floor(sys.argv[1])
    test_floor_summary_and_targets()
    test_run_kind()
    print("%s: %s" % (os.path.basename(__file__), "FAILED (%d)" % len(FAILS) if FAILS else "ok"))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
