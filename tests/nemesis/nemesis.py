#!/usr/bin/env python3
"""The nemesis: real stcache processes in their own network namespaces,
clients that record every operation, faults from a seeded schedule, and a
checker (linearizability per key, no write lost or applied twice, liveness
after the faults heal, identical replicas).

usage: nemesis.py STCACHE [--seed N] [--runs N] [--duration S] [--mix LIST]
                  [--clients N] [--keys N] [--quiet S] [--tls]
                  [--jobs N [--log-dir DIR]]

--mix is a comma list of fault kinds (default: all of them):
  partition  halves, the leader alone, one way, a bridge node seeing both sides
  net        packet loss (iptables statistic), delay (netem, or tbf queueing
             when the kernel has no netem)
  kill       kill -9 a minority, restart it
  stop       SIGSTOP a minority, SIGCONT it
  clock      jump a node's CLOCK_REALTIME (libfaketime; not under sanitizers)
  disk       fill a node's data directory (its own tmpfs), free it later
  member     transfer leadership; remove a follower, wipe it, rejoin it under a
             new id (sometimes killing the joiner while it joins); add a node on a
             spare host (up to 5), or remove one
  crash      kill -9 every node at once (the whole cluster loses power), restart
             them; with --power-loss, WAL writes not yet fsynced are lost
--tls runs the cluster with mutual TLS between its nodes and HTTPS with client
certificates on their client ports, the clients and the watch speaking HTTPS.
Run k uses seed N+k; the same seed gives the same fault schedule (which
faults, in which order, on which nodes by rank, for how long). A failing run
keeps its directory (history.json, schedule.json, node logs) and prints the
command that replays it. Needs root (namespaces, iptables, tmpfs mounts).
A soak (--jobs N) runs N at a time, each in its own process and network, and
goes on past a failure: it prints each run's verdict, the totals, and every
failed seed with its log (which holds the replay command).
Exit status: 0 all runs passed, 1 a run failed, 77 the machine cannot run it.
"""

import argparse
import collections
import http.client
import json
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cluster"))
sys.path.insert(0, HERE)

import checker  # noqa: E402
import harness  # noqa: E402
import netns  # noqa: E402
from scenarios_watch import WatchStream  # noqa: E402

RAFT_PORT, HTTP_PORT = 7000, 8000
HOSTS = 5  # namespaces: 3 initial nodes, 2 spare hosts for added nodes
# Small snapshots and WAL segments: compaction, snapshot streaming and segment
# rolls happen many times per run, and a 96 MiB disk holds the WAL.
SERVER_ARGS = ("--snapshot-threshold 500 --snapshot-interval 0 --wal-segment-bytes 4194304 "
               "--max-value-bytes 65536")
KINDS = ["partition", "net", "kill", "stop", "clock", "disk", "member", "crash"]
REQUEST_TIMEOUT_S = 8.0  # above the server's --request-timeout-ms (5 s): it answers first


def log(msg):
    harness.log(msg)


class RunFailure(Exception):
    pass


# ---------------------------------------------------------------------------
# clients


class History:
    def __init__(self):
        self.ops = []
        self.lock = threading.Lock()
        self.next_id = 0

    def begin(self, **op):
        with self.lock:
            op["id"] = self.next_id
            self.next_id += 1
            self.ops.append(op)
        op["call"] = time.monotonic()
        op["ret"] = None
        return op


class TLSStats:
    """Client handshakes of this process's run, and how many resumed."""
    lock = threading.Lock()
    handshakes = 0
    resumed = 0


class ResumingHTTPS(http.client.HTTPSConnection):
    """HTTPS (--tls) that offers the session of this thread's last connection
    to the same node: every operation still gets a connection of its own, as
    without TLS, but not a full handshake (a certificate signed and checked
    each way) each time. A node that restarted has new ticket keys and
    answers with a full handshake."""

    sessions = threading.local()  # .by_addr: (context, addr) -> ssl.SSLSession

    def __init__(self, addr, context):
        host, port = addr.rsplit(":", 1)
        super().__init__(host, int(port), timeout=REQUEST_TIMEOUT_S, context=context)
        self.key = (context, addr)

    @classmethod
    def _cache(cls):
        if not hasattr(cls.sessions, "by_addr"):
            cls.sessions.by_addr = {}
        return cls.sessions.by_addr

    def connect(self):
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.host,
                                              session=self._cache().get(self.key))
        with TLSStats.lock:
            TLSStats.handshakes += 1
            TLSStats.resumed += bool(self.sock.session_reused)

    def keep_session(self):
        """After a response was read (TLS 1.3 tickets come after the
        handshake, with the first data)."""
        s = getattr(self.sock, "session", None)
        if s is not None:
            self._cache()[self.key] = s


def request(addr, method, path, body=None, headers=None):
    """(status, headers, body); raises ConnectionError when nothing was sent
    (the operation surely did not happen), TimeoutError/OSError when the
    outcome is unknown."""
    ctx = harness.CLIENT_TLS.get(addr)  # --tls
    conn = ResumingHTTPS(addr, ctx) if ctx else harness.http_connection(addr, REQUEST_TIMEOUT_S)
    try:
        try:
            conn.connect()
        except OSError as e:
            raise ConnectionError(str(e)) from e
        headers = dict(headers or {})
        if method == "POST":
            headers.setdefault("Content-Type", "application/json")  # else 415
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        if ctx:
            conn.keep_session()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    except (http.client.HTTPException, socket.timeout) as e:
        raise TimeoutError(str(e)) from e
    finally:
        conn.close()


