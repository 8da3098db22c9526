#!/usr/bin/env python3
"""Side-by-side cluster benchmark: stcache vs etcd 3.4 on loopback.

Started by bench/run.sh (which builds the helpers and checks the tools); see
docs/BENCHMARKS.md for what each figure means. Python standard library only.

Phases:
  1. floor: the disk's fdatasync latency (4 KiB, data dir file system), the
     loopback TCP round trip, and a bare 3-replica write (four processes, no
     consensus code), measured by the C helper `floor`.
  2. throughput: a 3-node cluster of each system, 100k keys preloaded, then
     every workload run with wrk + kv.lua, alternating the systems (the order
     flips every run) over several rounds; medians, min and max per figure.
  3. big: for each system in turn, a fresh 3-node cluster loaded with 1M keys
     of 100 bytes: memory per node, a follower's restart until it serves a
     linearizable read, a new node's join until it serves the latest write.

Every process started here runs in its own session and is killed at exit
(normal exit, exception, SIGINT/SIGTERM/SIGHUP); their pids are also written
to <tmp>/pids so that bench/run.sh can kill leftovers if this driver is
itself killed.
"""

import argparse
import base64
import datetime
import http.client
import json
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# ---------------------------------------------------------------------------
# process bookkeeping


class Procs:
    """Every child process this driver started; all killed by kill_all()."""

    def __init__(self):
        self.live = []  # Popen objects
        self.pidfile = None

    def _write_pidfile(self):
        if self.pidfile:
            with open(self.pidfile, "w") as f:
                for p in self.live:
                    if p.poll() is None:
                        f.write("%d\n" % p.pid)

    def spawn(self, argv, log_path, env=None):
        log = open(log_path, "ab")
        try:
            p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, env=env,
                                 start_new_session=True)
        finally:
            log.close()
        self.live.append(p)
        self._write_pidfile()
        return p

    def stop(self, p, sig=signal.SIGTERM, timeout_s=15.0):
        """Stops one child: sig, then SIGKILL after timeout_s. Returns seconds taken."""
        t0 = time.monotonic()
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        if p in self.live:
            self.live.remove(p)
        self._write_pidfile()
        return time.monotonic() - t0

    def kill_all(self):
        for p in list(self.live):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        for p in list(self.live):
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        self.live = []
        self._write_pidfile()


PROCS = Procs()


