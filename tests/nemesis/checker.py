"""Checks a nemesis history: linearizability per key, and writes neither lost
nor applied twice.

An operation is a dict:
    id, client, key, f ("put" | "cas" | "del" | "get"),
    value (put, cas: unique across the history), expect (cas: the version
    the If-Match names), call, ret (seconds; ret is None when the outcome is
    unknown: a timeout, a reset connection, a 503 after the request was
    sent), and for completed operations status (HTTP) plus, for get, the
    value read and its version (ETag), for put/cas/del the version answered.

The model is a register per key whose state is the value (or None when
absent). Values are unique, so a version names one value: the versions seen
in answers (write acknowledgements, ETags of reads) give a version -> value
map, and a compare-and-set "If-Match: N" is "if the register holds the value
written at version N". Statuses carry the preconditions the API promises:
201 created (the key was absent), 200 replaced (present), 412 (the condition
did not hold), 404 (absent).

Linearizability is decided with the Wing-Gong/Lowe algorithm as Porcupine
implements it: a search over the call/return events with a cache of
(linearized set, state); an operation whose outcome is unknown gets an
infinite return time, so it may take effect at any point after its call, or
never. Per key (P-compositionality), so the search stays small.

Applied twice: a value must never be seen with two versions, and a version
never with two values or keys. A value seen that no operation wrote is
reported too.

Transactions (f "txn", POST /txn: one log entry) are two keys: kind "w"
compares the first key's version with expect (when not None) and puts
values[0] and values[1] on keys[0] and keys[1], or else reads both; kind
"r" reads both. The answer gives succeeded, version (the entry's index) and
results. For the per-key check a transaction is split into the single-key
operations it amounts to (project()): a compare-and-put or a blind put
("wput": any prior state) per key, or reads. What that split cannot see,
that the two keys changed together and that the reads saw one state, the
watch check does (check_watch): a transaction's writes are events of one
version, all or none, and its reads equal the stream's state just before
its version.
"""

import bisect
import json
import math
import os
import sys

INF = math.inf
UNSEEN = "\0unseen"  # the value of an unknown write nobody read


class Violation(Exception):
    pass


def _step(op, state, vmap):
    """(legal, new_state) of applying op to state."""
    f, st = op["f"], op.get("status")
    known = op.get("ret") is not None and not op.get("unknown")
    if f == "wput":  # a transaction's put: no answer about the prior state
        return True, op["value"]
    if f == "get":
        if st == 200:
            return state == op["out"], state
        return state is None, state  # 404
    if f == "put":
        if not known:
            return True, op["value"]
        if st == 201:
            return state is None, op["value"]
        return state is not None, op["value"]  # 200
    if f == "del":
        if not known:
            return True, None
        if st == 404:
            return state is None, None
        return state is not None, None  # 200
    if f == "cas":
        expected = vmap.get((op["key"], op["expect"]), ("<unseen version %s>" % op["expect"],))
        holds = state == expected
        if not known:
            return True, op["value"] if holds else state
        if st == 412:
            return not holds, state
        return holds, op["value"]  # 200
    raise ValueError("unknown f %r" % f)


STEPS_MAX = 20_000_000  # search steps per key before the checker gives up (and says so)


