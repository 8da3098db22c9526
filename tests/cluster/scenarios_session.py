"""Sessions and locks (issue 20, item 4): `stcache lock` holders contend
for one lock and guard a resource with the fencing token only; a holder
paused with SIGSTOP past its session TTL loses the lock, the other takes
it, and the paused one's late write is refused by the fencing check: the
resource's tokens are strictly increasing and no two holders' critical
sections interleave. A held lock survives a kill -9 of the leader (the new
leader gives the session a fresh TTL) and is released once its holder
stops renewing."""

import os
import signal
import subprocess
import sys
import threading
import time

from harness import Scenario, check, cli_env, count, log, scaled, step, wait_for

# The guarded resource: appends the holder's token to TOKENS only if it is
# greater than the last one there (the check a fencing-aware store does),
# under an flock so the check and the append are one step. Every attempt
# is recorded in LOG; "begin"/"end" bracket the critical section. With
# argument "wait" the holder says it is ready and waits for the file GO
# before writing (so the test can pause it while it holds the lock). A
# SIGTERM that arrives meanwhile is noted and the write still happens: the
# late write of a process that resumed after a pause.
HOLDER = r'''
import fcntl, os, signal, sys, time
tok = int(os.environ["STCACHE_LOCK_TOKEN"])
d = sys.argv[1]
signal.signal(signal.SIGTERM, lambda s, f: None)
def note(line):
    with open(os.path.join(d, "log"), "a") as f:
        f.write(line + "\n")
note("begin %d" % tok)
if len(sys.argv) > 2 and sys.argv[2] == "wait":
    open(os.path.join(d, "ready-%d" % tok), "w").close()
    t = time.monotonic()
    while not os.path.exists(os.path.join(d, "go")) and time.monotonic() - t < 120:
        time.sleep(0.01)
else:
    time.sleep(0.05)
with open(os.path.join(d, "tokens"), "a+") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    f.seek(0)
    toks = [int(x) for x in f.read().split()]
    if not toks or tok > toks[-1]:
        f.write("%d\n" % tok)
        note("accepted %d" % tok)
    else:
        note("refused %d after %d" % (tok, toks[-1]))
note("end %d" % tok)
'''


