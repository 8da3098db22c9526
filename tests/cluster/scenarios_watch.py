"""Watches (GET /watch; issue 20, item 2): a watcher cut off again and again
and resumed from its last version + 1, on whichever node answers, across a
kill -9 of the leader, sees every acknowledged write exactly once and in
order; a watch older than the history gets 410 compacted; a watcher that
stops reading is canceled (slow) while the node's memory stays bounded."""

import http.client
import json
import random
import subprocess
import threading
import urllib.parse

from harness import (SANITIZED, Scenario, Unreachable, check, count, http_connection, log, scaled,
                     step, wait_for)
from scenarios_memory import vm_rss_bytes

MIB = 1 << 20


class WatchStream:
    """One GET /watch response, read line by line (chunked ndjson)."""

    def __init__(self, addr, prefix, from_version=None, timeout=10, **extra):
        q = {"prefix": prefix}
        if from_version is not None:
            q["from_version"] = from_version
        q.update(extra)
        self.conn = http_connection(addr, timeout)  # HTTPS to a node with client TLS
        self.conn.request("GET", "/watch?" + urllib.parse.urlencode(q))
        self.resp = self.conn.getresponse()
        self.status = self.resp.status

    def body_json(self):
        return json.loads(self.resp.read())

    def next(self):
        """The next line as a dict, None at the end of the stream."""
        line = self.resp.readline()
        if not line:
            return None
        check(line.endswith(b"\n"), "a cut line: %r" % line[:80])
        return json.loads(line)

    def close(self):
        try:
            self.conn.sock and self.conn.sock.close()
        except OSError:
            pass
        self.conn.close()


def write_idem(cluster, method, key, value, idem, timeout=60):
    """A write through a rotating running node, retried (Idempotency-Key:
    a retry answers the first outcome) until acknowledged; its version."""
    state = {"i": random.randrange(1 << 16)}

    def attempt():
        ns = cluster.running()
        n = ns[state["i"] % len(ns)]
        state["i"] += 1
        path = "/kv/" + urllib.parse.quote(key, safe="")
        try:
            r = n.request(method, path, value, {"Idempotency-Key": idem}, timeout=scaled(5))
        except Unreachable:
            return None
        if r.status == 503:
            return None
        check(r.status in (200, 201), "%s %s via %r: %s" % (method, key, n, r.error_text()))
        return r.json()["version"]
    return wait_for("%s %s" % (method, key), attempt, timeout)