def linearizable(ops, vmap, init=None):
    """True when the operations of one key have a linearization. Raises
    Violation("undecided") past STEPS_MAX steps: never a silent pass."""
    events = []
    for k, op in enumerate(ops):
        ret = op["ret"] if op["ret"] is not None else INF
        # at equal times a call sorts before a return: the two overlap
        events.append((op["call"], 0, k))
        events.append((ret, 1, k))
    events.sort()
    n = len(events)
    # doubly linked list over event slots; 0 = head sentinel
    nxt = list(range(1, n + 2))
    prv = list(range(-1, n + 1))
    kind = [None] + [e[1] for e in events]
    opk = [None] + [e[2] for e in events]
    match = {}
    for pos in range(1, n + 1):
        if kind[pos] == 1:
            match[opk[pos]] = pos
    end = n + 1

    def lift(pos):
        r = match[opk[pos]]
        nxt[prv[pos]] = nxt[pos]
        prv[nxt[pos]] = prv[pos]
        nxt[prv[r]] = nxt[r]
        prv[nxt[r]] = prv[r]

    def unlift(pos):
        r = match[opk[pos]]
        nxt[prv[r]] = r
        prv[nxt[r]] = r
        nxt[prv[pos]] = pos
        prv[nxt[pos]] = pos

    # Interchangeable operations: unknown (never returning) with the same
    # effect on every state: writes of an unseen value (per CAS condition)
    # and deletes. Of such a group, any k of them linearized can be taken to
    # be the k called first (swap one for an earlier-called twin: same
    # effect, and no return time to respect), so a member is linearized only
    # after its predecessor in call order. Without this, n of them make the
    # search try 2^n subsets.
    prereq = [None] * len(ops)
    last = {}
    for k in sorted(range(len(ops)), key=lambda k: ops[k]["call"]):
        op = ops[k]
        if op["ret"] is not None:
            continue
        if op["f"] == "del":
            g = ("del",)
        elif op["f"] in ("put", "cas") and op["value"] == UNSEEN:
            g = (op["f"], op.get("expect"))
        else:
            continue
        prereq[k] = last.get(g)
        last[g] = k
    # Candidates at a point: the calls before the first return left in the
    # list (any of them may be linearized next). Trying the ones that have
    # a return time first, soonest first, and the never-returning ones last
    # changes no verdict (every candidate is tried before backtracking) but
    # keeps the unknown operations out of the way until one is needed.
    def candidates():
        out = []
        e = nxt[0]
        while e != end and kind[e] == 0:
            out.append(e)
            e = nxt[e]
        out.sort(key=lambda e: (0, ops[opk[e]]["ret"]) if ops[opk[e]]["ret"] is not None
                 else (1, ops[opk[e]]["call"]))
        return out

    cache = set()
    stack = []
    bits = 0
    state = init
    cands, i = candidates(), 0
    steps = 0
    while nxt[0] != end:
        advanced = False
        while i < len(cands):
            steps += 1
            if steps > STEPS_MAX:
                raise Violation("undecided: the search for a linearization of %d operations "
                                "passed %d steps" % (len(ops), STEPS_MAX))
            e = cands[i]
            i += 1
            k = opk[e]
            if prereq[k] is not None and not (bits >> prereq[k]) & 1:
                continue
            ok, new = _step(ops[k], state, vmap)
            if not ok:
                continue
            nb = bits | (1 << k)
            if (nb, new) in cache:
                continue
            cache.add((nb, new))
            stack.append((cands, i, e, state, bits))
            state, bits = new, nb
            lift(e)
            cands, i = candidates(), 0
            advanced = True
            break
        if advanced:
            continue
        if not stack:
            return False
        cands, i, e, state, bits = stack.pop()
        unlift(e)
    return True


def _txn_part(op, i, **kw):
    return dict({"id": "%s.%d" % (op["id"], i), "client": op["client"], "call": op["call"],
                 "ret": op["ret"], "txn": op["id"], "key": op["keys"][i], "status": None,
                 "version": None}, **kw)


def txn_parts(op):
    """The single-key operations a transaction amounts to, for the per-key
    check (its cross-key promises are check_watch's)."""
    if op.get("failed"):
        return []  # surely not applied
    known = op["ret"] is not None and op.get("status") == 200
    reads = []
    if known and (op["kind"] == "r" or not op["succeeded"]):
        for i, r in enumerate(op["results"][:2]):
            v = r.get("value")
            reads.append(_txn_part(op, i, f="get", status=404 if v is None else 200, out=v))
    if op["kind"] == "r":
        return reads  # an unanswered read constrains nothing
    expect, V = op.get("expect"), op.get("version")
    first = "cas" if expect is not None else "put"
    if not known:  # either both writes happened (when the compare held) or neither
        return [_txn_part(op, 0, f=first, value=op["values"][0], expect=expect, ret=None),
                _txn_part(op, 1, f="put", value=op["values"][1], ret=None)]
    if op["succeeded"]:
        return [_txn_part(op, 0, f="cas" if expect is not None else "wput",
                          value=op["values"][0], expect=expect, status=200, version=V),
                _txn_part(op, 1, f="wput", value=op["values"][1], status=200, version=V)]
    return [_txn_part(op, 0, f="cas", value=op["values"][0], expect=expect, status=412)] + reads


def project(history):
    """The history with each transaction replaced by txn_parts()."""
    out = []
    for op in history:
        out.extend(txn_parts(op) if op["f"] == "txn" else [op])
    return out


