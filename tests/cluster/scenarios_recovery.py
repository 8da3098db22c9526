"""Recovery: a lost quorum (--force-new-cluster on the survivor)."""

import os

from harness import Scenario, check, count, log, step, wait_for
from scenarios_ops import VersionedWriter


def check_acked(c, acked, via):
    """Every acknowledged write is readable through via with its value and
    version (the ETag is the index it was applied at)."""
    for key, (version, value, _) in sorted(acked.items()):
        r = c.get_retry(key, via)
        check(r.status == 200 and r.text() == value and r.headers.get("etag") == '"%d"' % version,
              "%s via %r: %s etag %s, want %r at %d"
              % (key, via, r.error_text(), r.headers.get("etag"), value, version))


class ForceNewCluster(Scenario):
    """A 3-node cluster under writes loses two nodes with their disks
    (kill -9, data directories wiped). The survivor, restarted with
    --force-new-cluster, keeps every acknowledged write (value and version)
    and the cluster id, leads alone; killed again and restarted without the
    flag, it still leads alone (the forced configuration is in its WAL); two
    fresh nodes join and the cluster serves writes again."""

    def run(self):
        c = self.cluster("force")
        with step("a 3-node cluster under a continuous writer through every node"):
            c.start_bootstrap_and_join(3)
            c.wait_members(voters=[1, 2, 3])
            w = VersionedWriter(c, "fc")
            w.start()
            wait_for("writes acknowledged", lambda: len(w.acked) >= count(300))
        leader = c.leader()
        survivor = [n for n in c.running() if n is not leader][0]
        cid = survivor.info()["cluster_id"]
        with step("kill -9 the leader and the other follower, wipe their disks"):
            lost = [n for n in c.running() if n is not survivor]
            for n in lost:
                n.kill9()
            acked = w.stop()
            for n in lost:
                c.retire(n)
                n.wipe()
                check(not os.path.exists(n.data_dir), "%s still exists" % n.data_dir)
            log("survivor %r; %d writes acknowledged; lost %s" % (survivor, len(acked), lost))
        with step("the survivor alone cannot serve writes"):
            r = survivor.put("fc/blocked", "x", timeout=30)
            check(r.status == 503, "a write without a quorum: %s" % r.error_text())
        with step("--force-new-cluster: the survivor leads alone, same cluster id"):
            survivor.stop()
            survivor.start(extra=["--force-new-cluster"])
            c.wait_leader([survivor])
            c.wait_members(voters=[survivor.id])
            info = survivor.info()
            check(info["cluster_id"] == cid, "cluster id %r, was %r" % (info["cluster_id"], cid))
            check("--force-new-cluster" in survivor.log_text(), "no trace of the forced start")
        with step("every write acknowledged before the loss is there, with its version"):
            check_acked(c, acked, survivor)
            log("%d acknowledged writes compared" % len(acked))
        with step("kill -9 and restart without the flag: still alone, still leading"):
            v = c.put_retry("fc/after-force", "1", via=survivor)
            survivor.kill9()
            survivor.start()
            c.wait_leader([survivor])
            c.wait_members(voters=[survivor.id])
            r = c.get_retry("fc/after-force", survivor)
            check(r.status == 200 and r.headers.get("etag") == '"%d"' % v, r.error_text())
        with step("two fresh nodes join through the survivor"):
            for i in (4, 5):
                c.new_node(i).start(["--join", survivor.http])
                c.wait_members(voters=[survivor.id] + list(range(4, i + 1)))
            c.wait_leader()
        with step("the cluster serves writes; the new members hold every acknowledged write"):
            for i in range(count(20)):
                c.put_retry("fc/new/%d" % i, "n%d" % i)
            check_acked(c, acked, c.nodes[5])
            r = c.get_retry("fc/new/%d" % (count(20) - 1), c.nodes[4])
            check(r.status == 200, "read back: %s" % r.error_text())
        with step("a restart of the survivor among the new members works"):
            survivor.stop()
            survivor.start()
            c.wait_leader()
            c.wait_members(voters=[survivor.id, 4, 5])
            c.put_retry("fc/last", "z", via=survivor)
            c.verify_identical()


class GracefulStopCommit(Scenario):
    """A node stopped with SIGTERM right after acknowledging writes writes
    the commit index its WAL lacked: restarted alone (no quorum, no leader
    to repeat the commit), it serves every write it acknowledged."""

    def run(self):
        c = self.cluster("stopcommit")
        with step("a 3-node cluster; writes acknowledged by the leader"):
            c.start_bootstrap_and_join(3)
            c.wait_members(voters=[1, 2, 3])
            leader = c.leader()
            versions = {}
            for i in range(count(50)):
                versions["sc/%d" % i] = c.put_retry("sc/%d" % i, "v%d" % i, via=leader)
        with step("SIGTERM the leader at once, then the others"):
            check(leader.stop() == 0, "%r did not stop cleanly" % leader)
            for n in c.running():
                n.stop()
        with step("restarted alone, the leader serves every write it acknowledged"):
            leader.start()
            wait_for("%r to apply its commit index" % leader,
                     lambda: (lambda i: i and i["applied"] >= i["commit"])(leader.info()))
            for key, v in sorted(versions.items()):
                r = leader.get(key, consistency="stale")
                check(r.status == 200 and r.headers.get("etag") == '"%d"' % v,
                      "%s: %s (applied %d)" % (key, r.error_text(), leader.info()["applied"]))


SCENARIOS = {"force_new_cluster": ForceNewCluster, "graceful_stop_commit": GracefulStopCommit}