class LockFencing(Scenario):
    """Two holders contend, one is paused past its TTL while holding, and
    a held lock rides through a leader failover (one cluster)."""

    def run(self):
        c = self.cluster("lock_fencing")
        with step("start a 3-node cluster"):
            c.start_static(3)
            leader = c.wait_leader()
        work = os.path.join(c.dir, "res")
        os.makedirs(work)
        holder = os.path.join(c.dir, "holder.py")
        with open(holder, "w") as f:
            f.write(HOLDER)
        eps = ",".join(n.http for n in c.running())
        env = cli_env(eps)
        procs = []

        def lock(name, ttl_ms, mode="", endpoints=eps):
            p = subprocess.Popen([c.binary, "lock", name, "--ttl", str(ttl_ms), "--endpoints",
                                  endpoints, "--timeout", "2", "--", sys.executable, holder, work]
                                 + ([mode] if mode else []),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                 start_new_session=True)
            procs.append(p)
            return p

        def lines():
            with open(os.path.join(work, "log")) as f:
                return [x.split() for x in f.read().splitlines()]

        def tokens():
            with open(os.path.join(work, "tokens")) as f:
                return [int(x) for x in f.read().split()]

        try:
            with step("through a follower: create, renew (proxied to the leader), destroy"):
                f = next(n for n in c.running() if n.id != leader.id)
                r = f.request("POST", "/session", b'{"ttl_ms":5000,"name":"probe"}')
                check(r.status == 200, "POST /session: %s" % r.error_text())
                sid = r.json()["id"]
                r = f.request("PUT", "/kv/probe?session=%d" % sid, b"x")
                check(r.status == 201, "attach: %s" % r.error_text())
                r = f.request("PUT", "/session/%d/renew" % sid)
                check(r.status == 200 and r.json()["ttl_ms"] == 5000, "renew: %s" % r.error_text())
                r = leader.request("GET", "/session/%d" % sid)
                check(r.status == 200 and r.json()["keys"][0]["key"] == "probe",
                      "GET: %s" % r.error_text())
                # The leader's deadline shows once its next walk saw the session.
                wait_for("the leader's deadline", lambda: "remaining_ms" in leader.request(
                    "GET", "/session/%d" % sid).json(), timeout=scaled(10))
                r = f.request("DELETE", "/session/%d" % sid)
                check(r.status == 200, "DELETE: %s" % r.error_text())
                check(f.request("GET", "/kv/probe").status == 404, "the attached key stayed")
                r = f.request("PUT", "/session/%d/renew" % sid)
                check(r.status == 404, "renew after the end: %s" % r.error_text())
                r = f.request("PUT", "/kv/probe?session=%d" % sid, b"x")
                check(r.status == 404 and r.json()["code"] == "no_session",
                      "attach to an ended session: %s" % r.error_text())
            rounds = count(3)
            with step("two holders, %d sections each: sections never interleave" % rounds):
                def holder_loop():
                    outs = []
                    for _ in range(rounds):
                        p = lock("res", 2000)
                        out, err = p.communicate(timeout=scaled(60))
                        outs.append((p.returncode, err.decode()))
                    return outs
                results = [None, None]
                ts = [threading.Thread(target=lambda i=i: results.__setitem__(i, holder_loop()))
                      for i in range(2)]
                for t in ts:
                    t.start()
                for t in ts:
                    t.join()
                for outs in results:
                    for rc, err in outs:
                        check(rc == 0, "a holder exited %d: %s" % (rc, err[-300:]))
                ls = lines()
                check(len(ls) == 3 * 2 * rounds, "log has %d lines: %s" % (len(ls), ls))
                for i in range(0, len(ls), 3):
                    b, a, e = ls[i], ls[i + 1], ls[i + 2]
                    check(b[0] == "begin" and a[0] == "accepted" and e[0] == "end"
                          and b[1] == a[1] == e[1],
                          "interleaved sections at line %d: %s" % (i, ls[i:i + 3]))
                toks = tokens()
                check(toks == sorted(set(toks)) and len(toks) == 2 * rounds,
                      "tokens not strictly increasing: %s" % toks)
                log("tokens %s" % toks)

            with step("holder A pauses (SIGSTOP) past its TTL while holding; B takes the lock"):
                a = lock("res", 1500, "wait")
                ta = wait_for("A to hold the lock", lambda: next(
                    (int(f[6:]) for f in os.listdir(work) if f.startswith("ready-")), None),
                    timeout=scaled(30))
                os.killpg(a.pid, signal.SIGSTOP)
                b = lock("res", 1500)
                out, err = b.communicate(timeout=scaled(60))
                check(b.returncode == 0, "B exited %d: %s" % (b.returncode, err.decode()[-300:]))
                tb = tokens()[-1]
                check(tb > ta, "B's token %d not above A's %d" % (tb, ta))
                log("A holds token %d, paused; B took token %d" % (ta, tb))
            with step("A resumes: its late write is refused, it learns the lock is lost"):
                open(os.path.join(work, "go"), "w").close()
                os.killpg(a.pid, signal.SIGCONT)
                out, err = a.communicate(timeout=scaled(60))
                check(a.returncode == 5, "A exited %d, want 5 (lost): %s"
                      % (a.returncode, err.decode()[-300:]))
                check("lost" in err.decode(), "A did not say the lock was lost: %s" % err.decode())
                check(["refused", str(ta), "after", str(tb)] in lines(),
                      "A's late write was not refused: %s" % lines()[-6:])
                toks = tokens()
                check(toks == sorted(set(toks)) and toks[-1] == tb,
                      "tokens not strictly increasing: %s" % toks)

            with step("a held lock survives kill -9 of the leader"):
                os.remove(os.path.join(work, "go"))
                for f in os.listdir(work):
                    if f.startswith("ready-"):
                        os.remove(os.path.join(work, f))
                ttl = int(min(scaled(2), 4) * 1000)  # above an election, also under ASan
                leader = c.wait_leader()
                h = lock("res2", ttl, "wait")
                tc = wait_for("C to hold the lock", lambda: next(
                    (int(f[6:]) for f in os.listdir(work) if f.startswith("ready-")), None),
                    timeout=scaled(30))
                killed = time.monotonic()
                log("C holds token %d; kill -9 %r" % (tc, leader))
                leader.kill9()
                new = c.wait_leader()
                key = "/kv/locks%2Fres2"
                # Past 1.5 TTL since the kill, the lock must still be there.
                def held_long_enough():
                    r = new.request("GET", key)
                    check(r.status == 200 and r.headers.get("etag") == '"%d"' % tc,
                          "the lock vanished after the failover: %d %s" % (r.status, r.text()))
                    check(h.poll() is None, "C exited %s" % h.returncode)
                    return time.monotonic() - killed >= 1.5 * ttl / 1000
                wait_for("1.5 TTL after the kill", held_long_enough, timeout=scaled(30),
                         interval=0.1)
            with step("C stops renewing (kill -9): the lock is released, then taken again"):
                os.killpg(h.pid, signal.SIGKILL)
                h.wait()
                wait_for("the lock key to go", lambda: new.request("GET", key).status == 404,
                         timeout=scaled(30))
                r = new.request("GET", "/sessions")
                check(r.status == 200 and r.json()["sessions"] == [],
                      "sessions left: %s" % r.text())
                alive = ",".join(n.http for n in c.running())
                d = lock("res2", 2000, endpoints=alive)
                out, err = d.communicate(timeout=scaled(60))
                check(d.returncode == 0, "D exited %d: %s" % (d.returncode, err.decode()[-300:]))
                check(tokens()[-1] > tc, "D's token %d not above C's %d" % (tokens()[-1], tc))
            with step("elect: two campaigners and an observer; the leader resigns on SIGTERM"):
                def elect(*args):
                    p = subprocess.Popen([c.binary, "elect", "sched"] + list(args)
                                         + ["--endpoints", alive, "--timeout", "2"],
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                         start_new_session=True)
                    procs.append(p)
                    return p
                obs = elect("--observe")
                e1 = elect("alpha", "--ttl", "5000")
                e2 = None
                seen = {"obs": b"", "e2": b""}
                os.set_blocking(obs.stdout.fileno(), False)

                def printed(word):
                    def f():
                        for name, p in (("obs", obs), ("e2", e2)):
                            chunk = p.stdout.read() if p else None
                            if chunk:
                                seen[name] += chunk
                        return (b"leader " + word in seen["obs"]
                                and (word != b"beta" or b"leader beta" in seen["e2"]))
                    return f
                # The observer polls (at most 250 ms apart): a leadership
                # shorter than that may pass unseen, so alpha resigns only
                # once the observer has printed it.
                wait_for("the observer to print alpha", printed(b"alpha"), timeout=scaled(30))
                e2 = elect("beta", "--ttl", "5000")
                os.set_blocking(e2.stdout.fileno(), False)
                e1.send_signal(signal.SIGTERM)
                out1, err1 = e1.communicate(timeout=scaled(30))
                check(e1.returncode == 0, "alpha exited %d: %s" % (e1.returncode, err1.decode()))
                check(out1.decode().startswith("leader alpha ") and "(this process)" in out1.decode(),
                      "alpha printed %r" % out1.decode())
                wait_for("the observer and beta to print beta", printed(b"beta"),
                         timeout=scaled(30))
                o = seen["obs"].decode().splitlines()
                ia = next(i for i, x in enumerate(o) if x.startswith("leader alpha "))
                ib = next(i for i, x in enumerate(o) if x.startswith("leader beta "))
                check(ia < ib, "observer order: %s" % o)
                va, vb = int(o[ia].split()[2]), int(o[ib].split()[2])
                check(vb > va, "beta's version %d not above alpha's %d" % (vb, va))
                log("observer printed %s" % o)
        finally:
            for p in procs:
                if p.poll() is None:
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    p.wait()


SCENARIOS = {"lock_fencing": LockFencing}
