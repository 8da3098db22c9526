#!/usr/bin/env python3
"""Listing 1,000 keys under a prefix out of 1M, over HTTP (issue 20: target
<= 1 ms on the server).

usage: list_1m.py [--stcache build/stcache] [--keys 1000000] [--requests 200]
                  [--data-root /var/tmp]

Starts one node with the Redis protocol on, loads KEYS keys k0000000.. of
100 bytes with `redis-cli --pipe` (Redis's mass-insertion mode, pipelined
SETs: every one still a durable, replicated write), then times GET /kv
listings of the 1,000 keys under "k0012" (k0012000..k0012999) with values,
keys_only and count_only, on one keep-alive connection. Prints the client's
median and p99 (loopback and Python's HTTP client included) and the server's
own time for the same requests, read from its request-duration histogram.
Asserts nothing (bench/)."""
import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "bench", "reliability"))
from common import free_port, request  # noqa: E402


def wait(what, fn, timeout=120):
    t = time.time()
    while time.time() - t < timeout:
        if fn():
            return
        time.sleep(0.05)
    sys.exit("timed out waiting for " + what)


def server_sum_count(addr):
    """(sum s, count) of stcache_http_request_seconds{route="kv_get"}: the
    node's own time for the GET /kv requests (listings included), from
    request parsed to response queued."""
    st, body = request(addr, "GET", "/metrics")
    s = n = 0.0
    for line in body.decode().splitlines():
        if line.startswith('stcache_http_request_seconds_sum{route="kv_get"'):
            s = float(line.split()[-1])
        elif line.startswith('stcache_http_request_seconds_count{route="kv_get"'):
            n = float(line.split()[-1])
    return s, n


def resp_set(k, v):
    return b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stcache", default=os.path.join(REPO, "build", "stcache"))
    ap.add_argument("--keys", type=int, default=1000000)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--data-root", default=os.environ.get("BENCH_DATA_ROOT", "/var/tmp"))
    a = ap.parse_args()
    if not shutil.which("redis-cli"):
        sys.exit("redis-cli not found (apt-get install redis-tools)")
    root = tempfile.mkdtemp(prefix="stcache-list-", dir=a.data_root)
    http_, raft, redis = ("127.0.0.1:%d" % free_port() for _ in range(3))
    log = open(os.path.join(root, "n1.log"), "wb")
    p = subprocess.Popen([a.stcache, "server", "--bootstrap", "--id", "1", "--data",
                          os.path.join(root, "n1"), "--http", http_, "--raft", raft,
                          "--redis", redis, "--log-level", "warn"], stdout=log, stderr=log)
    try:
        wait("the node", lambda: request(http_, "GET", "/readyz", timeout=2)[0] == 200)
        value = b"v" * 100
        feed = b"".join(resp_set(b"k%07d" % i, value) for i in range(a.keys))
        t0 = time.time()
        host, port = redis.rsplit(":", 1)
        r = subprocess.run(["redis-cli", "-h", host, "-p", port, "--pipe"], input=feed,
                           capture_output=True, check=True)
        load_s = time.time() - t0
        print("loaded %d keys in %.1f s (%s)" % (a.keys, load_s,
                                                 r.stdout.decode().strip().splitlines()[-1]))
        c = http.client.HTTPConnection(*http_.rsplit(":", 1), timeout=60)
        rows = []
        for tag, extra in (("values", ""), ("keys_only", "&keys_only=1"),
                           ("count_only", "&count_only=1")):
            path = "/kv?prefix=k0012&limit=1000" + extra
            lat = []
            n_items = None
            s0, n0 = server_sum_count(http_)
            for _ in range(a.requests):
                t = time.perf_counter()
                c.request("GET", path)
                resp = c.getresponse()
                body = resp.read()
                lat.append((time.perf_counter() - t) * 1e6)
                if n_items is None:
                    j = json.loads(body)
                    n_items = j.get("count", len(j.get("items", [])))
            s1, n1 = server_sum_count(http_)
            lat.sort()
            rows.append((tag, n_items, len(body), statistics.median(lat),
                         lat[int(len(lat) * 0.99) - 1], (s1 - s0) / max(1, n1 - n0) * 1e6))
        print()
        print("| GET /kv?prefix=k0012&limit=1000 of %d keys | keys | bytes | server mean "
              "| client median | client p99 |" % a.keys)
        print("| --- | --- | --- | --- | --- | --- |")
        for tag, n, nb, med, p99, srv in rows:
            print("| %s | %s | %d | %.0f us | %.0f us | %.0f us |" % (tag, n, nb, srv, med, p99))
        print("(server: its request-duration histogram's mean; client: one keep-alive "
              "connection, loopback and Python included)")
    finally:
        p.kill()
        p.wait()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
