"""Membership changes on a live cluster: a learner that is added but never
catches up, a joiner that is promoted automatically, removal of a voter and
of the leader, leadership transfer."""

from harness import (Scenario, check, log, retry_503, step, wait_for)


def write_some(c, prefix, n, ledger, via=None):
    for i in range(n):
        key = "%s/%03d" % (prefix, i)
        c.put_retry(key, "%s-%d" % (prefix, i), via=via)
        ledger[key] = "%s-%d" % (prefix, i)


def wait_transferred(c, target, term_before):
    """After a transfer answered 2xx: target's /cluster says it leads (or, on
    a loaded machine, a later election already moved leadership on)."""
    def done():
        i = target.info()
        return i and ((i["leader"] == target.id and i["role"] == "leader")
                      or i["term"] > term_before + 1)
    wait_for("node %d to lead after the transfer" % target.id, done)
    c.wait_leader()


class Membership(Scenario):
    def run(self):
        c = self.cluster("membership")
        ledger = {}
        with step("3-node cluster"):
            leader = c.start_bootstrap_and_join(3)
            write_some(c, "m/a", 10, ledger)

        with step("POST /cluster/members adds node 5 as a learner (no process: it stays one)"):
            spare = c.new_node(5)  # ports reserved, never started
            body = '{"id":5,"raft":"%s","http":"%s"}' % (spare.raft, spare.http)
            follower = next(n for n in c.running() if n.id != leader.id)
            r = retry_503(lambda: follower.request("POST", "/cluster/members", body=body,
                                 headers={"Content-Type": "application/json"}))
            check(200 <= r.status < 300, "add learner through a follower: %s" % r.error_text())
            c.wait_members(voters=[1, 2, 3], learners=[5])
            write_some(c, "m/b", 10, ledger)  # the learner does not count for the quorum
            c.wait_members(voters=[1, 2, 3], learners=[5])
            r = retry_503(lambda: leader.request("POST", "/cluster/members", body=body,
                               headers={"Content-Type": "application/json"}))
            log("adding node 5 again answers %d %s" % (r.status, r.text()[:200]))
            check(r.status < 500 or r.status == 503, "adding an existing member: %s" % r.error_text())
            r = retry_503(lambda: leader.request("DELETE", "/cluster/members/5"))
            check(200 <= r.status < 300, "remove learner 5: %s" % r.error_text())
            c.nodes.pop(5)
            c.wait_members(voters=[1, 2, 3])

        with step("node 4 joins and is promoted to voter automatically once caught up"):
            n4 = c.new_node(4).start(["--join", follower.http])
            c.wait_members(voters=[1, 2, 3, 4])
            write_some(c, "m/c", 10, ledger, via=n4)

        with step("remove a voter (a follower) through another follower"):
            leader = c.wait_leader()
            victim = next(n for n in c.running() if n.id not in (leader.id, 4))
            via = next(n for n in c.running() if n.id not in (leader.id, victim.id))
            victim.expected_alive = False  # a removed node may shut itself down
            r = retry_503(lambda: via.request("DELETE", "/cluster/members/%d" % victim.id))
            check(200 <= r.status < 300, "remove voter %d: %s" % (victim.id, r.error_text()))
            c.retire(victim)
            c.wait_members(voters=sorted(c.nodes))
            write_some(c, "m/d", 10, ledger)

        with step("remove the leader: it steps down and the others elect a new one"):
            old = c.wait_leader()
            old.expected_alive = False  # a removed node may shut itself down
            r = retry_503(lambda: old.request("DELETE", "/cluster/members/%d" % old.id))
            check(200 <= r.status < 300, "remove the leader %d: %s" % (old.id, r.error_text()))
            rest = [n for n in c.running() if n is not old]
            new = c.wait_leader(nodes=rest, exclude=(old.id,))
            c.retire(old)
            c.wait_members(voters=sorted(c.nodes))
            log("leader %d removed; node %d leads %s" % (old.id, new.id, sorted(c.nodes)))
            write_some(c, "m/e", 10, ledger)

        with step("add a third voter back, then transfer leadership around"):
            n6 = c.new_node(6).start(["--join", c.wait_leader().http])
            c.wait_members(voters=sorted(c.nodes))
            for _ in range(2):
                leader = c.wait_leader()
                target = next(n for n in sorted(c.running(), key=lambda n: n.id)
                              if n.id != leader.id)
                term_before = leader.info()["term"]
                r = retry_503(lambda: leader.request("POST", "/cluster/transfer?to=%d" % target.id))
                check(200 <= r.status < 300, "transfer %d -> %d: %s"
                      % (leader.id, target.id, r.error_text()))
                wait_transferred(c, target, term_before)
                write_some(c, "m/f%d" % target.id, 5, ledger, via=n6)
            r = c.wait_leader().request("POST", "/cluster/transfer?to=99")
            check(400 <= r.status < 500, "transfer to a non-member: %s" % r.error_text())

        with step("every write is on every remaining node"):
            c.verify_ledger(ledger)


SCENARIOS = {"membership": Membership}
