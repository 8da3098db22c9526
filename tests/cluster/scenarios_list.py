"""Listing by prefix and range (GET /kv?prefix=...; issue 20, item 1):
a listing taken under concurrent writes and deletes holds exactly the keys
present at the index it returns, and pagination over many keys visits
every key once, in byte order."""

import json
import subprocess
import threading
import time
import urllib.parse

from harness import (KeepAlive, Scenario, check, count, log, scaled, step, wait_for)


def list_path(**query):
    q = {k: v for k, v in query.items() if v is not None}
    return "/kv?" + urllib.parse.urlencode(q, quote_via=urllib.parse.quote)


def list_all(conn, prefix, limit=1000, **extra):
    """Every page of a prefix; returns [(key bytes, item)], the pages' indexes."""
    out, indexes, nxt = [], [], None
    while True:
        r = conn.request("GET", list_path(prefix=prefix, limit=limit, next=nxt, **extra))
        check(r.status == 200, "list %r: %s" % (prefix, r.error_text()))
        body = r.json()
        indexes.append(body["index"])
        check(body["count"] == len(body["kvs"]), "count %d != %d items" % (body["count"], len(body["kvs"])))
        for it in body["kvs"]:
            out.append((it["key"].encode(), it))
        if not body["more"]:
            check(body["next"] is None, "next without more: %s" % body)
            return out, indexes
        nxt = body["next"]


class ListConcurrent(Scenario):
    """Listings under concurrent puts and deletes match the write history at
    their index exactly; writes acknowledged before a listing started are
    in it."""

    def run(self):
        c = self.cluster("list_concurrent")
        with step("start a 3-node cluster"):
            leader = c.start_bootstrap_and_join(3)
            c.wait_members(voters=[1, 2, 3])
            leader = c.wait_leader()
        n_writers = 4
        per_writer = count(400)
        history = []  # (version, op, key, value, t_ack)
        lock = threading.Lock()
        errors = []
        done = threading.Event()

        def write(conn, method, key, value, idem):
            # Idempotency keys: a retry after a 503 answers the first outcome,
            # so every write's version is known exactly.
            headers = {"Idempotency-Key": idem}
            path = "/kv/" + urllib.parse.quote(key, safe="")
            r = wait_for("%s %s" % (method, key),
                         lambda: (lambda r: r if r.status != 503 else None)(
                             conn.request(method, path, value, headers)), 30)
            check(r.status in (200, 201), "%s %s: %s" % (method, key, r.error_text()))
            return r.json()["version"]

        def writer(w):
            conn = KeepAlive(leader.http)
            try:
                live = []
                for i in range(per_writer):
                    key = "lc/%d/%05d" % (w, i)
                    value = "w%d-%d" % (w, i)
                    v = write(conn, "PUT", key, value.encode(), "p-%d-%d" % (w, i))
                    with lock:
                        history.append((v, "put", key, value, time.monotonic()))
                    live.append(key)
                    if i % 3 == 2:  # delete an older key of ours
                        k = live.pop(0)
                        v = write(conn, "DELETE", k, None, "d-%d-%d" % (w, i))
                        with lock:
                            history.append((v, "del", k, None, time.monotonic()))
            except Exception as e:  # reported in the main thread
                errors.append(e)
            finally:
                conn.close()

        listings = []  # (t_start, index, {key: (value, version)})

        def lister(node):
            conn = KeepAlive(node.http)
            try:
                while not done.is_set():
                    t0 = time.monotonic()
                    r = conn.request("GET", list_path(prefix="lc/", limit=10000))
                    if r.status == 503:
                        continue
                    check(r.status == 200, "list via %r: %s" % (node, r.error_text()))
                    body = r.json()
                    check(not body["more"], "one page expected: %d keys" % body["count"])
                    got = {it["key"]: (it["value"], it["version"]) for it in body["kvs"]}
                    keys = [it["key"].encode() for it in body["kvs"]]
                    check(keys == sorted(keys), "listing not in byte order")
                    listings.append((t0, body["index"], got))
            except Exception as e:
                errors.append(e)
            finally:
                conn.close()

        with step("%d writers put and delete under listings through every node" % n_writers):
            ws = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(n_writers)]
            ls = [threading.Thread(target=lister, args=(n,), daemon=True) for n in c.running()]
            for t in ws + ls:
                t.start()
            for t in ws:
                t.join()
            done.set()
            for t in ls:
                t.join()
            check(not errors, "worker failed: %r" % (errors[:1],))
            check(len(listings) >= 3, "only %d listings taken" % len(listings))

        with step("each listing equals the write history at its index"):
            history.sort()
            versions = [h[0] for h in history]
            check(len(set(versions)) == len(versions), "two writes with one version")
            for t0, index, got in listings:
                state = {}
                for v, op, key, value, _ in history:
                    if v > index:
                        break
                    if op == "put":
                        state[key] = (value, v)
                    else:
                        state.pop(key, None)
                check(got == state, "listing at index %d: %d keys, history says %d; "
                      "extra %s, missing %s" % (index, len(got), len(state),
                                                sorted(set(got) - set(state))[:3],
                                                sorted(set(state) - set(got))[:3]))
                late = [h for h in history if h[4] < t0 and h[0] > index]
                check(not late, "listing at %d started after %d writes it misses (first %s)"
                      % (index, len(late), late[:1]))
            log("%d listings checked against %d writes (indexes %d..%d)"
                % (len(listings), len(history), listings[0][1], listings[-1][1]))


