"""Runtime resilience (issue 14): what used to wedge or stop a node under
ordinary operational mistakes and faults."""

from harness import (Scenario, check, log, reserve_ports, step, wait_for)


class JoinerKilledBeforeConfig(Scenario):
    """A node that joined and was killed before its first append or
    snapshot arrived comes back from its data directory and catches up.
    Before the fix it restarted with no configuration and refused every peer
    ("handshake refused: unknown peer id") forever."""

    def run(self):
        c = self.cluster("joiner")
        ledger = {}
        with step("3-node cluster with some writes"):
            leader = c.start_bootstrap_and_join(3)
            for i in range(20):
                c.put_retry("j/%02d" % i, "v%d" % i)
                ledger["j/%02d" % i] = "v%d" % i

        with step("node 4 joins, advertising a Raft address nobody listens on yet"):
            (adv_port,) = reserve_ports(1)
            n4 = c.new_node(4)
            adv = "127.0.0.1:%d" % adv_port
            n4.start(["--join", leader.http, "--advertise-raft", adv])
            c.wait_members(voters=[1, 2, 3], learners=[4], nodes=[leader])
            wait_for("node 4 serving /cluster", n4.info)
            info = n4.info()
            check(info["applied"] == 0 and not info["members"],
                  "node 4 must not have learnt anything yet: %r" % info)

        with step("kill -9 node 4 before anything reached it; restart it on that address"):
            n4.kill9()
            n4.raft_port = adv_port
            n4.raft = adv
            n4.start([])
            c.wait_members(voters=[1, 2, 3, 4])
            log("node 4 caught up and was promoted after its restart")

        with step("writes through the restarted joiner; every node has every write"):
            for i in range(10):
                c.put_retry("j/b%02d" % i, "w%d" % i, via=n4)
                ledger["j/b%02d" % i] = "w%d" % i
            c.verify_ledger(ledger)




class ProbesDuringSnapshots(Scenario):
    """GET /livez answers 200 whenever the loop runs, and GET /readyz (and
    /health, its alias) stays 200 on a serving follower while it writes
    snapshots under write load. Before: no /livez at all, and /health, the
    only probe, answered 503 whenever a commit had arrived but was not yet
    applied, which a snapshot made likely: a liveness probe on it restarts
    healthy nodes."""

    def run(self):
        import threading
        from harness import KeepAlive, kv_path
        c = self.cluster("probes")
        with step("3-node cluster; writers on the leader"):
            leader = c.start_bootstrap_and_join(3)
            follower = next(n for n in c.running() if n.id != leader.id)
            stop = threading.Event()
            acked = {}

            def writer(w):
                conn = KeepAlive(leader.http)
                i = 0
                try:
                    while not stop.is_set():
                        key = "p/%d/%d" % (w, i)
                        r = conn.request("PUT", kv_path(key), body=b"v" * 200)
                        if r.status in (200, 201):
                            acked[key] = "v" * 200
                        i += 1
                finally:
                    conn.close()
            writers = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(4)]
            for t in writers:
                t.start()
            wait_for("some writes", lambda: len(acked) > 500 or None)

        with step("snapshots on the follower while its probes are polled"):
            seen = {"livez": {}, "readyz": {}, "health": {}}
            conn = KeepAlive(follower.http)
            for round_ in range(6):
                r = follower.request("POST", "/snapshot")
                check(r.status == 200, "POST /snapshot: %s" % r.error_text())
                for _ in range(30):
                    for probe in seen:
                        pr = conn.request("GET", "/" + probe)
                        reason = pr.json().get("reason") if pr.status == 503 else None
                        key = (pr.status, reason)
                        seen[probe][key] = seen[probe].get(key, 0) + 1
            conn.close()
            stop.set()
            for t in writers:
                t.join()
            log("probe answers on node %d during snapshots: %r" % (follower.id, seen))
            check(set(seen["livez"]) == {(200, None)}, "/livez must always be 200: %r" % seen)
            for probe in ("readyz", "health"):
                bad = {k: v for k, v in seen[probe].items()
                       if k != (200, None) and k != (503, "no_leader")}
                check(not bad, "/%s must stay 200 on a serving follower: %r" % (probe, seen))

        with step("every acknowledged write is everywhere"):
            c.verify_ledger(acked)


SCENARIOS = {"joiner": JoinerKilledBeforeConfig, "probes": ProbesDuringSnapshots}