def etag(headers):
    v = headers.get("etag")
    return int(v.strip('"')) if v else None


class Client(threading.Thread):
    """Random operations against random live nodes: single-key reads, writes,
    compare-and-sets and deletes, and two-key transactions (POST /txn) that
    write both keys (under a compare of the first key's version, or not) or
    read both; every one is recorded with its call and return times and
    outcome."""

    def __init__(self, run, cid, seed):
        super().__init__(daemon=True)
        self.run_ = run
        self.cid = cid
        self.rng = random.Random(seed)
        self.seq = 0
        self.seen = {}  # key -> last version read (for CAS)
        self.stop = threading.Event()
        self.strict = False  # quiet period: every operation must succeed

    def run(self):
        while not self.stop.is_set():
            self.one()

    def one(self):
        r = self.run_
        nodes = r.addressable()
        if not nodes:
            time.sleep(0.05)
            return
        strict = self.strict  # operations called in the quiet period must succeed
        node = self.rng.choice(nodes)
        key = "k%d" % self.rng.randrange(r.keys)
        path = "/kv/" + key
        x = self.rng.random()
        if x >= 0.92 and r.keys > 1:
            self.txn(node, key, "w" if x < 0.965 else "r", strict)
            return
        if x < 0.42:
            op = r.history.begin(client=self.cid, key=key, f="get", node=node.id)
            method, body, headers = "GET", None, {}
            if r.args.reads != "linearizable":  # the checker must catch these
                path += "?consistency=" + r.args.reads
        elif x < 0.70 or key not in self.seen:
            self.seq += 1
            value = "c%d-%d" % (self.cid, self.seq)
            op = r.history.begin(client=self.cid, key=key, f="put", value=value, node=node.id)
            method, body, headers = "PUT", value.encode(), {}
        elif x < 0.86:
            self.seq += 1
            value = "c%d-%d" % (self.cid, self.seq)
            op = r.history.begin(client=self.cid, key=key, f="cas", value=value,
                                 expect=self.seen[key], node=node.id)
            method, body, headers = "PUT", value.encode(), {"If-Match": '"%d"' % self.seen[key]}
        else:
            op = r.history.begin(client=self.cid, key=key, f="del", node=node.id)
            method, body, headers = "DELETE", None, {}
        if strict:
            op["strict"] = True
        if op["f"] != "get" and r.args.retry_s > 0:
            # Exactly-once retries: the same Idempotency-Key on every attempt,
            # through any node, until an answer (the API replays a recorded
            # result instead of applying again). The operation's interval is
            # its first call to its final answer.
            headers["Idempotency-Key"] = "n%d-c%d-%d" % (r.seed, self.cid, op["id"])
        deadline = op["call"] + (r.args.retry_s if op["f"] != "get" else 0)
        attempts = 0
        while True:
            attempts += 1
            outcome = self.attempt(op, node, method, path, body, headers)
            if outcome != "retry" or time.monotonic() >= deadline or self.stop.is_set():
                break
            time.sleep(0.1)
            nodes = r.addressable()
            if nodes:
                node = self.rng.choice(nodes)
        if attempts > 1:
            op["attempts"] = attempts
        if outcome == "retry":  # no answer in the end: unknown (a read: nothing learnt)
            self.liveness(op, op.get("error", "?"))

    def attempt(self, op, node, method, path, body, headers):
        """One request; fills op when it gets an answer. Returns "done" or
        "retry" (no answer, or 503: the outcome is unknown so far)."""
        try:
            status, hdrs, data = request(node.http, method, path, body, headers)
        except ConnectionError:
            if "Idempotency-Key" in headers:
                op["error"] = "cannot connect to node %d" % node.id
                return "retry"
            op["ret"] = time.monotonic()
            op["failed"] = "connect"
            self.liveness(op, "cannot connect")
            return "done"
        except (TimeoutError, OSError) as e:
            op["error"] = "node %d: %s" % (node.id, str(e)[:100])
            return "retry"
        now = time.monotonic()
        if status in (200, 201, 404, 412):
            op["ret"], op["status"] = now, status
            op.pop("error", None)
            if op["f"] == "get" and status == 200:
                op["out"] = data.decode()
                op["version"] = etag(hdrs)
                self.seen[op["key"]] = op["version"]
            elif status in (200, 201) and op["f"] != "get":
                try:
                    op["version"] = json.loads(data).get("version")
                except ValueError:
                    op["version"] = None
            if hdrs.get("idempotent-replayed"):
                op["replayed"] = True
            return "done"
        # 503 (no leader, timeout, leadership lost) and the like: for a
        # write, maybe applied; for a read, nothing learnt.
        op["error"] = "node %d: %d %s" % (node.id, status, data[:80].decode("utf-8", "replace"))
        if status == 507:  # documented: nothing was written
            op["ret"], op["failed"] = now, "507"
            self.liveness(op, op["error"])
            return "done"
        if status in (400, 413, 422):  # our request is wrong: say so
            op["ret"], op["failed"] = now, str(status)
            self.run_.bad_requests.append(op)
            return "done"
        return "retry"

    def txn(self, node, key, kind, strict):
        """One transaction on key and another key; no retry (a transaction
        has no Idempotency-Key): no answer leaves its outcome unknown."""
        r = self.run_
        other = "k%d" % ((int(key[1:]) + 1 + self.rng.randrange(r.keys - 1)) % r.keys)
        keys = [key, other]
        if kind == "w":
            vals = []
            for _ in keys:
                self.seq += 1
                vals.append("c%d-%d" % (self.cid, self.seq))
            expect = self.seen.get(key) if self.rng.random() < 0.7 else None
            op = r.history.begin(client=self.cid, f="txn", kind="w", keys=keys, values=vals,
                                 expect=expect, node=node.id)
            body = {"compare": [] if expect is None else
                    [{"key": key, "target": "version", "op": "=", "version": expect}],
                    "success": [{"put": {"key": k, "value": v}} for k, v in zip(keys, vals)],
                    "failure": [{"get": {"key": k}} for k in keys]}
        else:
            op = r.history.begin(client=self.cid, f="txn", kind="r", keys=keys, node=node.id)
            body = {"success": [{"get": {"key": k}} for k in keys]}
        if strict:
            op["strict"] = True
        try:
            status, _, data = request(node.http, "POST", "/txn", json.dumps(body).encode())
        except ConnectionError:
            op["ret"], op["failed"] = time.monotonic(), "connect"
            self.liveness(op, "cannot connect")
            return
        except (TimeoutError, OSError) as e:
            op["error"] = "node %d: %s" % (node.id, str(e)[:100])
            self.liveness(op, op["error"])
            return
        now = time.monotonic()
        if status == 200:
            a = json.loads(data)
            op["ret"], op["status"] = now, 200
            op["succeeded"], op["version"], op["results"] = a["succeeded"], a["version"], a["results"]
            if len(a["results"]) != 2:
                op["failed"] = "results"
                r.bad_requests.append(op)
            return
        op["error"] = "node %d: %d %s" % (node.id, status, data[:80].decode("utf-8", "replace"))
        if status == 507:  # documented: nothing was written
            op["ret"], op["failed"] = now, "507"
        elif status in (400, 413, 415, 422):
            op["ret"], op["failed"] = now, str(status)
            r.bad_requests.append(op)
            return
        self.liveness(op, op["error"])  # 503: unknown (a timeout) or not applied

    def liveness(self, op, why):
        if op.get("strict"):
            self.run_.liveness_failures.append((op, why))