def version_map(history):
    """(key, version) -> value from every answer that names both; raises
    Violation when a value has two versions or a (key, version) two values
    (applied twice), or when two writes were answered one version (only
    the keys of one transaction share a version)."""
    vmap, by_value, owner = {}, {}, {}
    for op in history:
        if op.get("ret") is None or op.get("status") not in (200, 201):
            continue
        if op["f"] == "get":
            value, version = op["out"], op.get("version")
        elif op["f"] in ("put", "cas", "wput"):
            value, version = op["value"], op.get("version")
        else:
            continue
        if version is None:
            continue
        kv = (op["key"], version)
        if vmap.get(kv, value) != value:
            raise Violation("version %s of key %s names two writes: %r and %r"
                            % (version, op["key"], vmap[kv], value))
        if by_value.get(value, kv) != kv:
            raise Violation("value %r seen as version %s of %s and version %s of %s: applied twice"
                            % (value, by_value[value][1], by_value[value][0], version, op["key"]))
        if op["f"] != "get":
            who = op.get("txn", op["id"])
            if owner.get(version, who) != who:
                raise Violation("version %s answered to two writes (operations %s and %s)"
                                % (version, owner[version], who))
            owner[version] = who
        vmap[kv], by_value[value] = value, kv
    return vmap


def check_unwritten(history):
    written = {op["value"] for op in history if op["f"] in ("put", "cas", "wput")}
    for op in history:
        if op["f"] == "get" and op.get("status") == 200 and op["out"] not in written:
            raise Violation("key %s read %r, which no operation wrote" % (op["key"], op["out"]))


def truncate(ops, t):
    """The history as it stood at time t: operations answered by then keep
    their answers, those still running become unknown (a read, dropped).
    A history that is linearizable stays so when truncated, so the failing
    cut times are every time from the first one on."""
    out = []
    for o in ops:
        if o["call"] > t:
            continue
        if o["ret"] is not None and o["ret"] <= t:
            out.append(o)
        elif o["f"] != "get":
            out.append(dict(o, ret=None, unknown=True, status=None, version=None))
    return out


def smallest_failing_window(ops, vmap, context=12):
    """The earliest time at which the key's history stops being
    linearizable, and the operations answered last before it: the window
    where the history breaks (the last one is the answer that no order of
    the operations can explain)."""
    times = sorted({o["ret"] for o in ops if o["ret"] is not None})
    lo, hi = 0, len(times) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        try:
            ok = linearizable(truncate(ops, times[mid]), vmap)
        except Violation:  # undecided: look earlier
            ok = False
        if ok:
            lo = mid + 1
        else:
            hi = mid
    cut = truncate(ops, times[lo])
    done = sorted((o for o in cut if o["ret"] is not None and not o.get("unknown")),
                  key=lambda o: o["ret"])
    return sorted(done[-context:], key=lambda o: o["call"])


def describe(op, t0=0.0):
    ret = "  ?    " if op["ret"] is None else "%7.3f" % (op["ret"] - t0)
    if op["f"] == "txn":
        what = ("txn if v%s: put %r, %r" % (op.get("expect"), op["values"][0], op["values"][1])
                if op["kind"] == "w" else "txn get, get")
    else:
        what = {"get": "get", "put": "put %r" % op.get("value"), "del": "del",
                "wput": "txn put %r" % op.get("value"),
                "cas": "cas if v%s -> %r" % (op.get("expect"), op.get("value"))}[op["f"]]
    if op.get("txn") is not None:
        what += " (txn %s)" % op["txn"]
    res = "unknown" if op["ret"] is None or op.get("unknown") else "%s" % op.get("status")
    if op["f"] == "get" and op.get("status") == 200:
        res += " %r v%s" % (op["out"], op.get("version"))
    elif op.get("version") is not None:
        res += " v%s" % op["version"]
    key = op["key"] if "key" in op else "+".join(op["keys"])
    return "  [%7.3f .. %s] c%-2d %-6s %-40s -> %s" % (op["call"] - t0, ret, op["client"],
                                                      key, what, res)


