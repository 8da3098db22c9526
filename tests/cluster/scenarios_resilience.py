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


SCENARIOS = {"joiner": JoinerKilledBeforeConfig}