class Watcher(threading.Thread):
    """One watch on the whole key space (GET /watch?prefix=k), on a random
    live node, resumed on any node whenever it breaks (a kill, a pause, a
    node removed): from the last version seen, skipping the events of it
    already received (a transaction's events share a version, and a break
    can fall between them; they must come again, the same), or from the
    last progress + 1. The events it collects are checked against the
    history (checker.check_watch)."""

    def __init__(self, run, seed):
        super().__init__(daemon=True)
        self.run_ = run
        self.rng = random.Random(seed)
        self.events = []
        self.nxt = 1
        self.skip = 0  # events of version nxt already received
        self.mismatch = None  # a resumed stream that did not repeat what it sent
        self.last_error = None
        self.trace = collections.deque(maxlen=40)  # the last connections and lines: for a report
        self.covered = 0  # every change up to here was delivered
        self.gaps = []
        self.connects = 0
        self.compacted = 0
        self.stop = threading.Event()

    def run(self):
        refused = 0
        while not self.stop.is_set():
            nodes = self.run_.addressable()
            if not nodes:
                time.sleep(0.05)
                continue
            node = self.rng.choice(nodes)
            try:
                ws = WatchStream(node.http, "k", from_version=self.nxt, timeout=REQUEST_TIMEOUT_S,
                                 progress_ms=200)
            except (OSError, http.client.HTTPException):
                time.sleep(0.1)
                continue
            try:
                if ws.status == 410:
                    # This node's history starts later (it installed a
                    # snapshot); another may still hold it. Only when every
                    # node keeps refusing is the range a gap, and said so.
                    self.compacted += 1
                    refused += 1
                    oldest = ws.body_json().get("oldest_version", self.nxt)
                    if refused > 40 and oldest > self.nxt:
                        self.gaps.append((self.nxt, oldest - 1))
                        self.nxt, self.skip, refused = oldest, 0, 0
                    time.sleep(0.05)
                    continue
                if ws.status != 200:
                    time.sleep(0.1)
                    continue
                refused = 0
                self.connects += 1
                self.trace.append("connect node %d from v%d skip %d" % (node.id, self.nxt, self.skip))
                again = self.events[len(self.events) - self.skip:] if self.skip else []
                while not self.stop.is_set():
                    ev = ws.next()
                    self.trace.append(json.dumps(ev))
                    if ev is None or "canceled" in ev:
                        self.last_error = "node %d: %s" % (node.id, json.dumps(ev))
                        break
                    if "progress" in ev:
                        self.covered = max(self.covered, ev["progress"]["applied"])
                        if self.covered >= self.nxt:
                            self.nxt, self.skip = self.covered + 1, 0
                        continue
                    if again:
                        if ev != again[0]:
                            self.mismatch = self.mismatch or (
                                "watch: resumed at v%d, %s came again as %s"
                                % (self.nxt, json.dumps(again[0]), json.dumps(ev)))
                            break
                        again.pop(0)
                        continue
                    self.events.append(ev)
                    if ev["version"] == self.nxt:
                        self.skip += 1
                    else:
                        self.nxt, self.skip = ev["version"], 1
                    # more events of this version may follow (a transaction's)
                    self.covered = max(self.covered, ev["version"] - 1)
            except Exception as e:  # a cut stream (kill -9 mid-line), a timeout: resume
                self.last_error = "%s: %s" % (type(e).__name__, str(e)[:200])
            finally:
                ws.close()