def watch_settled(history, watch):
    """What the watch stream tells of writes whose answer was lost:
    (applied_by, complete). applied_by maps each value the stream saw put
    to the time by which its write had surely taken effect: the first
    answer of an operation at a later log index (writes, deletes and
    transactions answer their own entry's index, and entries apply in
    order), INF when none came. complete: the stream holds every write up
    to the last answered index (caught up, no gap), so a value it never
    delivered was never written. (None, False) without a watch."""
    if not watch:
        return None, False
    at = {ev["value"]: ev["version"] for ev in watch["events"] if ev["type"] == "put"}
    answers = sorted((op["version"], op["ret"]) for op in history
                     if op["ret"] is not None and op["f"] != "get"
                     and op.get("status") in (200, 201) and op.get("version") is not None)
    versions = [v for v, _ in answers]
    suffix = [INF] * (len(answers) + 1)
    for i in range(len(answers) - 1, -1, -1):
        suffix[i] = min(suffix[i + 1], answers[i][1])
    applied_by = {val: suffix[bisect.bisect_right(versions, v)] for val, v in at.items()}
    complete = not watch.get("gaps") and watch["covered"] >= (versions[-1] if versions else 0)
    return applied_by, complete


def check(history, watch=None):
    """Returns a summary dict; raises Violation with a readable report.
    watch: {"events", "covered", "gaps"} as check_watch takes them, to
    settle writes whose answer was lost (watch_settled)."""
    txns = sum(1 for op in history if op["f"] == "txn")
    original = history
    applied_by, complete = watch_settled(history, watch)
    history = project(history)
    vmap = version_map(history)
    check_unwritten(history)
    # The values something observed: read back, or named by a CAS's version.
    observed = {op["out"] for op in history if op["f"] == "get" and op.get("status") == 200}
    observed |= {vmap[(op["key"], op["expect"])] for op in history
                 if op["f"] == "cas" and (op["key"], op["expect"]) in vmap}
    # An unknown write whose value was read took effect, before the first
    # return of an operation that saw it: that return bounds it like a
    # completed operation's (without the status it never got). Left with an
    # infinite return, a few dozen of them make the search exponential.
    seen_by = {}
    for op in history:
        if op["ret"] is None:
            continue
        if op["f"] == "get" and op.get("status") == 200:
            v = op["out"]
        elif op["f"] == "cas" and (op["key"], op["expect"]) in vmap:
            v = vmap[(op["key"], op["expect"])]
        else:
            continue
        seen_by[v] = min(seen_by.get(v, INF), op["ret"])
    # A transaction is atomic (check_watch holds it to that): one of its
    # values seen means every one of its writes had taken effect by then.
    parts = {}
    for op in history:
        if op.get("txn") is not None and op["f"] in ("put", "cas", "wput"):
            parts.setdefault(op["txn"], []).append(op["value"])
    for values in parts.values():
        bound = min(seen_by.get(v, INF) for v in values)
        if bound < INF:
            for v in values:
                seen_by[v] = bound
    keys = {}
    settled = dropped = 0
    for op in history:
        if op["f"] == "get" and op["ret"] is None:
            continue  # an unanswered read constrains nothing
        if op["ret"] is None and op["f"] in ("put", "cas") and applied_by is not None:
            # The watch stream saw the write at its log index: it took effect
            # before any later index was answered. Or, caught up and whole,
            # the stream never saw it: it was never written (a compare that
            # failed, a request lost), unless a read saw it (then the stream
            # is wrong, and the read's bound below stands).
            v = op["value"]
            if v in applied_by:
                bound = min(applied_by[v], seen_by.get(v, INF))
                if bound < INF:
                    op = dict(op, ret=max(op["call"], bound), unknown=True)
                    settled += 1
            elif complete and v not in seen_by:
                dropped += 1
                continue
        if op["ret"] is None and op["f"] in ("put", "cas") and op["value"] in seen_by:
            op = dict(op, ret=max(op["call"], seen_by[op["value"]]), unknown=True)
        if op["ret"] is None and op["f"] in ("put", "cas") and op["value"] not in observed:
            # Unknown writes whose value nobody saw differ only in their call
            # times: they all leave "some value never read" (UNSEEN), and
            # linearize() tries them in call order only (see there).
            op = dict(op, value=UNSEEN)
        if op.get("failed"):
            continue  # definitely not applied (never sent, or a documented refusal)
        keys.setdefault(op["key"], []).append(op)
    t0 = min((op["call"] for op in history), default=0.0)
    for key, ops in sorted(keys.items()):
        if not linearizable(ops, vmap):
            window = smallest_failing_window(ops, vmap)
            raise Violation("key %s: not linearizable (%d operations); the last answers "
                            "before it breaks (the last one cannot be explained):\n%s" % (key, len(ops),
                                                       "\n".join(describe(o, t0) for o in window)))
    unknown = sum(1 for op in original if op["ret"] is None)
    return {"operations": len(original), "keys": len(keys), "unknown": unknown, "txns": txns,
            "settled_by_watch": settled, "never_written": dropped,
            "ok": sum(1 for op in original if op["ret"] is not None and not op.get("failed"))}