class ListPages(Scenario):
    """Pagination over 100k keys (10k under sanitizers... scaled) visits
    every key once in byte order; count_only pages add up; start/end and
    binary keys."""

    def run(self):
        c = self.cluster("list_pages")
        with step("start a 3-node cluster"):
            c.start_bootstrap_and_join(3)
            c.wait_members(voters=[1, 2, 3])
            leader = c.wait_leader()
        n = 100000 if count(2) == 2 else 10000
        keys = ["lp/%06d" % i for i in range(n)]
        with step("write %d keys" % n):
            c.put_many(((k, "v" + k[3:]) for k in keys), via=leader, threads=16)
            for k in ("lo", "lq", "lp", "lp\x7f"):  # around the prefix
                c.put_retry(k, "x", via=leader)
        follower = next(x for x in c.running() if x.id != leader.id)
        for node, cons in ((follower, None), (leader, "stale")):
            with step("page through lp/ on %r (consistency %s)" % (node, cons or "default")):
                conn = KeepAlive(node.http)
                if cons:
                    c.wait_caught_up(node, leader.info()["commit"])
                got, indexes = list_all(conn, "lp/", limit=997, consistency=cons)
                names = [k.decode() for k, _ in got]
                check(names == keys, "pages visited %d keys, want %d (first diff at %s)"
                      % (len(names), n, next((i for i, (a, b) in enumerate(zip(names, keys))
                                              if a != b), min(len(names), n))))
                check(all(it["value"] == "v" + it["key"][3:] for _, it in got), "wrong value")
                check(indexes == sorted(indexes), "page indexes went back: %s" % indexes[:5])
                log("%d pages, indexes %d..%d" % (len(indexes), indexes[0], indexes[-1]))
                conn.close()
        with step("keys_only, count_only, start/end, limits and errors"):
            conn = KeepAlive(follower.http)
            r = conn.request("GET", list_path(prefix="lp/", limit=3, keys_only=1)).json()
            check([it["key"] for it in r["kvs"]] == keys[:3] and "value" not in r["kvs"][0]
                  and r["more"], "keys_only page: %s" % r)
            total, nxt = 0, None
            while True:
                r = conn.request("GET", list_path(prefix="lp/", count_only=1, next=nxt)).json()
                check("kvs" not in r or r["kvs"] == [], "count_only lists no items")
                total += r["count"]
                if not r["more"]:
                    break
                nxt = r["next"]
            check(total == n, "count_only pages add up to %d, want %d" % (total, n))
            r = conn.request("GET", list_path(start="lp/000010", end="lp/000013")).json()
            check([it["key"] for it in r["kvs"]] == keys[10:13], "range: %s" % r)
            r = conn.request("GET", list_path(start="lp0", limit=10)).json()
            check([it["key"] for it in r["kvs"]] == ["lp\x7f", "lq"], "after the prefix: %s" % r)
            r = conn.request("GET", "/kv")
            check(r.status == 400 and r.json()["code"] == "missing_range", "bare GET /kv: %s" % r)
            r = conn.request("GET", "/kv?start=&count_only=1").json()
            check(r["count"] == min(n + 4, 100000) and r["more"] == (n + 4 > 100000),
                  "start= counts every key, 100000 per request: %s" % r)
            for bad in ("limit=0", "limit=10001", "keys_only=2", "next=zz", "consistency=x"):
                r = conn.request("GET", "/kv?prefix=lp/&" + bad)
                check(r.status == 400, "%s: %d %s" % (bad, r.status, r.error_text()))
            check(conn.request("POST", "/kv?prefix=a", b"").status == 405, "POST /kv")
            conn.close()
        with step("binary keys list in byte order, base64 where not UTF-8"):
            bkeys = [b"bin/\x00", b"bin/\x01", b"bin/\x7f", b"bin/\xc3\xa9", b"bin/\xff", b"bin/\xff\x00"]
            for k in reversed(bkeys):
                r = wait_for("PUT", lambda k=k: (lambda r: r if r.status != 503 else None)(
                    leader.request("PUT", "/kv/" + urllib.parse.quote(k, safe=""), b"\xfe")), 30)
                check(r.status in (200, 201), "PUT %r: %s" % (k, r.error_text()))
            import base64
            body = KeepAlive(leader.http).request("GET", list_path(prefix="bin/")).json()
            got = [it["key"].encode() if "key" in it else base64.b64decode(it["key_base64"])
                   for it in body["kvs"]]
            check(got == bkeys, "binary keys: %r" % got)
            check(all(base64.b64decode(it["value_base64"]) == b"\xfe" for it in body["kvs"]),
                  "non-UTF-8 values come as value_base64: %s" % body)
        with step("stcache list and get --prefix follow every page"):
            def cli(*args):
                p = subprocess.run([self.binary] + list(args) + ["--endpoints", follower.http],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   timeout=scaled(120))
                check(p.returncode == 0, "stcache %s: exit %d: %s"
                      % (" ".join(args), p.returncode, p.stderr[:500]))
                return p.stdout
            out = cli("list", "lp/").decode().splitlines()
            check(out == ["%s\tv%s" % (k, k[3:]) for k in keys],
                  "stcache list lp/: %d lines (first %r)" % (len(out), out[:2]))
            out = cli("get", "--prefix", "lp/00001", "--keys-only").decode().splitlines()
            check(out == keys[10:20], "get --prefix --keys-only: %r" % out)
            doc = json.loads(cli("list", "bin/", "--json"))
            check(doc["count"] == len(bkeys) and len(doc["kvs"]) == len(bkeys)
                  and doc["kvs"][0]["key"] == "bin/\x00", "list --json: %s" % doc)


SCENARIOS = {"list_concurrent": ListConcurrent, "list_pages": ListPages}