# ---------------------------------------------------------------------------
# one run


class Run:
    def __init__(self, args, seed, net_id):
        self.args = args
        self.seed = seed
        self.rng = random.Random(seed)
        self.keys = args.keys
        self.net = netns.Net(net_id, HOSTS)
        self.history = History()
        self.schedule = []
        self.liveness_failures = []
        self.bad_requests = []
        self.counts = {}
        self.clock_ok = not harness.SANITIZED and bool(harness.faketime_lib())
        self.next_id = 4
        self.host_of = {}  # node id -> host index
        self.mounts = []
        self.removing = set()  # ids whose removal's answer was lost
        self.cluster = None
        self.lock = threading.Lock()

    # -- nodes

    def addressable(self):
        with self.lock:
            return [n for n in self.cluster.nodes.values() if n.expected_alive]

    def make_node(self, node_id, host):
        c = self.cluster
        mnt = os.path.join(c.dir, "host%d" % host)
        if mnt not in self.mounts:
            os.makedirs(mnt, exist_ok=True)
            netns.run(["mount", "-t", "tmpfs", "-o", "size=%dm" % self.args.disk_mib, "tmpfs", mnt])
            self.mounts.append(mnt)
        if self.args.tls:  # peers and clients check the address it is reached at
            c.node_cert(node_id, self.net.ip(host))
        n = c.new_node(node_id, ports=(RAFT_PORT, HTTP_PORT),
                       data_dir=os.path.join(mnt, "node%d" % node_id))
        n.raft = "%s:%d" % (self.net.ip(host), RAFT_PORT)
        n.http = "%s:%d" % (self.net.ip(host), HTTP_PORT)
        n.wrapper = self.net.exec_prefix(host)
        n.host = host
        preload = [self.args.power_loss] if self.args.power_loss else []
        if self.clock_ok:
            clock = os.path.join(c.dir, "clock%d" % host)
            with open(clock, "w") as f:
                f.write("+0\n")
            preload.append(harness.faketime_lib())
            n.env = {"FAKETIME_TIMESTAMP_FILE": clock,
                     "FAKETIME_CACHE_DURATION": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
        if preload:
            n.env["LD_PRELOAD"] = " ".join(preload)
        self.host_of[node_id] = host
        return n

    def members(self):
        return sorted(self.cluster.nodes.values(), key=lambda n: n.id)

    def leader(self):
        for n in self.members():
            if not n.running():
                continue
            try:
                i = n.info(timeout=2)
            except Exception:
                continue
            if i and i.get("role") == "leader":
                return n
        return None

    # -- the run

    def execute(self):
        with TLSStats.lock:
            TLSStats.handshakes = TLSStats.resumed = 0
        backdate = harness.faketime_lib() is not None  # clock faults move clocks back
        c = self.cluster = harness.Cluster(self.args.stcache, "nemesis-%d" % self.seed,
                                           ["--log-level", "info"] + self.args.server_args.split(),
                                           tls=self.args.tls, client_tls=self.args.tls,
                                           backdate_certs=backdate)
        self.net.setup()
        try:
            return self.body()
        except BaseException:
            self.failed = True
            try:
                with open(os.path.join(c.dir, "history.json"), "w") as f:
                    json.dump(self.history.ops, f, default=str)
                with open(os.path.join(c.dir, "schedule.json"), "w") as f:
                    json.dump(self.schedule, f, indent=1)
            except OSError:
                pass
            try:
                c.dump_logs(30)
            except Exception:
                pass
            raise
        finally:
            self.teardown()

    def body(self):
        c = self.cluster
        nodes = [self.make_node(i, i) for i in (1, 2, 3)]
        spec = c.peers_spec(nodes)
        for n in nodes:
            n.start(["--peers", spec])
        c.wait_leader()
        log("seed %d: 3 nodes up in namespaces %s; faults: %s%s"
            % (self.seed, ", ".join(self.net.ns(i) for i in (1, 2, 3)), ",".join(self.mix()),
               "" if self.net.netem_available() else " (no netem in this kernel: delay by tbf)"))
        clients = [Client(self, i, self.seed * 1000 + i) for i in range(self.args.clients)]
        for cl in clients:
            cl.start()
        watcher = Watcher(self, self.seed * 1000 + 999)
        watcher.start()
        t_end = time.monotonic() + self.args.duration
        rnd = 0
        while time.monotonic() < t_end:
            # Each round draws from its own generator, and each of its
            # faults from its own: a fault skipped or shaped by the
            # cluster's state (no leader yet, no room for another kill)
            # shifts no later draw, so a seed replays the same faults at the
            # same times, on the same nodes by rank.
            self.rng = random.Random("%d/%d" % (self.seed, rnd))
            faults = self.pick_faults()
            hold, wait = f_hold(self.rng), self.rng.uniform(0.5, 2.0)
            for i, f in enumerate(faults):
                self.rng = random.Random("%d/%d/%d" % (self.seed, rnd, i))
                self.apply(f)
            rnd += 1
            time.sleep(hold)
            self.heal_all()
            time.sleep(wait)
        self.heal_all()
        with harness.step("healed: wait for a leader, every member, every node ready"):
            self.converge()
            self.cluster.wait_healthy(self.members(), timeout=harness.scaled(30))
        with harness.step("quiet period (%ds): every operation must succeed" % self.args.quiet):
            for cl in clients:
                cl.strict = True
            time.sleep(self.args.quiet)
            for cl in clients:
                cl.stop.set()
            for cl in clients:
                cl.join(timeout=REQUEST_TIMEOUT_S * 2)
        if self.bad_requests:
            raise RunFailure("%d requests refused as malformed; first: %s (%s)"
                             % (len(self.bad_requests), checker.describe(self.bad_requests[0]),
                                self.bad_requests[0].get("error")))
        if self.liveness_failures:
            op, why = self.liveness_failures[0]
            raise RunFailure("liveness: %d operations failed in the quiet period; first: %s (%s)"
                             % (len(self.liveness_failures), checker.describe(op), why))
        with harness.step("final reads of every key on every node"):
            for n in self.members():
                for k in range(self.keys):
                    op = self.history.begin(client=-1, key="k%d" % k, f="get", node=n.id)
                    status, hdrs, data = request(n.http, "GET", "/kv/k%d" % k)
                    if status not in (200, 404):
                        raise RunFailure("final read of k%d on node %d: %d" % (k, n.id, status))
                    op["ret"], op["status"] = time.monotonic(), status
                    if status == 200:
                        op["out"], op["version"] = data.decode(), etag(hdrs)
        with harness.step("replicas identical"):
            c.verify_identical(self.members())
        acked = [op["version"] for op in self.history.ops
                 if op["f"] != "get" and op.get("status") in (200, 201) and op.get("version")]
        with harness.step("the watch catches up to the last acknowledged write"):
            last = max(acked, default=0)
            try:
                harness.wait_for("the watch to reach version %d" % last,
                                 lambda: watcher.covered >= last, timeout=harness.scaled(30))
            except harness.TestFailure as e:
                raise RunFailure("%s; the watcher: resuming at v%d (%d events of it seen), "
                                 "covered v%d, %d connections, %s, last error %s" % (
                                     e, watcher.nxt, watcher.skip, watcher.covered,
                                     watcher.connects, watcher.mismatch or "no mismatch",
                                     watcher.last_error) + "\n  " + "\n  ".join(watcher.trace))
            watcher.stop.set()
            watcher.join(timeout=REQUEST_TIMEOUT_S * 2)
        with open(os.path.join(self.cluster.dir, "history.json"), "w") as f:
            json.dump(self.history.ops, f, default=str)
        watch = {"events": watcher.events, "covered": watcher.covered, "gaps": watcher.gaps}
        with open(os.path.join(self.cluster.dir, "watch.json"), "w") as f:
            json.dump(watch, f)
        with harness.step("check the history (%d operations)" % len(self.history.ops)):
            summary = checker.check(self.history.ops, watch)
        with harness.step("check the watch stream (%d events, %d connections)"
                          % (len(watcher.events), watcher.connects)):
            if watcher.mismatch:
                raise checker.Violation(watcher.mismatch)
            summary["watch_events"] = checker.check_watch(watcher.events, self.history.ops,
                                                          watcher.covered, watcher.gaps)
            summary["watch_connects"] = watcher.connects
            if watcher.gaps:
                summary["watch_gaps"] = watcher.gaps
        summary["faults"] = dict(self.counts)
        if self.args.tls:
            with TLSStats.lock:
                summary["tls_handshakes"], summary["tls_resumed"] = (TLSStats.handshakes,
                                                                     TLSStats.resumed)
        log("seed %d passed: %s" % (self.seed, json.dumps(summary, sort_keys=True)))
        return summary

    def mix(self):
        kinds = self.args.mix.split(",") if self.args.mix != "all" else list(KINDS)
        if not self.clock_ok and "clock" in kinds:
            kinds.remove("clock")
        return kinds

    # -- faults

    def pick_faults(self):
        kinds = self.mix()
        k = 1 if self.rng.random() < 0.6 else 2
        return [self.rng.choice(kinds) for _ in range(k)]

    def record(self, kind, what):
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.schedule.append({"t": round(time.monotonic(), 3), "kind": kind, "what": what})
        log("nemesis: %s: %s" % (kind, what))

    def pick(self, nodes):
        return nodes[self.rng.randrange(len(nodes))] if nodes else None

    def minority_room(self):
        """How many more nodes may be taken down (killed or stopped)."""
        ms = self.members()
        down = sum(1 for n in ms if not n.running() or getattr(n, "stopped", False))
        return (len(ms) - 1) // 2 - down

    def apply(self, kind):
        ms = self.members()
        hosts = [self.host_of[n.id] for n in ms]
        if kind == "partition":
            shape = self.rng.choice(["halves", "leader", "oneway", "bridge"])
            if shape == "halves":
                order = hosts[:]
                self.rng.shuffle(order)
                cut = self.rng.randrange(1, len(order))
                groups = [order[:cut], order[cut:]]
                self.net.partition(groups)
                self.record(kind, "halves %s" % groups)
            elif shape == "leader":
                ld = self.leader()
                if ld is None:
                    return
                lh = self.host_of[ld.id]
                self.net.partition([[lh], [h for h in hosts if h != lh]])
                self.record(kind, "leader %d (host %d) alone" % (ld.id, lh))
            elif shape == "oneway":
                i, j = self.rng.sample(hosts, 2)
                self.net.drop_from(i, j)
                self.record(kind, "host %d hears nothing from host %d" % (i, j))
            else:
                a, b, cc = self.rng.sample(hosts, 3)
                self.net.cut(a, cc)
                self.record(kind, "bridge: host %d sees %d and %d, which are cut" % (b, a, cc))
        elif kind == "net":
            h = self.rng.choice(hosts)
            if self.rng.random() < 0.5:
                p = self.rng.choice([0.05, 0.15, 0.3])
                self.net.loss(h, p)
                self.record(kind, "host %d loses %d%% of what it receives" % (h, p * 100))
            else:
                d = self.rng.choice([20, 50, 100])
                self.net.slow(h, d, d // 2)
                self.record(kind, "host %d sends with %d ms delay%s"
                            % (h, d, "" if self.net.netem_available() else " (tbf)"))
        elif kind == "kill":
            if self.minority_room() < 1:
                return
            n = self.pick([n for n in ms if n.running()])
            if n is None:
                return
            with self.lock:
                n.kill9()
            self.record(kind, "kill -9 node %d" % n.id)
        elif kind == "crash":
            running = [n for n in ms if n.running()]
            if len(running) < 2:
                return
            with self.lock:
                for n in running:
                    n.kill9()
                    n.stopped = False  # SIGKILL ends a stopped process too
            self.record(kind, "kill -9 nodes %s at once" % [n.id for n in running])
        elif kind == "stop":
            if self.minority_room() < 1:
                return
            n = self.pick([n for n in ms if n.running() and not getattr(n, "stopped", False)])
            if n is None:
                return
            n.pause()
            n.stopped = True
            self.record(kind, "SIGSTOP node %d" % n.id)
        elif kind == "clock":
            n = self.pick([n for n in ms])
            jump = self.rng.choice([-90, -20, 15, 60, 600])
            with open(n.env["FAKETIME_TIMESTAMP_FILE"], "w") as f:
                f.write("%+d\n" % jump)
            n.clock_shifted = True
            self.record(kind, "node %d's clock jumps %+d s" % (n.id, jump))
        elif kind == "disk":
            n = self.pick([n for n in ms])
            mnt = os.path.dirname(n.data_dir)
            ballast = os.path.join(mnt, "ballast")
            st = os.statvfs(mnt)
            free = st.f_bavail * st.f_frsize
            # Unbuffered: a write the filling disk cuts short leaves nothing
            # for close() to flush (and fail on with ENOSPC, as seed 8046 did).
            with open(ballast, "wb", buffering=0) as f:
                try:
                    f.write(b"\0" * max(0, free - (64 << 10)))
                except OSError:
                    pass
            self.record(kind, "host %d's disk full (node %d)" % (self.host_of[n.id], n.id))
        elif kind == "member":
            self.membership_change()

    def membership_change(self):
        ms = self.members()
        action = self.rng.choice(["transfer", "replace", "replace_crash", "grow_or_shrink"])
        if action == "transfer":
            ld = self.leader()
            if ld is None:
                return
            to = self.pick([n for n in ms if n.id != ld.id])
            try:
                status, _, data = request(ld.http, "POST", "/cluster/transfer?to=%d" % to.id)
            except (OSError, ConnectionError, TimeoutError) as e:
                status, data = 0, str(e).encode()
            self.record("member", "transfer leadership %d -> %d: %d" % (ld.id, to.id, status))
            return
        if action == "grow_or_shrink" and len(ms) < 5:
            used = set(self.host_of[n.id] for n in ms)
            host = min(h for h in range(1, HOSTS + 1) if h not in used)
            seed_node = self.pick(self.join_seeds())
            if seed_node is None:
                return
            nid = self.next_id
            self.next_id += 1
            with self.lock:
                n = self.make_node(nid, host)
                n.joiner = True
                n.start(["--join", seed_node.http])
            self.record("member", "node %d joins on host %d via node %d" % (nid, host,
                                                                            seed_node.id))
            return
        # replace (or shrink from 5): remove a follower, wipe it, maybe rejoin
        if len(ms) <= 3 and action == "grow_or_shrink":
            return
        ld = self.leader()
        victim = self.pick([n for n in ms if ld is None or n.id != ld.id])
        if victim is None or ld is None:
            return
        host = self.host_of[victim.id]
        try:
            status, _, data = request(ld.http, "DELETE", "/cluster/members/%d" % victim.id)
        except (OSError, ConnectionError, TimeoutError) as e:
            status, data = None, str(e).encode()
        if status in (200, 202, 204):
            with self.lock:
                self.cluster.retire(victim)  # kill -9
            shutil.rmtree(victim.data_dir, ignore_errors=True)
        elif status is None or status == 503:
            # No answer, or a 503 (a timeout, a lost leadership): the removal
            # may be applied yet. Ask the cluster, as an operator would.
            self.removing.add(victim.id)
            if victim.id not in (self.reconcile(harness.scaled(15)) or []):
                self.record("member", "remove node %d: %s (%s); still a member"
                            % (victim.id, status or "no answer", data[:60]))
                return
        else:
            self.record("member", "remove node %d refused: %d %s" % (victim.id, status, data[:60]))
            return
        if action == "grow_or_shrink":
            self.record("member", "node %d removed and wiped (shrink)" % victim.id)
            return
        nid = self.next_id
        self.next_id += 1
        seed_node = self.pick(self.join_seeds())
        if seed_node is None:
            self.record("member", "node %d removed and wiped; no member running to rejoin via"
                        % victim.id)
            return
        with self.lock:
            n = self.make_node(nid, host)
            n.joiner = True
            n.start(["--join", seed_node.http])
        self.record("member", "node %d removed, wiped, rejoins as node %d" % (victim.id, nid))
        if action == "replace_crash":  # the joiner dies while it joins (restarted at the heal)
            time.sleep(self.rng.uniform(0.02, 0.4))
            with self.lock:
                n.kill9()
            self.record("member", "joiner %d killed -9 while joining" % nid)

    def reconcile(self, timeout):
        """Retires (kill -9) and wipes each node whose removal's answer was
        lost (no answer, a 503 timeout) and that the leader's /cluster no
        longer lists: the removal was applied after all, and a node the
        cluster removed is no member to wait for. Returns the ids retired, or None
        when no leader answered within timeout (seconds)."""
        deadline = time.monotonic() + timeout
        ids = None
        while ids is None and time.monotonic() < deadline:
            ld = self.leader()
            i = ld.info(timeout=2) if ld is not None else None
            if i and i.get("role") == "leader":
                ids = {m["id"] for m in i.get("members", [])}
            else:
                time.sleep(0.2)
        if ids is None:
            return None
        gone = [n for n in self.members() if n.id in self.removing and n.id not in ids]
        for n in gone:
            with self.lock:
                self.cluster.retire(n)
            shutil.rmtree(n.data_dir, ignore_errors=True)
            self.record("removed-late", "node %d was removed after all (the answer was lost): "
                        "retired and wiped" % n.id)
        return [n.id for n in gone]

    def restart_args(self, n):
        """A joiner restarts with --join, as an operator's unchanged command
        line (a systemd unit, a StatefulSet) would: a node whose directory
        holds its state ignores the flag, and one killed before its join
        was answered has nothing else to start from. Via the first running
        member by id (no draw from the schedule's generator)."""
        if not getattr(n, "joiner", False):
            return []
        via = [m for m in self.join_seeds() if m is not n]
        return ["--join", via[0].http] if via else []

    def join_seeds(self):
        """The running members a joiner may be sent to, by id: not a node
        whose removal's answer was lost (it may be out of the cluster, and
        answer "no leader" to every join until the heal settles it: soak
        seed 10196)."""
        return [m for m in self.members() if m.running() and m.id not in self.removing]

    def heal_all(self):
        self.net.heal()
        for n in self.members():
            if getattr(n, "stopped", False):
                n.resume()
                n.stopped = False
            if getattr(n, "clock_shifted", False):
                with open(n.env["FAKETIME_TIMESTAMP_FILE"], "w") as f:
                    f.write("+0\n")
                n.clock_shifted = False
            ballast = os.path.join(os.path.dirname(n.data_dir), "ballast")
            if os.path.exists(ballast):
                os.unlink(ballast)
            if not n.running():
                with self.lock:
                    n.start(self.restart_args(n))

    def converge(self):
        """Waits for the membership the nemesis expects, every member a
        voter, and a leader. A removal whose answer was lost may commit
        late (under a later leader): the members the cluster no longer
        lists are retired first, and again while the wait goes on."""
        c = self.cluster
        deadline = time.monotonic() + harness.scaled(60)
        while True:
            self.reconcile(harness.scaled(10))
            ids = sorted(n.id for n in self.members())
            try:
                c.wait_members(voters=ids, nodes=self.members(), timeout=harness.scaled(10))
                break
            except harness.TestFailure:
                if time.monotonic() >= deadline:
                    raise
        c.wait_leader(self.members(), timeout=harness.scaled(30))

    def teardown(self):
        c = self.cluster
        if c is not None:
            for n in list(c.nodes.values()):
                if getattr(n, "stopped", False):
                    n.resume()
        failed = getattr(self, "failed", False)
        if c is not None:
            if failed:
                harness.KEEP = True
            c.close()
        for m in self.mounts:
            netns.run(["umount", "-l", m], check=False)
        self.net.teardown()


def f_hold(rng):
    return rng.uniform(1.5, 5.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("stcache")
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--duration", type=float, default=60, help="seconds of faults per run")
    ap.add_argument("--quiet", type=float, default=8, help="seconds of the liveness period")
    ap.add_argument("--mix", default="all", help="comma list of: " + ",".join(KINDS))
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--keys", type=int, default=6)
    ap.add_argument("--reads", default="linearizable", choices=["linearizable", "lease", "stale"],
                    help="consistency of the clients' reads (stale: to show the checker "
                    "catching non-linearizable reads)")
    ap.add_argument("--retry-s", type=float, default=15,
                    help="retry an unanswered write with its Idempotency-Key for this long "
                    "(0: one attempt; unanswered writes stay unknown)")
    ap.add_argument("--server-args", default=SERVER_ARGS,
                    help="arguments for every node (default: %(default)s)")
    ap.add_argument("--disk-mib", type=int, default=96, help="each host's tmpfs (MiB)")
    ap.add_argument("--net-id", type=int, default=None, help="10.99.NET.0/24 (default: from pid)")
    ap.add_argument("--power-loss", default=None, metavar="SHIM",
                    help="LD_PRELOAD this build of tests/nemesis/powerloss.c into every node: "
                    "WAL writes not yet fsynced are lost at kill -9, as at a power failure")
    ap.add_argument("--tls", action="store_true",
                    help="mutual TLS between the nodes, HTTPS with client certificates on "
                    "their client ports (scripts/gen-certs.sh, certificates dated a day back "
                    "so that the clock faults leave them valid)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="a soak: this many runs at once, each in its own process and "
                    "network; a failed run does not stop the others (their output in "
                    "--log-dir, the totals and every failure at the end)")
    ap.add_argument("--log-dir", default=None, help="with --jobs: where each run's output goes")
    args = ap.parse_args()
    args.stcache = os.path.abspath(args.stcache)
    if args.power_loss:
        args.power_loss = os.path.abspath(args.power_loss)
    why = netns.available()
    if why:
        print("nemesis: SKIPPED: %s" % why, flush=True)
        sys.exit(77)
    for k in (args.mix.split(",") if args.mix != "all" else []):
        if k not in KINDS:
            ap.error("unknown fault kind %r" % k)
    signal.signal(signal.SIGTERM, lambda s, f: sys.exit("killed by signal %d" % s))
    if args.jobs > 1:
        sys.exit(soak(args))
    net_id = args.net_id if args.net_id is not None else 1 + os.getpid() % 250
    totals = {"runs": 0, "operations": 0, "unknown": 0, "faults": {}}
    for r in range(args.runs):
        seed = args.seed + r
        run = Run(args, seed, net_id)
        replay = shlex.join([sys.executable, os.path.abspath(__file__), args.stcache,
                             "--seed", str(seed)] + run_args(args))
        try:
            summary = run.execute()
        except BaseException as e:
            d = run.cluster.dir if run.cluster else "?"
            print("nemesis: seed %d FAILED: %s\n  kept: %s (history.json, watch.json, "
                  "schedule.json, logs)"
                  "\n  replay: %s\n  check again: %s %s %s/history.json"
                  % (seed, e, d, replay, sys.executable, os.path.join(HERE, "checker.py"), d),
                  flush=True)
            sys.exit(1)
        totals["runs"] += 1
        totals["operations"] += summary["operations"]
        totals["unknown"] += summary["unknown"]
        totals["txns"] = totals.get("txns", 0) + summary.get("txns", 0)
        for k, v in summary["faults"].items():
            totals["faults"][k] = totals["faults"].get(k, 0) + v
    print("nemesis: %s" % json.dumps(totals, sort_keys=True), flush=True)


def run_args(args):
    """The arguments (after STCACHE and --seed) of one run like args's: what
    a soak gives each child and what a failed run's replay command says."""
    a = ["--runs", "1", "--duration", "%g" % args.duration, "--quiet", "%g" % args.quiet,
         "--mix", args.mix, "--clients", str(args.clients), "--keys", str(args.keys),
         "--reads", args.reads, "--retry-s", "%g" % args.retry_s,
         "--server-args", args.server_args, "--disk-mib", str(args.disk_mib)]
    if args.power_loss:
        a += ["--power-loss", args.power_loss]
    if args.tls:
        a.append("--tls")
    return a


def soak(args):
    """--jobs N: the runs of seeds seed..seed+runs-1, N at a time, each a
    child `nemesis.py --runs 1` on network 10.99.(100+slot); every run goes
    to its end. Returns the exit status (1 if a run failed)."""
    if not 1 < args.jobs <= 100:
        sys.exit("--jobs: 2..100")
    logdir = args.log_dir or tempfile.mkdtemp(prefix="stcache-nemesis-soak-")
    os.makedirs(logdir, exist_ok=True)
    common = run_args(args)
    seeds = list(range(args.seed, args.seed + args.runs))
    lock = threading.Lock()
    totals = {"runs": 0, "operations": 0, "unknown": 0, "txns": 0, "faults": {}}
    failed = []
    print("nemesis: %d runs of seeds %d..%d, %d at a time; output in %s"
          % (len(seeds), seeds[0], seeds[-1], args.jobs, logdir), flush=True)

    def worker(slot):
        while True:
            with lock:
                if not seeds:
                    return
                seed = seeds.pop(0)
            path = os.path.join(logdir, "seed-%d.log" % seed)
            with open(path, "w") as out:
                rc = subprocess.call([sys.executable, os.path.abspath(__file__), args.stcache,
                                      "--seed", str(seed), "--net-id", str(100 + slot)] + common,
                                     stdout=out, stderr=subprocess.STDOUT)
            with open(path, errors="replace") as f:
                text = f.read()
            summary = None
            for line in text.splitlines():
                if line.startswith("nemesis: {"):
                    summary = json.loads(line[len("nemesis: "):])
            with lock:
                if rc == 0 and summary is not None:
                    totals["runs"] += 1
                    for k in ("operations", "unknown", "txns"):
                        totals[k] += summary.get(k, 0)
                    for k, v in summary["faults"].items():
                        totals["faults"][k] = totals["faults"].get(k, 0) + v
                    print("nemesis: seed %d passed (%d operations)" % (seed, summary["operations"]),
                          flush=True)
                else:
                    why = next((ln for ln in text.splitlines() if " FAILED: " in ln),
                               "exit status %d" % rc)
                    failed.append((seed, why, path))
                    print("nemesis: seed %d FAILED (%s): %s" % (seed, path, why[:200]), flush=True)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(args.jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("nemesis: %s" % json.dumps(totals, sort_keys=True), flush=True)
    for seed, why, path in failed:
        print("nemesis: FAILED seed %d: %s (%s)" % (seed, why[:300], path), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    main()