def log(msg):
    sys.stderr.write("[bench %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


class BenchError(Exception):
    pass


# ---------------------------------------------------------------------------
# /proc readings


def proc_cpu_s(pid):
    """utime+stime of a live process, in seconds (None if it is gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime is field 14, stime field 15
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status_kb(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss(pid):
    """Resets VmHWM to the current RSS (Linux >= 4.0, needs ptrace rights)."""
    try:
        with open("/proc/%d/clear_refs" % pid, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def machine_busy_s():
    """Busy CPU seconds of the whole machine so far (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        parts = f.readline().split()
    vals = [int(x) for x in parts[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    steal = vals[7] if len(vals) > 7 else 0
    return (sum(vals[:8]) - idle - steal) / CLK_TCK


def children_cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def dir_bytes(path):
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


# ---------------------------------------------------------------------------
# HTTP


# Client addresses served over TLS (a "+tls" system): addr -> ssl.SSLContext
# that trusts the cluster's CA. Every client of the driver (http_req, the
# loader, wrk's URL) speaks HTTPS to them.
TLS_CLIENT = {}


def gen_certs(certdir, *args):
    """scripts/gen-certs.sh CERTDIR ARGS... (a CA or a node certificate)."""
    subprocess.run([os.path.join(REPO, "scripts", "gen-certs.sh"), certdir] + [str(a) for a in args],
                   check=True, stdout=subprocess.DEVNULL)


def http_req(addr, method, path, body=None, headers=None, timeout_s=2.0):
    """One request on a fresh connection. Returns (status, body bytes); raises OSError."""
    host, port = addr.rsplit(":", 1)
    if addr in TLS_CLIENT:
        conn = http.client.HTTPSConnection(host, int(port), timeout=timeout_s,
                                           context=TLS_CLIENT[addr])
    else:
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout_s)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (http.client.HTTPException, ValueError) as e:
        raise OSError(str(e))
    finally:
        conn.close()


def b64(s):
    return base64.b64encode(s.encode()).decode()


# ---------------------------------------------------------------------------
# ports


# Ports come from below the ephemeral range (so no outgoing connection takes
# one between the check and the bind), and each is locked with flock() on
# PORT_LOCK_DIR/<port>.lock for this driver's lifetime: the same convention as
# tests/cluster/harness.py, so a cluster test running at the same time on this
# machine never picks a port of ours (nor we one of its).
PORT_LO, PORT_HI = 20000, 32000
PORT_LOCK_DIR = os.path.join(tempfile.gettempdir(), "stcache-cluster-ports")
_port_locks = []


def _port_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def pick_ports(count):
    """count free loopback ports, locked until this process exits."""
    import fcntl
    os.makedirs(PORT_LOCK_DIR, exist_ok=True)
    rng = random.Random()
    ports = []
    attempts = 0
    while len(ports) < count:
        attempts += 1
        if attempts > 20000:
            raise BenchError("could not reserve %d free ports" % count)
        port = rng.randrange(PORT_LO, PORT_HI)
        if port in ports:
            continue
        fd = os.open(os.path.join(PORT_LOCK_DIR, "%d.lock" % port), os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        if not _port_free(port):
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            continue
        _port_locks.append(fd)
        ports.append(port)
    return ports


# ---------------------------------------------------------------------------
# clusters


class Node:
    def __init__(self, idx, name, data_dir, log_path, http_port, peer_port):
        self.idx = idx  # 1-based
        self.name = name
        self.data_dir = data_dir
        self.log_path = log_path
        self.http_port = http_port
        self.peer_port = peer_port
        self.http = "127.0.0.1:%d" % http_port
        self.peer = "127.0.0.1:%d" % peer_port
        self.proc = None
        self.member_id = None  # etcd: decimal id string

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None


class Cluster:
    """Common part. Subclasses: spawn(node, joining), leader_node(), put/get."""

    system = "?"

    def __init__(self, root, ports, size=3, tls=False):
        self.root = root
        self.ports = list(ports)  # pairs (http, peer) taken in order
        self.nodes = []
        # tls: TLS on both ports, certificates from scripts/gen-certs.sh in
        # root/certs (node certificates serve both ports; clients present
        # none: wrk cannot, so neither system requires client certificates)
        self.tls_dir = os.path.join(root, "certs") if tls else None
        self._tls_ctx = None
        if tls:
            gen_certs(self.tls_dir, "ca")
        for i in range(1, size + 1):
            self.nodes.append(self._new_node(i))

    def _new_node(self, i):
        http_port, peer_port = self.ports.pop(0), self.ports.pop(0)
        d = os.path.join(self.root, "%s%d" % (self.system, i))
        os.makedirs(d, exist_ok=True)
        return Node(i, "%s%d" % (self.system, i), os.path.join(d, "data"),
                    os.path.join(d, "node.log"), http_port, peer_port)

    def pids(self):
        return [n.pid for n in self.nodes if n.alive()]

    def tls_files(self, node):
        """(cert, key, ca) of node, made on first use; registers node's
        client address as HTTPS for the driver's clients."""
        crt = os.path.join(self.tls_dir, "node-%d.crt" % node.idx)
        if not os.path.exists(crt):
            gen_certs(self.tls_dir, "node", node.idx)
        ca = os.path.join(self.tls_dir, "ca.crt")
        if self._tls_ctx is None:
            self._tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            self._tls_ctx.load_verify_locations(ca)
        TLS_CLIENT[node.http] = self._tls_ctx
        return crt, os.path.join(self.tls_dir, "node-%d.key" % node.idx), ca

    def start(self, timeout_s=60):
        for n in self.nodes:
            self.spawn(n, joining=False)
        self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s=60):
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if self.leader_node() is not None:
                    # every node must be answering too
                    if all(self.node_healthy(n) for n in self.nodes):
                        return
            except (OSError, ValueError, KeyError) as e:
                last = e
            time.sleep(0.1)
        raise BenchError("%s cluster not ready after %ds (%s); logs in %s" %
                         (self.system, timeout_s, last, self.root))

    def ensure_up(self, events):
        """Restarts (from its data dir) any node that has died, e.g. killed by
        something else on this shared machine; records it in events."""
        dead = [n for n in self.nodes if n.proc is not None and n.proc.poll() is not None]
        for n in dead:
            msg = "%s node %s had exited (status %s); restarted. log tail: %s" % (
                self.system, n.name, n.proc.returncode, tail(n.log_path, 3).replace("\n", " | "))
            log(msg)
            events.append({"time": time.strftime("%H:%M:%S"), "event": msg})
            PROCS.stop(n.proc)
            self.spawn(n, joining=False, restart=True)
        if dead:
            self.wait_ready(120)

    def check_alive(self):
        for n in self.nodes:
            if n.proc is not None and n.proc.poll() is not None:
                raise BenchError("%s node %s exited with %s; log tail:\n%s" %
                                 (self.system, n.name, n.proc.returncode, tail(n.log_path)))

    def stop(self):
        for n in self.nodes:
            if n.proc is not None:
                PROCS.stop(n.proc)
                n.proc = None

    def followers(self):
        leader = self.leader_node()
        return [n for n in self.nodes if n is not leader]

    def leader_node(self):
        raise NotImplementedError


def tail(path, lines=15):
    try:
        with open(path, "rb") as f:
            data = f.read()[-8000:]
        return "\n".join(data.decode(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class EtcdCluster(Cluster):
    system = "etcd"

    def __init__(self, root, ports, binary, size=3, tls=False):
        self.binary = binary
        super().__init__(root, ports, size, tls)
        self.scheme = "https://" if tls else "http://"

    def _initial_cluster(self, nodes):
        return ",".join("%s=%s%s" % (n.name, self.scheme, n.peer) for n in nodes)

    def spawn(self, node, joining, restart=False):
        # restart: etcd ignores the --initial-* flags once its data dir exists
        sch = self.scheme
        argv = [self.binary,
                "--name", node.name,
                "--data-dir", node.data_dir,
                "--listen-client-urls", sch + node.http,
                "--advertise-client-urls", sch + node.http,
                "--listen-peer-urls", sch + node.peer,
                "--initial-advertise-peer-urls", sch + node.peer,
                "--initial-cluster", self._initial_cluster(self.nodes),
                "--initial-cluster-state", "existing" if joining else "new",
                "--initial-cluster-token", "stbench",
                # the load phases write well over the default 2 GiB of history
                "--quota-backend-bytes", str(8 * 1024 ** 3),
                "--logger", "zap", "--log-level", "warn"]
        # Durability: etcd fsyncs its WAL before acknowledging by default;
        # no --unsafe-* flag is ever passed (checked in run.sh as well).
        assert not any(a.startswith("--unsafe") for a in argv)
        if self.tls_dir:
            crt, key, ca = self.tls_files(node)
            argv += ["--cert-file", crt, "--key-file", key,
                     "--peer-cert-file", crt, "--peer-key-file", key,
                     "--peer-trusted-ca-file", ca, "--peer-client-cert-auth"]
        node.proc = PROCS.spawn(argv, node.log_path)

    def _status(self, node):
        st, body = http_req(node.http, "POST", "/v3/maintenance/status", b"{}",
                            {"Content-Type": "application/json"}, timeout_s=1.0)
        if st != 200:
            raise OSError("status %d" % st)
        return json.loads(body)

    def node_healthy(self, node):
        try:
            st, body = http_req(node.http, "GET", "/health", timeout_s=1.0)
            return st == 200 and json.loads(body).get("health") == "true"
        except (OSError, ValueError):
            return False

    def leader_node(self):
        leader_id = None
        ids = {}
        for n in self.nodes:
            if not n.alive():
                continue
            try:
                s = self._status(n)
            except (OSError, ValueError):
                continue
            n.member_id = s["header"]["member_id"]
            ids[n.member_id] = n
            if s.get("leader") and s["leader"] != "0":
                leader_id = s["leader"]
        return ids.get(leader_id)

    def put(self, node, key, value):
        body = json.dumps({"key": b64(key), "value": b64(value)}).encode()
        st, _ = http_req(node.http, "POST", "/v3/kv/put", body,
                         {"Content-Type": "application/json"})
        return st == 200

    def get(self, node, key, consistency, timeout_s=2.0):
        req = {"key": b64(key)}
        if consistency == "stale":
            req["serializable"] = True
        st, body = http_req(node.http, "POST", "/v3/kv/range", json.dumps(req).encode(),
                            {"Content-Type": "application/json"}, timeout_s=timeout_s)
        if st != 200:
            return None
        kvs = json.loads(body).get("kvs")
        if not kvs:
            return None
        return base64.b64decode(kvs[0].get("value", "")).decode(errors="replace")

    def add_node(self):
        node = self._new_node(len(self.nodes) + 1)
        leader = self.leader_node()
        body = json.dumps({"peerURLs": [self.scheme + node.peer]}).encode()
        # etcd refuses a member add ("unhealthy cluster", 503) until every member
        # has been connected for a few seconds (strict reconfiguration check),
        # e.g. just after a restart: retry; the clock starts with the attempt
        # that is accepted.
        deadline = time.monotonic() + 60
        while True:
            t0 = time.monotonic()
            st, resp = http_req(leader.http, "POST", "/v3/cluster/member/add", body,
                                {"Content-Type": "application/json"}, timeout_s=10.0)
            if st == 200:
                break
            if st != 503 or time.monotonic() > deadline:
                raise BenchError("etcd member add: %d %s" % (st, resp[:200]))
            time.sleep(0.2)
        self.nodes.append(node)
        self.spawn(node, joining=True)
        return node, t0


class StcacheCluster(Cluster):
    system = "stcache"

    def __init__(self, root, ports, binary, size=3, tls=False):
        self.binary = binary
        super().__init__(root, ports, size, tls)

    def _peers(self, nodes):
        return ",".join("%d=%s/%s" % (n.idx, n.peer, n.http) for n in nodes)

    def spawn(self, node, joining, join_addr=None, restart=False):
        argv = [self.binary, "server", "--id", str(node.idx), "--data", node.data_dir,
                "--raft", node.peer, "--http", node.http]
        if joining:
            argv += ["--join", join_addr]
        elif not restart:
            argv += ["--peers", self._peers(self.nodes[:3])]
        # restart: no start-mode flag, the node comes back from its data dir
        if PEER_TLS_DIR:
            crt = os.path.join(PEER_TLS_DIR, "node-%d.crt" % node.idx)
            if not os.path.exists(crt):
                subprocess.run([os.path.join(REPO, "scripts", "gen-certs.sh"), PEER_TLS_DIR,
                                "node", str(node.idx)], check=True, stdout=subprocess.DEVNULL)
            argv += ["--peer-cert-file", crt,
                     "--peer-key-file", os.path.join(PEER_TLS_DIR, "node-%d.key" % node.idx),
                     "--peer-trusted-ca-file", os.path.join(PEER_TLS_DIR, "ca.crt")]
        elif self.tls_dir:
            crt, key, ca = self.tls_files(node)
            argv += ["--peer-cert-file", crt, "--peer-key-file", key, "--peer-trusted-ca-file", ca,
                     "--cert-file", crt, "--key-file", key]
        node.proc = PROCS.spawn(argv, node.log_path)

    def _cluster(self, node):
        st, body = http_req(node.http, "GET", "/cluster", timeout_s=1.0)
        if st != 200:
            raise OSError("status %d" % st)
        return json.loads(body)

    def node_healthy(self, node):
        try:
            st, _ = http_req(node.http, "GET", "/health", timeout_s=1.0)
            return st == 200
        except OSError:
            return False

    def leader_node(self):
        by_http = {n.http: n for n in self.nodes}
        by_idx = {str(n.idx): n for n in self.nodes}
        for n in self.nodes:
            if not n.alive():
                continue
            try:
                c = self._cluster(n)
            except (OSError, ValueError):
                continue
            leader = c.get("leader")
            if leader in (None, 0, "0", ""):
                continue
            for m in c.get("members", []):
                if str(m.get("id")) == str(leader):
                    hit = by_http.get(m.get("http"))
                    if hit is not None and hit.alive():
                        return hit
            hit = by_idx.get(str(leader))
            if hit is not None and hit.alive():
                return hit
        return None

    def put(self, node, key, value):
        st, _ = http_req(node.http, "PUT", "/kv/" + key, value.encode())
        return 200 <= st < 300

    def get(self, node, key, consistency, timeout_s=2.0):
        st, body = http_req(node.http, "GET", "/kv/%s?consistency=%s" % (key, consistency),
                            timeout_s=timeout_s)
        if st != 200:
            return None
        return body.decode(errors="replace")

    def add_node(self):
        node = self._new_node(len(self.nodes) + 1)
        leader = self.leader_node()
        self.nodes.append(node)
        t0 = time.monotonic()
        self.spawn(node, joining=True, join_addr=leader.http)
        return node, t0


# ---------------------------------------------------------------------------
# wrk


class Wrk:
    def __init__(self, binary, script, tmp):
        self.binary = binary
        self.script = script
        self.tmp = tmp
        self.seed = 1

    def run(self, system, op, addrs, threads, conns, duration_s, consistency="linearizable",
            keys=100000, write_pct=10):
        """Runs wrk once and returns the parsed BENCHJSON dict plus wrk_cpu_s."""
        self.seed += 1
        env = dict(os.environ)
        env.update({
            "BENCH_SYSTEM": system, "BENCH_OP": op, "BENCH_CONSISTENCY": consistency,
            "BENCH_KEYS": str(keys), "BENCH_VALUE_BYTES": "100",
            "BENCH_WRITE_PCT": str(write_pct), "BENCH_ADDRS": ",".join(addrs),
            "BENCH_THREADS": str(threads), "BENCH_CONNS": str(conns),
            "BENCH_SEED": str(self.seed),
        })
        argv = [self.binary, "-t", str(threads), "-c", str(conns), "-d", "%ds" % duration_s,
                "--timeout", "5s", "-s", self.script,
                "%s://%s/" % ("https" if addrs[0] in TLS_CLIENT else "http", addrs[0])]
        cpu0 = children_cpu_s()
        out_path = os.path.join(self.tmp, "wrk.out")
        with open(out_path, "wb") as out:
            p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
            PROCS.live.append(p)
            PROCS._write_pidfile()
            limit = time.monotonic() + duration_s + 30
            try:
                while p.poll() is None:
                    if time.monotonic() > limit:
                        p.kill()
                        p.wait()
                        raise BenchError("wrk did not finish: %s" % " ".join(argv))
                    time.sleep(0.05)
            finally:
                PROCS.stop(p)
        wrk_cpu = children_cpu_s() - cpu0
        with open(out_path, "rb") as f:
            text = f.read().decode(errors="replace")
        for line in text.splitlines():
            if line.startswith("BENCHJSON "):
                res = json.loads(line[len("BENCHJSON "):])
                res["wrk_cpu_s"] = round(wrk_cpu, 3)
                return res
        raise BenchError("wrk printed no result (%s):\n%s" % (" ".join(argv), text[-2000:]))


# ---------------------------------------------------------------------------
# workloads


def workloads(quick):
    # (name, op, consistency, target, conns); target: leader | spread (every node,
    # one wrk thread per node) | followers (one thread per follower).
    full = [
        ("write c1 leader", "write", None, "leader", 1),
        ("write c16 leader", "write", None, "leader", 16),
        ("write c128 leader", "write", None, "leader", 128),
        ("write c15 spread", "write", None, "spread", 15),
        ("write c129 spread", "write", None, "spread", 129),
        ("lin-read c16 leader", "read", "linearizable", "leader", 16),
        ("lin-read c128 leader", "read", "linearizable", "leader", 128),
        ("lin-read c16 followers", "read", "linearizable", "followers", 16),
        ("lin-read c128 followers", "read", "linearizable", "followers", 128),
        ("stale-read c15 spread", "read", "stale", "spread", 15),
        ("stale-read c129 spread", "read", "stale", "spread", 129),
        ("mixed-90/10 c129 spread", "mixed", "linearizable", "spread", 129),
    ]
    if not quick:
        return full
    keep = {"write c1 leader", "write c128 leader", "lin-read c128 leader",
            "lin-read c128 followers", "stale-read c129 spread", "mixed-90/10 c129 spread"}
    return [w for w in full if w[0] in keep]


def targets_for(cluster, target):
    """(addrs, threads) for wrk."""
    leader = cluster.leader_node()
    if leader is None:
        raise BenchError("%s has no leader" % cluster.system)
    if target == "leader":
        return [leader.http], None
    if target == "followers":
        return [n.http for n in cluster.nodes if n is not leader and n.alive()], None
    return [n.http for n in cluster.nodes if n.alive()], None


def run_one(cluster, wrk, wl, duration_s, warmup_s, keys):
    name, op, consistency, target, conns = wl
    addrs, _ = targets_for(cluster, target)
    if target == "leader":
        threads = min(2, conns)
    else:
        threads = len(addrs)
    consistency = consistency or "linearizable"
    if warmup_s > 0:
        wrk.run(cluster.system, op, addrs, threads, conns, warmup_s, consistency, keys)
    pids = cluster.pids()
    for pid in pids:
        reset_peak_rss(pid)
    cpu0 = {pid: proc_cpu_s(pid) for pid in pids}
    busy0 = machine_busy_s()
    load0 = loadavg()
    res = wrk.run(cluster.system, op, addrs, threads, conns, duration_s, consistency, keys)
    busy = machine_busy_s() - busy0
    cpu = 0.0
    node_cpu = {}
    for pid in pids:
        c1 = proc_cpu_s(pid)
        if c1 is None:
            raise BenchError("%s node %d died during %s" % (cluster.system, pid, name))
        cpu += c1 - cpu0[pid]
        node_cpu[pid] = c1 - cpu0[pid]
    leader = cluster.leader_node()
    cluster.check_alive()
    peaks = [proc_status_kb(pid, "VmHWM") for pid in pids]
    dur = res["duration_us"] / 1e6
    ok = sum(v for k, v in res["statuses"].items() if k.startswith("2"))
    e = res["errors"]
    socket_errors = e["connect"] + e["read"] + e["write"] + e["timeout"]
    non2xx = sum(v for k, v in res["statuses"].items() if not k.startswith("2"))
    reqs = res["requests"]
    out = {
        "rps": reqs / dur if dur > 0 else 0.0,
        "ok_rps": ok / dur if dur > 0 else 0.0,
        "p50_ms": res["latency_us"]["p50"] / 1000.0,
        "p90_ms": res["latency_us"]["p90"] / 1000.0,
        "p99_ms": res["latency_us"]["p99"] / 1000.0,
        "p999_ms": res["latency_us"]["p999"] / 1000.0,
        "max_ms": res["latency_us"]["max"] / 1000.0,
        "requests": reqs,
        "errors": non2xx + socket_errors,
        "non2xx": non2xx,
        "socket_errors": socket_errors,
        "misses": res.get("misses", 0),
        "statuses": res["statuses"],
        "error_bodies": res.get("error_bodies", {}),
        "server_cpu_s": round(cpu, 3),
        "cpu_us_per_op": (cpu * 1e6 / reqs) if reqs else None,
        # each node's share, the leader's first (where the cost of a
        # workload sits: the leader's client and peer work, or the followers')
        "node_cpu_us_per_op": [round(node_cpu[p] * 1e6 / reqs, 2) if reqs else None
                               for p in sorted(node_cpu, key=lambda p: leader is None
                                               or p != leader.pid)],
        "wrk_cpu_us_per_op": (res["wrk_cpu_s"] * 1e6 / reqs) if reqs else None,
        "peak_rss_mb_per_node": [round(p / 1024.0, 1) if p else None for p in peaks],
        "peak_rss_mb_max": max((p for p in peaks if p), default=0) / 1024.0,
        "wrk_cpu_s": res["wrk_cpu_s"],
        "machine_busy_s": round(busy, 3),
        # CPU spent by everything that is neither this cluster nor wrk during the
        # run: the idle other cluster and other users of this shared machine.
        "other_cpu_s": round(busy - cpu - res["wrk_cpu_s"], 3),
        "loadavg_at_start": load0,
        "threads": threads,
        "conns": conns,
        "duration_s": round(dur, 3),
    }
    return out


METRICS = ["rps", "p50_ms", "p99_ms", "p999_ms", "errors", "cpu_us_per_op", "peak_rss_mb_max",
           "other_cpu_s"]


def summarize(runs):
    s = {}
    for m in METRICS:
        vals = [r[m] for r in runs if r.get(m) is not None]
        if vals:
            s[m] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}
    return s


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


# ---------------------------------------------------------------------------
# load and big-data phase


def _load_request(system, host, n, value):
    key = "k%07d" % n
    if system == "etcd":
        body = ('{"key":"%s","value":"%s"}' % (b64(key), base64.b64encode(value).decode())).encode()
        head = ("POST /v3/kv/put HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                "Content-Length: %d\r\n\r\n" % (host, len(body)))
    else:
        body = value
        head = "PUT /kv/%s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n" % (
            key, host, len(body))
    return head.encode() + body


async def _read_response(reader):
    """Reads one HTTP/1.1 response; returns its status."""
    line = await reader.readline()
    if not line:
        raise ConnectionError("connection closed")
    status = int(line.split(b" ", 2)[1])
    length = 0
    chunked = False
    while True:
        h = await reader.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        name, _, val = h.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(val.strip())
        elif name == b"transfer-encoding" and b"chunked" in val.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readline()).split(b";")[0].strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


def load_keys(cluster, base, count, conns=128, depth=8, value_bytes=100, limit_s=1800):
    """Writes keys base..base+count-1 (100-byte values) through the leader with
    conns pipelined HTTP/1.1 connections, depth requests in flight on each, and
    writes every key that was not acknowledged (non-2xx, connection lost) again
    until all are, so the cluster holds exactly the key set afterwards. The
    same loader for both systems; the load rate it reports is informational."""
    import asyncio
    leader = cluster.leader_node()
    if leader is None:
        raise BenchError("%s has no leader" % cluster.system)
    host, port = leader.http.rsplit(":", 1)
    value = b"v" * value_bytes
    stats = {"requests": 0, "non2xx": 0, "socket_errors": 0, "passes": 0}
    statuses = {}

    async def worker(pending, failed):
        reader = writer = None
        try:
            while pending:
                batch = [pending.pop() for _ in range(min(depth, len(pending)))]
                got = 0
                try:
                    if writer is None:
                        reader, writer = await asyncio.open_connection(
                            host, int(port), ssl=TLS_CLIENT.get(leader.http))
                    writer.write(b"".join(_load_request(cluster.system, leader.http, n, value)
                                          for n in batch))
                    await writer.drain()
                    for n in batch:
                        st = await _read_response(reader)
                        got += 1
                        stats["requests"] += 1
                        statuses[st] = statuses.get(st, 0) + 1
                        if not 200 <= st < 300:
                            stats["non2xx"] += 1
                            failed.append(n)
                except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError,
                        IndexError):
                    stats["socket_errors"] += 1
                    failed.extend(batch[got:])
                    if writer is not None:
                        writer.close()
                    reader = writer = None
                    await asyncio.sleep(0.1)
        finally:
            if writer is not None:
                writer.close()

    async def run_all():
        pending = list(range(base + count - 1, base - 1, -1))  # popped from the end: ascending
        deadline = time.monotonic() + limit_s
        while pending:
            if time.monotonic() > deadline:
                raise BenchError("%s: load not done after %ds (%d keys left)"
                                 % (cluster.system, limit_s, len(pending)))
            stats["passes"] += 1
            failed = []
            await asyncio.gather(*(worker(pending, failed) for _ in range(conns)))
            pending = sorted(failed, reverse=True)
            if pending:
                await asyncio.sleep(0.5)

    t0 = time.monotonic()
    asyncio.run(run_all())
    elapsed = time.monotonic() - t0
    return {"keys": count, "seconds": round(elapsed, 2),
            "writes_per_s": round(count / elapsed, 1) if elapsed > 0 else None,
            "requests": stats["requests"], "non2xx": stats["non2xx"],
            "socket_errors": stats["socket_errors"], "passes": stats["passes"],
            "statuses": {str(k): v for k, v in statuses.items()},
            "loader": "pipelined HTTP/1.1, %d connections x %d in flight, to the leader"
                      % (conns, depth)}


def verify_sample(cluster, base, count, samples=200):
    leader = cluster.leader_node()
    rng = random.Random(7)
    found = 0
    for _ in range(samples):
        n = base + rng.randrange(count)
        try:
            v = cluster.get(leader, "k%07d" % n, "stale")
        except OSError:
            v = None
        if v is not None:
            found += 1
    return found


def wait_value(cluster, node, key, want, consistency, limit_s, t0=None):
    """Polls node until it answers key == want; returns seconds since t0 (default:
    now), or None on time-out."""
    t0 = time.monotonic() if t0 is None else t0
    while time.monotonic() - t0 < limit_s:
        if node.proc.poll() is not None:
            raise BenchError("%s node %s exited: %s" % (cluster.system, node.name,
                                                        tail(node.log_path)))
        try:
            if cluster.get(node, key, consistency, timeout_s=1.0) == want:
                return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.005)
    return None


LOG_DIR = None  # set by main(): bench/results/logs/<run name>/
# --peer-tls: the directory of the certificates (scripts/gen-certs.sh) that
# stcache nodes use for mutual TLS on the peer port (docs/SECURITY.md).
PEER_TLS_DIR = None


def save_logs(cluster, tag):
    """Copies the nodes' logs next to the results (not committed)."""
    if LOG_DIR is None:
        return
    os.makedirs(LOG_DIR, exist_ok=True)
    for n in cluster.nodes:
        try:
            shutil.copyfile(n.log_path, os.path.join(LOG_DIR, "%s-%s.log" % (tag, n.name)))
        except OSError:
            pass


def big_phase(cluster, wrk, keys):
    """Fresh cluster: memory for `keys` keys, follower restart, node join."""
    out = {}
    cluster.start()
    pids = cluster.pids()
    out["rss_mb_empty"] = [round(proc_status_kb(p, "VmRSS") / 1024.0, 1) for p in pids]
    log("%s: loading %d keys" % (cluster.system, keys))
    out["load"] = load_keys(cluster, 0, keys)
    leader = cluster.leader_node()
    sentinel = "s-%d" % random.randrange(10 ** 9)
    if not cluster.put(leader, "sentinel", sentinel):
        raise BenchError("%s: sentinel write failed" % cluster.system)
    out["load"]["sample_found"] = verify_sample(cluster, 0, keys)
    time.sleep(3)  # let background work (snapshots, GC) settle before reading RSS
    rss = [proc_status_kb(p, "VmRSS") for p in cluster.pids()]
    out["rss_mb_loaded"] = [round(r / 1024.0, 1) for r in rss]
    out["rss_mb_loaded_mean"] = round(sum(rss) / len(rss) / 1024.0, 1)
    out["peak_rss_mb"] = [round(proc_status_kb(p, "VmHWM") / 1024.0, 1) for p in cluster.pids()]
    out["disk_mb"] = [round(dir_bytes(n.data_dir) / 1e6, 1) for n in cluster.nodes]

    # restart a follower (graceful stop), time until it serves a linearizable read
    node = cluster.followers()[0]
    out["stop_s"] = round(PROCS.stop(node.proc), 3)
    node.proc = None
    t0 = time.monotonic()
    cluster.spawn(node, joining=False, restart=True)
    t = wait_value(cluster, node, "sentinel", sentinel, "linearizable", 600, t0)
    out["restart_to_lin_read_s"] = round(t, 3) if t is not None else None
    log("%s: restart-to-serving %s s" % (cluster.system, out["restart_to_lin_read_s"]))
    time.sleep(1)
    out["rss_mb_after_restart"] = round(proc_status_kb(node.pid, "VmRSS") / 1024.0, 1)

    # a new node joins and catches up (by snapshot when the log was compacted)
    sentinel2 = "j-%d" % random.randrange(10 ** 9)
    if not cluster.put(cluster.leader_node(), "sentinel", sentinel2):
        raise BenchError("%s: sentinel write failed" % cluster.system)
    try:
        new, t0 = cluster.add_node()
        t = wait_value(cluster, new, "sentinel", sentinel2, "stale", 600, t0)
        out["join_to_caught_up_s"] = round(t, 3) if t is not None else None
        if t is not None:
            time.sleep(1)
            out["rss_mb_joined"] = round(proc_status_kb(new.pid, "VmRSS") / 1024.0, 1)
    except (BenchError, OSError) as e:
        out["join_to_caught_up_s"] = None
        out["join_error"] = str(e)[:500]
    log("%s: join-to-caught-up %s s" % (cluster.system, out.get("join_to_caught_up_s")))
    cluster.stop()
    return out


# ---------------------------------------------------------------------------
# report


def fmt(v, nd=1):
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return "%.0f" % v
        return ("%." + str(nd) + "f") % v
    return str(v)


def print_table(result):
    systems = result["systems"]
    w = sys.stdout.write
    fl = result["floor"]
    w("\n")
    for f in fl["probes"]:
        rp = f.get("replicated")
        w("== floor (%s): fdatasync 4 KiB p50 %.1f us (p99 %.1f), loopback RTT p50 %.1f us"
          " (p99 %.1f)%s\n" % (f["when"], f["fdatasync"]["p50_us"], f["fdatasync"]["p99_us"],
                               f["rtt"]["p50_us"], f["rtt"]["p99_us"],
                               ", bare 3-replica write p50 %.1f us (p99 %.1f)"
                               % (rp["p50_us"], rp["p99_us"]) if rp else ""))
    w("== floor used (lowest probe): %.1f us (median of the probes %.1f, max %.1f)\n"
      % (fl["floor_us"], fl["floor_us_median"], fl["floor_us_max"]))
    if fl.get("replicated_us") is not None:
        w("== bare 3-replica write (lowest probe): %.1f us = %.2fx the floor (median of the"
          " probes %.1f, max %.1f)\n"
          % (fl["replicated_us"], fl["replicated_us"] / fl["floor_us"],
             fl["replicated_us_median"], fl["replicated_us_max"]))
    w("== %d round(s) of %ss per workload, medians [min..max]; ratio = stcache/etcd\n"
      % (result["config"]["rounds"], result["config"]["duration_s"]))
    hdr = "%-26s %-8s %18s %8s %8s %8s %7s %9s %8s %7s\n"
    if result["workloads"]:
        w(hdr % ("workload", "system", "req/s [min..max]", "p50 ms", "p99 ms", "p99.9ms",
                 "errors", "cpu us/op", "peakMB", "other s"))
    for wl in result["workloads"]:
        for s in systems:
            sm = wl["summary"].get(s)
            if not sm:
                continue
            rps = sm["rps"]
            w(hdr % (wl["name"], s, "%s [%s..%s]" % (fmt(rps["median"]), fmt(rps["min"]),
                                                      fmt(rps["max"])),
                     fmt(sm["p50_ms"]["median"], 2), fmt(sm["p99_ms"]["median"], 2),
                     fmt(sm["p999_ms"]["median"], 2), fmt(sm["errors"]["median"], 0),
                     fmt(sm.get("cpu_us_per_op", {}).get("median")),
                     fmt(sm["peak_rss_mb_max"]["median"]),
                     fmt(sm.get("other_cpu_s", {}).get("median"))))
        r = wl.get("ratio")
        if r:
            w(hdr % ("", "ratio", fmt(r.get("rps"), 2), fmt(r.get("p50_ms"), 2),
                     fmt(r.get("p99_ms"), 2), fmt(r.get("p999_ms"), 2), "",
                     fmt(r.get("cpu_us_per_op"), 2), fmt(r.get("peak_rss_mb_max"), 2), ""))
    big = result.get("big")
    if big:
        w("\n== %d keys of 100 bytes, fresh 3-node cluster per system\n" % big["keys"])
        rows = [("load writes/s", lambda b: b["load"]["writes_per_s"]),
                ("RSS/node empty MB", lambda b: statistics.mean(b["rss_mb_empty"])),
                ("RSS/node loaded MB", lambda b: b["rss_mb_loaded_mean"]),
                ("disk/node MB", lambda b: statistics.mean(b["disk_mb"][:3])),
                ("restart->lin read s", lambda b: b["restart_to_lin_read_s"]),
                ("join->caught up s", lambda b: b.get("join_to_caught_up_s"))]
        w("%-22s" % "" + "".join("%14s" % s for s in systems) + "%10s\n" % "ratio")
        for label, f in rows:
            vals = []
            for s in systems:
                try:
                    vals.append(f(big[s]))
                except (KeyError, TypeError):
                    vals.append(None)
            rr = ratio(vals[0], vals[1]) if len(vals) == 2 else None
            w("%-22s" % label + "".join("%14s" % fmt(v, 2) for v in vals) + "%10s\n" % fmt(rr, 3))
    if result.get("targets"):
        w("\n== targets (stcache vs etcd, same run)\n")
        for t in result["targets"]:
            w("  %-6s %-58s %s\n" % ("MET" if t["met"] else ("MISSED" if t["met"] is False else "n/a"),
                                    t["name"], t["detail"]))
    for ev in result.get("events", []):
        w("event %s: %s\n" % (ev["time"], ev["event"][:300]))
    w("\nmachine: %s; shared with other engineers' builds: see other_cpu_s in the JSON\n"
      % result["meta"]["machine"])


def compute_targets(result):
    wl = {w["name"]: w for w in result["workloads"]}
    targets = []

    def med(name, system, metric):
        try:
            return wl[name]["summary"][system][metric]["median"]
        except KeyError:
            return None

    def add(name, value, threshold, cmp, detail):
        met = None if value is None else (value >= threshold if cmp == ">=" else value <= threshold)
        targets.append({"name": name, "value": value, "threshold": threshold, "cmp": cmp,
                        "met": met, "detail": detail})

    r = ratio(med("write c128 leader", "stcache", "rps"), med("write c128 leader", "etcd", "rps"))
    add("writes c128: throughput >= 8x etcd", r, 8, ">=", "ratio %s" % fmt(r, 2))
    r = ratio(med("write c128 leader", "stcache", "p99_ms"), med("write c128 leader", "etcd", "p99_ms"))
    add("writes c128: p99 <= 1/3 of etcd", r, 1 / 3, "<=", "ratio %s" % fmt(r, 3))
    p50 = med("write c1 leader", "stcache", "p50_ms")
    floor_ms = result["floor"]["floor_us"] / 1000.0
    r = ratio(p50, floor_ms)
    detail = "p50 %s ms vs floor %s ms: %sx" % (fmt(p50, 3), fmt(floor_ms, 3), fmt(r, 2))
    rep_us = result["floor"].get("replicated_us")
    if rep_us is not None:
        detail += " (bare 3-replica write %s ms: %sx of it)" % (
            fmt(rep_us / 1000.0, 3), fmt(ratio(p50, rep_us / 1000.0), 2))
    add("writes c1: p50 <= 1.5x floor (RTT + fdatasync)", r, 1.5, "<=", detail)
    r = ratio(med("lin-read c128 leader", "stcache", "rps"), med("lin-read c128 leader", "etcd", "rps"))
    add("linearizable reads c128: throughput >= 10x etcd", r, 10, ">=", "ratio %s" % fmt(r, 2))
    r = ratio(med("write c128 leader", "stcache", "cpu_us_per_op"),
              med("write c128 leader", "etcd", "cpu_us_per_op"))
    add("server CPU per write <= 1/10 of etcd (c128)", r, 0.1, "<=", "ratio %s" % fmt(r, 3))
    big = result.get("big") or {}
    try:
        r = ratio(big["stcache"]["rss_mb_loaded_mean"], big["etcd"]["rss_mb_loaded_mean"])
    except (KeyError, TypeError):
        r = None
    add("memory per node, %s keys <= 1/3 of etcd" % big.get("keys", "?"), r, 1 / 3, "<=",
        "ratio %s" % fmt(r, 3))
    try:
        r = ratio(big["stcache"]["restart_to_lin_read_s"], big["etcd"]["restart_to_lin_read_s"])
    except (KeyError, TypeError):
        r = None
    add("restart-to-serving <= 1/5 of etcd", r, 0.2, "<=", "ratio %s" % fmt(r, 3))
    return targets


# ---------------------------------------------------------------------------


def floor_summary(probes):
    """The floor is the lowest probe: others' IO on this shared disk can only
    make a probe slower (by 40x at times: 80 us vs 4 ms fdatasync p50), and a
    floor is what the hardware can do, not what it did while disturbed."""
    floors = [p["floor_us"] for p in probes]
    out = {"probes": probes, "floor_us": min(floors), "rule": "min of probes",
           "floor_us_median": statistics.median(floors), "floor_us_max": max(floors)}
    # The bare 3-replica write (floor.c `replicated`), by the same rule. It is
    # not the target's floor: it shows how much of a replicated write is the
    # hardware and the kernel before any consensus code runs.
    reps = [p["replicated"]["p50_us"] for p in probes if p.get("replicated")]
    if reps:
        out.update({"replicated_us": min(reps), "replicated_us_median": statistics.median(reps),
                    "replicated_us_max": max(reps)})
    return out


def measure_floor(floor_bin, data_root, when, fsyncs=500, pings=20000):
    def run(argv):
        out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120)
        return json.loads(out.stdout.strip().splitlines()[-1])
    fs = run([floor_bin, "fsync", data_root, str(fsyncs)])
    rtt = run([floor_bin, "rtt", str(pings)])
    rep = run([floor_bin, "replicated", data_root, str(fsyncs)])
    return {"when": when, "fdatasync": fs, "rtt": rtt, "replicated": rep,
            "floor_us": round(fs["p50_us"] + rtt["p50_us"], 1)}


def run_kind(args):
    """"" for a full run, "-quick" or "-partial": the suffix of the result
    file and of its latest*.json copy. Only a full run (every workload, both
    systems, the big phase, default rounds and durations) replaces the
    committed latest.json; a run cut down by any option is "-partial"."""
    if args.quick:
        return "-quick"
    if args.peer_tls:
        return "-peer-tls"
    cut = (args.only or args.skip_big or args.rounds or args.duration or args.warmup is not None
           or args.big_keys or args.systems != "stcache,etcd")
    return "-partial" if cut else ""


def git_rev():
    """HEAD, plus the number of modified tracked files under src/ (the binary
    may have been built from a working tree with others' changes in it)."""
    try:
        head = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no",
                                "--", "src", "include"],
                               capture_output=True, text=True, timeout=10).stdout.splitlines()
        return head + (" +%d modified files in src/, include/" % len(dirty) if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def tool_version(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (out.stdout + out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def arg_parser():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 round, short runs, fewer workloads")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--duration", type=int, help="seconds per measured run")
    ap.add_argument("--warmup", type=int, help="seconds of discarded warm-up before each run")
    ap.add_argument("--big-keys", type=int, help="keys for the memory/restart/join phase")
    ap.add_argument("--systems", default="stcache,etcd",
                    help="comma-separated: stcache, etcd, and stcache+tls / etcd+tls (TLS on both "
                         "ports: peers mutual, clients server-authenticated)")
    ap.add_argument("--only", help="regex: run only the matching workloads")
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--stcache", default=os.path.join(REPO, "build", "stcache"))
    ap.add_argument("--etcd", default=shutil.which("etcd") or "/usr/bin/etcd")
    ap.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk")
    ap.add_argument("--floor", help="the compiled bench/cluster/floor.c (required to run)")
    ap.add_argument("--render", metavar="JSON", help="print the table of a results file and exit")
    ap.add_argument("--peer-tls", action="store_true",
                    help="stcache nodes use mutual TLS between peers (certificates made with "
                         "scripts/gen-certs.sh); etcd is not changed")
    ap.add_argument("--data-root", default="/var/tmp")
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results"))
    ap.add_argument("--tmp", help="work directory (default: mkdtemp under --data-root)")
    return ap


def main():
    ap = arg_parser()
    args = ap.parse_args()
    if args.render:
        with open(args.render) as f:
            res = json.load(f)
        # recompute floor and targets with the current rules
        res["floor"] = floor_summary(res["floor"]["probes"])
        if res.get("targets"):
            res["targets"] = compute_targets(res)
        print_table(res)
        return 0
    if not args.floor:
        ap.error("--floor is required")

    rounds = args.rounds or (1 if args.quick else 3)
    duration = args.duration or (3 if args.quick else 10)
    warmup = args.warmup if args.warmup is not None else 1
    big_keys = args.big_keys or (100000 if args.quick else 1000000)
    systems = [s for s in args.systems.split(",") if s]
    wls = workloads(args.quick)
    if args.only:
        wls = [w for w in wls if re.search(args.only, w[0])]

    started = datetime.datetime.now(datetime.timezone.utc)
    kind = run_kind(args)
    run_name = "run-%s%s" % (started.strftime("%Y%m%dT%H%M%SZ"), kind)
    global LOG_DIR
    LOG_DIR = os.path.join(args.out, "logs", run_name)
    tmp = args.tmp or tempfile.mkdtemp(prefix="stbench-", dir=args.data_root)
    os.makedirs(tmp, exist_ok=True)
    PROCS.pidfile = os.path.join(tmp, "pids")
    if args.peer_tls:
        global PEER_TLS_DIR
        PEER_TLS_DIR = os.path.join(tmp, "peer-certs")
        subprocess.run([os.path.join(REPO, "scripts", "gen-certs.sh"), PEER_TLS_DIR, "ca"],
                       check=True, stdout=subprocess.DEVNULL)

    def on_signal(signum, _frame):
        raise SystemExit("bench: stopped by signal %d" % signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    result = {
        "meta": {
            "started_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "git": git_rev(),
            "machine": "%s, %d cores, %.1f GiB, %s" % (
                platform.node(), os.cpu_count(),
                os.sysconf("SC_PHYS_PAGES") * PAGE / 2 ** 30, platform.release()),
            "loadavg_start": loadavg(),
            "etcd": tool_version([args.etcd, "--version"]),
            "wrk": tool_version([args.wrk, "-v"]),
            "stcache_bin": args.stcache if any(x.startswith("stcache") for x in systems) else None,
            "stcache_peer_tls": bool(args.peer_tls),
            "data_root": tmp,
            "data_fs": subprocess.run(["stat", "-f", "-c", "%T", tmp], capture_output=True,
                                      text=True).stdout.strip(),
            "note": "shared machine: other engineers' builds may run concurrently; "
                    "other_cpu_s per run tells how much CPU they took",
        },
        "config": {"rounds": rounds, "duration_s": duration, "warmup_s": warmup,
                   "quick": args.quick, "keys": 100000, "value_bytes": 100},
        "systems": systems,
        "workloads": [],
    }
    events = result["events"] = []
    wrk = Wrk(args.wrk, os.path.join(HERE, "kv.lua"), tmp)
    clusters = {}
    try:
        log("work dir %s (%s)" % (tmp, result["meta"]["data_fs"]))
        # The floor is probed at the start, at the start of every round (just
        # before "write c1 leader", the workload it is compared with) and at the
        # end: the disk and the scheduler move with the machine's load.
        probes = [measure_floor(args.floor, tmp, "start")]
        log("floor: %s" % json.dumps(probes[0]))

        def make(system, sub):
            root = os.path.join(tmp, sub)
            os.makedirs(root, exist_ok=True)
            ports = pick_ports(10)
            base, tls = system.split("+")[0], system.endswith("+tls")
            if base == "etcd":
                return EtcdCluster(root, ports, args.etcd, tls=tls)
            return StcacheCluster(root, ports, args.stcache, tls=tls)

        if wls:
            for s in systems:
                clusters[s] = make(s, "tp-" + s.replace("+", "-"))
                log("starting %s cluster" % s)
                clusters[s].start()
            for s in systems:
                log("%s: preloading 100000 keys" % s)
                ld = load_keys(clusters[s], 0, 100000)
                ld["sample_found"] = verify_sample(clusters[s], 0, 100000)
                result.setdefault("preload", {})[s] = ld
                log("%s: preload %s" % (s, json.dumps(ld)))
            runs = {w[0]: {s: [] for s in systems} for w in wls}
            k = 0
            for r in range(rounds):
                probes.append(measure_floor(args.floor, tmp, "round %d" % (r + 1), 200, 5000))
                for w in wls:
                    order = systems if (k % 2 == 0) else list(reversed(systems))
                    k += 1
                    for s in order:
                        clusters[s].ensure_up(events)
                        try:
                            res = run_one(clusters[s], wrk, w, duration, warmup, 100000)
                        except BenchError as e:
                            # a node died or the leader vanished mid-run: note it,
                            # bring the cluster back and run this one again
                            log("run failed (%s); retrying once" % str(e)[:300])
                            events.append({"time": time.strftime("%H:%M:%S"),
                                           "event": "%s %s: %s" % (s, w[0], str(e)[:1000])})
                            clusters[s].ensure_up(events)
                            clusters[s].wait_ready(120)
                            res = run_one(clusters[s], wrk, w, duration, warmup, 100000)
                            res["retried"] = True
                        res["round"] = r
                        runs[w[0]][s].append(res)
                        log("round %d %-26s %-8s %8.0f req/s p50 %.2f p99 %.2f ms err %d cpu %.1f us/op other %.1fs"
                            % (r + 1, w[0], s, res["rps"], res["p50_ms"], res["p99_ms"],
                               res["errors"], res["cpu_us_per_op"] or 0, res["other_cpu_s"]))
            for w in wls:
                entry = {"name": w[0], "op": w[1], "consistency": w[2], "target": w[3],
                         "conns": w[4], "runs": runs[w[0]], "summary": {}}
                for s in systems:
                    entry["summary"][s] = summarize(runs[w[0]][s])
                if len(systems) == 2:
                    a, b = entry["summary"][systems[0]], entry["summary"][systems[1]]
                    entry["ratio"] = {m: ratio(a[m]["median"], b[m]["median"])
                                      for m in METRICS if m in a and m in b}
                result["workloads"].append(entry)
            for s in systems:
                clusters[s].stop()
                save_logs(clusters[s], "throughput")
                shutil.rmtree(clusters[s].root, ignore_errors=True)

        if not args.skip_big:
            big = {"keys": big_keys}
            for s in systems:
                c = make(s, "big-" + s)
                clusters["big-" + s] = c
                log("%s: big phase (%d keys)" % (s, big_keys))
                try:
                    big[s] = big_phase(c, wrk, big_keys)
                except BenchError as e:
                    log("%s big phase failed: %s" % (s, e))
                    big[s] = {"error": str(e)[:2000]}
                    c.stop()
                save_logs(c, "big")
                shutil.rmtree(c.root, ignore_errors=True)
            result["big"] = big
        probes.append(measure_floor(args.floor, tmp, "end"))
        log("floor at end: %s" % json.dumps(probes[-1]))
        result["floor"] = floor_summary(probes)
        if len(systems) == 2 and systems[0] == "stcache":
            result["targets"] = compute_targets(result)
    except BaseException:
        PROCS.kill_all()
        # keep the node logs for the post-mortem, drop the (large) data
        for root, dirs, _files in os.walk(tmp):
            for d in list(dirs):
                if d == "data":
                    shutil.rmtree(os.path.join(root, d), ignore_errors=True)
                    dirs.remove(d)
        log("node logs kept in %s" % tmp)
        raise
    finally:
        PROCS.kill_all()
    result["meta"]["loadavg_end"] = loadavg()
    result["meta"]["elapsed_s"] = round(
        (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds(), 1)

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, run_name + ".json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    shutil.copyfile(path, os.path.join(args.out, "latest%s.json" % kind))
    print_table(result)
    sys.stdout.write("results: %s\n" % path)
    if not args.tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        PROCS.kill_all()
        log("FAILED: %s" % e)
        sys.exit(1)