class WatchResume(Scenario):
    """A watcher killed every few events and resumed from its last version
    + 1 on another node, across a kill -9 of the leader, sees every
    acknowledged write exactly once, in order."""

    def run(self):
        c = self.cluster("watch_resume")
        with step("start a 3-node cluster"):
            c.start_bootstrap_and_join(3)
            c.wait_members(voters=[1, 2, 3])
            leader = c.wait_leader()
        n_writes = count(3000, 300)
        acked = {}  # version -> (op, key, value)
        lock = threading.Lock()
        errors = []
        writes_done = threading.Event()

        def writer(w):
            # Each writer has its own keys; a delete removes the key the
            # writer put just before, so every write changes something.
            try:
                for j in range(n_writes // 3):
                    if j % 7 == 6:
                        key = "wr/%d/%d" % (w, (j - 1) % 17)
                        v = write_idem(c, "DELETE", key, None, "d-%d-%d" % (w, j))
                        op, val = "delete", None
                    else:
                        key = "wr/%d/%d" % (w, j % 17)
                        val = "v%d-%d" % (w, j)
                        v = write_idem(c, "PUT", key, val.encode(), "p-%d-%d" % (w, j))
                        op = "put"
                    with lock:
                        check(v not in acked, "version %d acknowledged twice" % v)
                        acked[v] = (op, key, val)
            except Exception as e:  # reported in the main thread
                errors.append(e)

        seen = []  # (version, type, key, value) in the order received
        reconnects = {"n": 0, "nodes": set()}
        base = leader.info()["applied"] + 1

        def watcher():
            nxt = base
            try:
                while True:
                    nodes = c.running()
                    node = random.choice(nodes)
                    try:
                        ws = WatchStream(node.http, "wr/", from_version=nxt, progress_ms=100)
                    except (OSError, http.client.HTTPException):
                        continue
                    if ws.status == 503:
                        ws.close()
                        continue
                    check(ws.status == 200, "watch from %d on %r: %d" % (nxt, node, ws.status))
                    reconnects["n"] += 1
                    reconnects["nodes"].add(node.id)
                    cut_after = random.randint(5, 40)
                    got = 0
                    try:
                        while got < cut_after:
                            ev = ws.next()
                            if ev is None:
                                break  # the node went away
                            if "progress" in ev:
                                if writes_done.is_set() and acked and \
                                        ev["progress"]["applied"] >= max(acked):
                                    return
                                continue
                            check("canceled" not in ev, "watch canceled: %s" % ev)
                            seen.append((ev["version"], ev["type"], ev["key"], ev.get("value")))
                            nxt = ev["version"] + 1  # one event per version here
                            got += 1
                    except (OSError, http.client.HTTPException, ValueError):
                        pass  # cut by a kill: resume
                    finally:
                        ws.close()  # a watcher killed mid-stream
            except Exception as e:
                errors.append(e)

        with step("%d writes from 3 writers while a watcher is cut and resumed; "
                  "kill -9 the leader midway" % n_writes):
            ws = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(3)]
            wt = threading.Thread(target=watcher, daemon=True)
            for t in ws + [wt]:
                t.start()
            wait_for("a third of the writes", lambda: len(acked) >= n_writes // 3 or errors, 60)
            old = c.leader()
            log("kill -9 %r" % old)
            old.kill9()
            c.wait_leader(exclude=[old.id])
            for t in ws:
                t.join()
            writes_done.set()
            check(not errors, "worker failed: %r" % (errors[:1],))
            wt.join(scaled(60))
            check(not wt.is_alive(), "the watcher did not catch up")
            check(not errors, "watcher failed: %r" % (errors[:1],))

        with step("the events are the acknowledged writes, each once, in order"):
            versions = [s[0] for s in seen]
            check(versions == sorted(versions), "events out of order")
            check(len(set(versions)) == len(versions), "an event seen twice")
            want = sorted(acked)
            check(versions == want, "events %d, acknowledged writes %d; missing %s, extra %s"
                  % (len(versions), len(want), sorted(set(want) - set(versions))[:3],
                     sorted(set(versions) - set(want))[:3]))
            for v, typ, key, value in seen:
                op, k, val = acked[v]
                check((typ, key, value) == (op, k, val), "event %d: %s %s %r, the write was "
                      "%s %s %r" % (v, typ, key, value, op, k, val))
            log("%d events over %d connections to nodes %s, leader killed midway"
                % (len(seen), reconnects["n"], sorted(reconnects["nodes"])))


class WatchCompacted(Scenario):
    """A watch from before the history gets 410 compacted with the oldest
    version; from that version it starts with the event there."""

    def run(self):
        c = self.cluster("watch_compacted", common_args=["--watch-history-entries", "16"])
        with step("start a 3-node cluster, 100 writes"):
            c.start_bootstrap_and_join(3)
            c.wait_members(voters=[1, 2, 3])
            leader = c.wait_leader()
            first = c.put_retry("wc/0", "x", via=leader)
            for i in range(1, 100):
                last = c.put_retry("wc/%d" % i, "x", via=leader)
        node = next(n for n in c.running() if n.id != leader.id)
        c.wait_caught_up(node, last)
        with step("from_version=%d on %r: 410 compacted" % (first, node)):
            ws = WatchStream(node.http, "wc/", from_version=first)
            check(ws.status == 410, "status %d" % ws.status)
            body = ws.body_json()
            ws.close()
            check(body["code"] == "compacted" and body["oldest_version"] > first,
                  "body: %s" % body)
            oldest = body["oldest_version"]
            log("oldest version %d (history of 16 events, last write %d)" % (oldest, last))
        with step("from the oldest version: events from there to the last write"):
            ws = WatchStream(node.http, "wc/", from_version=oldest, progress_ms=50)
            check(ws.status == 200, "status %d" % ws.status)
            got = []
            while True:
                ev = ws.next()
                check(ev is not None, "stream ended")
                if "progress" in ev:
                    break
                got.append(ev["version"])
            ws.close()
            check(got and got[0] == oldest and got[-1] == last and got == sorted(got),
                  "versions %s" % got)
        with step("bad parameters"):
            for q, code in (("/watch", "missing_range"), ("/watch?prefix=a&key=b", "bad_request"),
                            ("/watch?prefix=a&from_version=x", "bad_request")):
                r = node.request("GET", q)
                check(r.status == 400 and r.json()["code"] == code, "%s: %s" % (q, r))


class WatchSlow(Scenario):
    """A watcher that stops reading is canceled (slow) once the history
    moves past it; the node's RSS does not grow with what it missed."""

    def run(self):
        hist = 1 * MIB
        c = self.cluster("watch_slow", common_args=[
            "--watch-history-bytes", str(hist), "--snapshot-log-bytes", str(4 * MIB)])
        with step("start a 3-node cluster"):
            c.start_bootstrap_and_join(3)
            c.wait_members(voters=[1, 2, 3])
            leader = c.wait_leader()
        # The leader: a follower may install a snapshot under this load
        # (--snapshot-log-bytes keeps the log small), which cancels its
        # watches as compacted rather than slow.
        node = leader
        value = "x" * 4096
        rounds = count(2000, 1000)

        def write_round(tag):
            c.put_many((("ws/%d" % (i % 64), value + tag + str(i)) for i in range(rounds)),
                       via=leader, threads=8)

        with step("warm up: %d writes of 4 KiB over 64 keys" % rounds):
            write_round("a")
            c.wait_caught_up(node, leader.info()["commit"])
            rss0 = vm_rss_bytes(node)
        with step("a watcher on %r stops reading; %d more writes (%d MiB)"
                  % (node, rounds * 2, rounds * 2 * 4096 // MIB)):
            ws = WatchStream(node.http, "ws/", timeout=scaled(30))
            check(ws.status == 200, "status %d" % ws.status)
            write_round("b")
            write_round("c")
            c.wait_caught_up(node, leader.info()["commit"])
            rss1 = vm_rss_bytes(node)
            margin = 8 * MIB
            log("%r VmRSS %.1f MiB before, %.1f MiB with the stalled watcher (margin %d MiB)"
                % (node, rss0 / MIB, rss1 / MIB, margin // MIB))
            if SANITIZED:  # ASan's quarantine holds freed memory: RSS says nothing
                log("sanitized build: the RSS bound is not checked")
            else:
                check(rss1 <= rss0 + margin, "RSS grew by %.1f MiB" % ((rss1 - rss0) / MIB))
        with step("reading again: the last line is canceled (slow), then the end"):
            last, n = None, 0
            while True:
                ev = ws.next()
                if ev is None:
                    break
                last = ev
                n += 1
            ws.close()
            check(last is not None and last.get("canceled", {}).get("reason") == "slow",
                  "last line %s after %d lines" % (last, n))
            log("%d lines, then %s" % (n, last))
            r = node.request("GET", "/metrics")
            check(r.status == 200 and "stcache_watch_canceled_slow_total 1" in r.text(),
                  "metrics: the slow cancel counted")


class WatchCli(Scenario):
    """`stcache watch` connected to the leader first resumes by itself on
    another endpoint when the leader is killed: it prints every
    acknowledged write exactly once, in order."""

    def run(self):
        c = self.cluster("watch_cli")
        with step("start a 3-node cluster"):
            c.start_bootstrap_and_join(3)
            c.wait_members(voters=[1, 2, 3])
            leader = c.wait_leader()
        n = count(400, 60)
        others = [x for x in c.running() if x.id != leader.id]
        eps = ",".join(x.http for x in [leader] + others)
        start = leader.info()["applied"] + 1
        proc = subprocess.Popen([c.binary, "watch", "cw/", "--json", "--from", str(start),
                                 "--count", str(n), "--endpoints", eps, "--timeout", "30"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        acked = {}
        try:
            with step("%d writes; kill -9 the leader (the watch's endpoint) midway" % n):
                for i in range(n):
                    if i == n // 2:
                        log("kill -9 %r" % leader)
                        leader.kill9()
                    v = write_idem(c, "PUT", "cw/%d" % (i % 10), ("v%d" % i).encode(), "cw-%d" % i)
                    acked[v] = ("cw/%d" % (i % 10), "v%d" % i)
                out, err = proc.communicate(timeout=scaled(60))
            with step("the watch printed each acknowledged write once, in order"):
                check(proc.returncode == 0, "exit %d: %s" % (proc.returncode, err[-500:]))
                lines = [json.loads(x) for x in out.decode().splitlines()]
                got = [(e["version"], e["key"], e["value"]) for e in lines]
                want = [(v,) + acked[v] for v in sorted(acked)]
                check(got == want, "printed %d events, %d acknowledged; first difference at %s"
                      % (len(got), len(want), next((i for i, (a, b) in enumerate(zip(got, want))
                                                    if a != b), min(len(got), len(want)))))
                log("%d events printed; stderr: %s" % (len(got), err.decode().strip()[-200:]))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


SCENARIOS = {"watch_cli": WatchCli, "watch_resume": WatchResume, "watch_compacted": WatchCompacted,
             "watch_slow": WatchSlow}