# ---------------------------------------------------------------------------
# watch streams


def check_watch(events, history, covered_to, gaps=()):
    """The events a watcher received (dicts: type, key, version, value),
    resumed across reconnects, against the history of operations:
      - in log order, each change once: versions never decreasing, and a
        version repeated only for another key (a transaction's events);
      - each event is a write that may have happened: a put/cas event's
        value was written by an operation not surely refused, at the version
        that operation was answered (if it was); a delete event's key had a
        delete not surely refused;
      - a version with several events is one transaction's, and holds every
        write of it (up to covered_to): all or nothing;
      - a transaction's reads (a read transaction, or the failure branch of a
        write transaction) equal the stream's state just before its version;
      - nothing acknowledged is missing: every write answered 200/201 with
        a version up to covered_to (the last version the watch vouched for)
        is an event with that key, version and value, unless it lies in one
        of gaps ((first, last) version ranges every node had compacted out
        of its watch history when the watcher asked: it was told, 410).
    Returns the number of events checked; raises Violation."""
    txns = [op for op in history if op["f"] == "txn"]
    writes = {}  # value -> the operation (or transaction part) that wrote it
    dels = {}
    for op in history:
        if op["f"] in ("put", "cas"):
            writes[op["value"]] = op
        elif op["f"] == "del" and not op.get("failed") and op.get("status") != 404:
            dels.setdefault(op["key"], []).append(op)
        elif op["f"] == "txn" and op["kind"] == "w":
            known = op["ret"] is not None and op.get("status") == 200
            refused = known and not op["succeeded"]
            for i in (0, 1):
                writes[op["values"][i]] = {
                    "key": op["keys"][i], "value": op["values"][i], "txn": op["id"],
                    "failed": op.get("failed"), "status": 412 if refused else op.get("status"),
                    "version": op.get("version") if known and not refused else None}
    last, keys_at_last = 0, set()
    seen = {}  # (version, key) -> event
    by_version = {}
    for ev in events:
        v = ev["version"]
        if v < last or (v == last and ev["key"] in keys_at_last):
            raise Violation("watch: event %s after version %d: out of order or seen twice"
                            % (json.dumps(ev), last))
        if v > last:
            last, keys_at_last = v, set()
        keys_at_last.add(ev["key"])
        seen[(v, ev["key"])] = ev
        by_version.setdefault(v, []).append(ev)
        if ev["type"] == "put":
            op = writes.get(ev.get("value"))
            if op is None:
                raise Violation("watch: put of %r at v%d, which no operation wrote"
                                % (ev.get("value"), v))
            if op["key"] != ev["key"]:
                raise Violation("watch: %r written to %s, seen on %s" % (op["value"], op["key"],
                                                                         ev["key"]))
            if op.get("failed") or op.get("status") == 412:
                raise Violation("watch: put of %r at v%d, whose write was refused (%s)"
                                % (op["value"], v, op.get("failed") or op.get("status")))
            if op.get("version") is not None and op["version"] != v:
                raise Violation("watch: %r seen at v%d, its write was answered v%s"
                                % (op["value"], v, op["version"]))
        elif ev["type"] == "delete":
            if ev["key"] not in dels:
                raise Violation("watch: delete of %s at v%d, which no operation asked for"
                                % (ev["key"], v))
        else:
            raise Violation("watch: unexpected event %s" % json.dumps(ev))
    for v, evs in by_version.items():
        owners = {writes[e["value"]].get("txn", "single") if e["type"] == "put" else "del"
                  for e in evs}
        if len(evs) > 1 and (len(owners) > 1 or None in owners or "single" in owners
                             or "del" in owners):
            raise Violation("watch: version %d changed %s, which is not one transaction"
                            % (v, json.dumps(evs)))
    in_gap = (lambda v: any(lo <= v <= hi for lo, hi in gaps))
    by_id = {op["id"]: op for op in txns}
    for v, evs in by_version.items():
        t = writes[evs[0]["value"]].get("txn") if evs[0]["type"] == "put" else None
        if t is None or v > covered_to or in_gap(v):
            continue
        op = by_id[t]
        want = {(op["keys"][i], op["values"][i]) for i in (0, 1)}
        got = {(e["key"], e.get("value")) for e in evs}
        if got != want:
            raise Violation("watch: transaction %s applied in part at v%d: %s of %s"
                            % (t, v, sorted(got), sorted(want)))
    # the state just before each version, per key: (version, value or None) in order
    changes = {}
    for ev in events:
        changes.setdefault(ev["key"], []).append((ev["version"],
                                                  ev.get("value") if ev["type"] == "put" else None))
    for op in txns:
        if op["ret"] is None or op.get("status") != 200 or (op["kind"] == "w" and op["succeeded"]):
            continue
        V = op["version"]
        if V > covered_to or any(lo < V for lo, hi in gaps):
            continue
        want = []
        for k in op["keys"]:
            cs = changes.get(k, [])
            j = bisect.bisect_left(cs, (V,)) - 1
            want.append(cs[j][1] if j >= 0 else None)
        got = [r.get("value") for r in op["results"][:2]]
        if got != want:
            raise Violation("watch: transaction %s read %s = %s at v%d; the stream's state there "
                            "is %s" % (op["id"], "+".join(op["keys"]), got, V, want))
    for op in project(history):
        if op["f"] == "get" or op.get("ret") is None or op.get("status") not in (200, 201):
            continue
        v = op.get("version")
        if v is None or v > covered_to or in_gap(v):
            continue
        ev = seen.get((v, op["key"]))
        want = "delete" if op["f"] == "del" else "put"
        if ev is None or ev["type"] != want or (want == "put" and ev.get("value") != op["value"]):
            raise Violation("watch: acknowledged %s of %s at v%d is not in the stream (saw %s)"
                            % (op["f"], op["key"], v, json.dumps(ev)))
    return len(events)


# ---------------------------------------------------------------------------
# self-test: the checker must accept good histories and reject bad ones


def _op(i, c, f, call, ret, status=None, value=None, out=None, version=None, expect=None,
        key="k"):
    return {"id": i, "client": c, "key": key, "f": f, "call": call, "ret": ret,
            "status": status, "value": value, "out": out, "version": version, "expect": expect}


def _all_refused(streams, hist, covered):
    """Each named bad watch stream must fail check_watch."""
    for what, stream in streams.items():
        try:
            check_watch(stream, hist, covered)
            raise AssertionError("watch stream accepted: " + what)
        except Violation:
            pass


def self_test():
    good = [
        _op(0, 1, "put", 0.0, 1.0, 201, value="a", version=10),
        _op(1, 2, "get", 0.5, 1.5, 200, out="a", version=10),  # concurrent, sees a
        _op(2, 3, "put", 2.0, None, value="b"),                 # unknown
        _op(3, 1, "get", 3.0, 3.5, 200, out="a", version=10),   # b not (yet) applied
        _op(4, 2, "cas", 4.0, 4.5, 200, value="c", expect=10, version=14),
        _op(5, 1, "get", 5.0, 5.5, 200, out="c", version=14),
        _op(6, 3, "cas", 6.0, 6.5, 412, value="d", expect=10),
        _op(7, 1, "del", 7.0, 7.5, 200, version=20),
        _op(8, 2, "get", 8.0, 8.5, 404),
        _op(9, 3, "del", 9.0, 9.5, 404),
    ]
    check(good)
    # a stale read: after c was acknowledged, a read returns a
    stale = good[:6] + [_op(10, 3, "get", 5.6, 5.9, 200, out="a", version=10)]
    try:
        check(stale)
        raise AssertionError("stale read accepted")
    except Violation as e:
        assert "not linearizable" in str(e), e
        # the window ends with the stale read
        assert str(e).rstrip().endswith("200 'a' v10"), e
    # a lost write: an acknowledged put, then reads without it
    lost = [_op(0, 1, "put", 0.0, 1.0, 201, value="a", version=3),
            _op(1, 2, "get", 2.0, 2.1, 404)]
    try:
        check(lost)
        raise AssertionError("lost write accepted")
    except Violation:
        pass
    # the unknown write applied late: a read sees b after a read without it
    late = good[:4] + [_op(4, 1, "get", 4.0, 4.1, 200, out="b", version=12)]
    check(late)
    # ...but not back and forth (b then a again)
    flip = late + [_op(5, 2, "get", 5.0, 5.1, 200, out="a", version=10)]
    try:
        check(flip)
        raise AssertionError("a value coming back accepted")
    except Violation:
        pass
    # applied twice: one value at two versions
    twice = [_op(0, 1, "put", 0.0, 1.0, 201, value="a", version=3),
             _op(1, 2, "get", 2.0, 2.1, 200, out="a", version=7)]
    try:
        check(twice)
        raise AssertionError("a value at two versions accepted")
    except Violation as e:
        assert "applied twice" in str(e), e
    # a created answer (201) while the key existed
    created = [_op(0, 1, "put", 0.0, 1.0, 201, value="a", version=3),
               _op(1, 1, "put", 2.0, 3.0, 201, value="b", version=4)]
    try:
        check(created)
        raise AssertionError("201 on an existing key accepted")
    except Violation:
        pass
    # an unknown write nobody read still explains a 200 "replaced"
    hidden = [_op(0, 1, "put", 0.0, None, value="x"),
              _op(1, 2, "put", 1.0, 2.0, 200, value="y", version=9)]
    check(hidden)
    # many concurrent unknown writes and deletes stay tractable
    many = [_op(i, i, "put", 0.01 * i, None, value="u%d" % i) for i in range(40)]
    many += [_op(40 + i, i, "del", 0.5 + 0.01 * i, None) for i in range(20)]
    many += [_op(60, 99, "get", 1.0, 1.1, 200, out="u7", version=50),
             _op(61, 99, "get", 2.0, 2.1, 404),
             _op(62, 99, "put", 3.0, 3.1, 201, value="z", version=60),
             _op(63, 98, "get", 4.0, 4.1, 200, out="u7", version=50)]  # u7 cannot come back
    try:
        check(many)
        raise AssertionError("an overwritten value coming back accepted")
    except Violation:
        pass
    many = many[:-1]
    check(many)
    # watch streams
    hist = [_op(0, 1, "put", 0.0, 1.0, 201, value="a", version=3),
            _op(1, 2, "put", 0.5, None, value="b"),                # unknown, applied
            _op(2, 1, "del", 2.0, 2.5, 200, version=9),
            _op(3, 2, "cas", 3.0, 3.5, 412, value="c", expect=1)]
    evs = [{"type": "put", "key": "k", "version": 3, "value": "a"},
           {"type": "put", "key": "k", "version": 5, "value": "b"},
           {"type": "delete", "key": "k", "version": 9}]
    assert check_watch(evs, hist, 9) == 3
    bad_streams = {
        "seen twice": evs[:2] + [evs[1]] + evs[2:],
        "out of order": [evs[1], evs[0], evs[2]],
        "missing": [evs[0], evs[1]],
        "refused write": evs + [{"type": "put", "key": "k", "version": 11, "value": "c"}],
        "wrong version": [dict(evs[0], version=4)] + evs[1:],
        "never written": evs + [{"type": "put", "key": "k", "version": 12, "value": "zz"}],
    }
    _all_refused(bad_streams, hist, 9)
    # transactions: write k1+k2 together, read them together
    def _txn(i, c, kind, call, ret, status=None, keys=("k1", "k2"), values=None, expect=None,
             succeeded=None, version=None, results=None):
        return {"id": i, "client": c, "f": "txn", "kind": kind, "keys": list(keys),
                "values": values, "expect": expect, "call": call, "ret": ret, "status": status,
                "succeeded": succeeded, "version": version, "results": results}
    rd = (lambda a, b: [{"op": "get", "value": a}, {"op": "get", "value": b}])
    th = [_op(0, 1, "put", 0.0, 1.0, 201, value="a1", version=2, key="k1"),
          _op(1, 1, "put", 1.0, 2.0, 201, value="b1", version=3, key="k2"),
          _txn(2, 2, "w", 2.0, 3.0, 200, values=["a2", "b2"], expect=2, succeeded=True,
               version=5, results=[{"op": "put", "written": True}] * 2),
          _txn(3, 3, "r", 3.5, 4.0, 200, succeeded=True, version=6, results=rd("a2", "b2")),
          _txn(4, 2, "w", 4.0, 5.0, 200, values=["a3", "b3"], expect=2, succeeded=False,
               version=7, results=rd("a2", "b2")),                  # compare failed: reads
          _txn(5, 3, "w", 5.0, None, values=["a4", "b4"]),          # unknown, applied
          _op(6, 1, "get", 6.0, 6.5, 200, out="b4", version=8, key="k2"),
          _op(7, 1, "cas", 7.0, 7.5, 200, value="a5", expect=5, key="k1")]  # a2 is gone
    tev = [{"type": "put", "key": "k1", "version": 2, "value": "a1"},
           {"type": "put", "key": "k2", "version": 3, "value": "b1"},
           {"type": "put", "key": "k1", "version": 5, "value": "a2"},
           {"type": "put", "key": "k2", "version": 5, "value": "b2"},
           {"type": "put", "key": "k1", "version": 8, "value": "a4"},
           {"type": "put", "key": "k2", "version": 8, "value": "b4"}]
    try:
        check(th)
        raise AssertionError("a cas on a version a transaction overwrote accepted")
    except Violation:
        pass
    th[7] = _op(7, 1, "cas", 7.0, 7.5, 412, value="a5", expect=5, key="k1")
    assert check(th)["txns"] == 4
    assert check_watch(tev, th, 8) == 6
    # a stale transaction read (per key)
    stale = th + [_txn(8, 4, "r", 9.0, 9.5, 200, succeeded=True, version=9,
                       results=rd("a2", "b4"))]
    try:
        check(stale)
        raise AssertionError("a stale transaction read accepted")
    except Violation as e:
        assert "key k1: not linearizable" in str(e), e
    # a torn read: each value was current at some point, but never together
    torn = [o for o in th if o["id"] != 3] + [
        _txn(3, 3, "r", 2.0, 4.0, 200, succeeded=True, version=6, results=rd("a2", "b1"))]
    check(torn)  # the per-key check cannot see it
    try:
        check_watch(tev, torn, 8)
        raise AssertionError("a torn transaction read accepted")
    except Violation as e:
        assert "the stream's state there" in str(e), e
    bad_tstreams = {
        "a transaction in part": tev[:3] + tev[4:],
        "a refused transaction's write": tev + [
            {"type": "put", "key": "k2", "version": 9, "value": "b3"}],
        "two writes at one version": tev[:2] + [dict(tev[1], key="k3", value="a1")] + tev[2:],
        "a transaction's event twice": tev[:4] + [tev[3]] + tev[4:],
    }
    _all_refused(bad_tstreams, th, 8)
    # writes whose answer was lost, settled by the watch stream: a lost
    # transaction's k1=x at v5, before y's v6, which answered 201 (created):
    # only the stream's order shows that 201 to be wrong
    lost = [_txn(0, 1, "w", 1.0, None, values=["x", "x2"]),
            _op(1, 2, "put", 1.9, 2.0, 201, value="y", version=6, key="k1"),
            _op(2, 3, "get", 2.5, 2.6, 200, out="y", version=6, key="k1")]
    wev = [{"type": "put", "key": "k1", "version": 5, "value": "x"},
           {"type": "put", "key": "k2", "version": 5, "value": "x2"},
           {"type": "put", "key": "k1", "version": 6, "value": "y"}]
    check(lost)
    try:
        check(lost, {"events": wev, "covered": 6, "gaps": []})
        raise AssertionError("a 201 after a write the stream orders first accepted")
    except Violation:
        pass
    # ...and lost writes the whole stream never saw were never written: they
    # leave the search
    nowrite = [_txn(i, i, "w", 0.01 * i, None, values=["n%d" % i, "m%d" % i], expect=i)
               for i in range(60)]
    nowrite += [_op(60 + i, 99, "put", 1.0 + i, 1.5 + i, 200 if i else 201, value="w%d" % i,
                    version=100 + i, key="k1") for i in range(3)]
    nowrite += [_op(70, 98, "get", 9.0, 9.1, 200, out="w2", version=102, key="k1")]
    wst = [{"type": "put", "key": "k1", "version": 100 + i, "value": "w%d" % i} for i in range(3)]
    r = check(nowrite, {"events": wst, "covered": 102, "gaps": []})
    assert r["never_written"] == 120, r
    print("checker self-test: ok")


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        self_test()
    elif len(sys.argv) == 2:
        with open(sys.argv[1]) as f:
            hist = json.load(f)
        # the watcher's stream, kept beside the history by nemesis.py
        wpath = os.path.join(os.path.dirname(sys.argv[1]), "watch.json")
        w = None
        if os.path.exists(wpath):
            with open(wpath) as f:
                w = json.load(f)
        try:
            summary = check(hist, w)
            if w is not None:
                summary["watch_events"] = check_watch(w["events"], hist, w["covered"],
                                                      [tuple(g) for g in w["gaps"]])
            print(json.dumps(summary))
        except Violation as e:
            print("VIOLATION: %s" % e)
            sys.exit(1)
    else:
        print("usage: checker.py HISTORY.json | --self-test", file=sys.stderr)
        sys.exit(2)
