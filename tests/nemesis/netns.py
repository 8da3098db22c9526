"""The nemesis's network: one network namespace per node on a bridge, and
the faults it can put on that network.

Layout (NET = 10.99.<net>.0/24, one /24 per concurrent suite):

    host namespace: bridge stnb<net> at NET.254  <- clients run here
    namespace stn<net>n<i>: eth0 at NET.<i>, a veth whose peer is on the bridge

Nodes listen on their namespace's address, so a node sees the others only
through the bridge, and every fault is a rule inside one namespace:
- partitions: iptables INPUT and OUTPUT drops by source/destination address
  (a one-way partition drops only what i receives from j);
- packet loss: iptables `statistic --mode random` drops on INPUT;
- delay and reordering: `tc qdisc netem` when the kernel has it (sch_netem),
  else a token-bucket (`tbf`) that queues packets, which gives delay under
  load but no reordering (say so in the run's summary: `netem_available`).
Clients in the host namespace are never cut off by a partition (their
address, NET.254, is excluded), so the history also records what a cut-off
node answers.
"""

import os
import subprocess

_NETEM = None


def run(args, check=True):
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(args), r.returncode, r.stderr.strip()))
    return r


def available():
    """None when namespaces, iptables and tc can be used here, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "iptables", "tc"):
        if subprocess.run(["sh", "-c", "command -v " + tool], stdout=subprocess.DEVNULL).returncode:
            return "%s not found (Debian packages iproute2, iptables: scripts/deps.sh)" % tool
    return None


class Net:
    def __init__(self, net_id, n_hosts):
        self.net_id = net_id
        self.n = n_hosts
        self.bridge = "stnb%d" % net_id
        self.host_ip = "10.99.%d.254" % net_id
        self.rules = {}  # ns -> list of iptables rule specs currently installed
        self.qdisc = set()  # namespaces with a root qdisc on eth0

    def ns(self, i):
        return "stn%dn%d" % (self.net_id, i)

    def ip(self, i):
        return "10.99.%d.%d" % (self.net_id, i)

    def exec_prefix(self, i):
        return ["ip", "netns", "exec", self.ns(i)]

    # -- lifecycle

    def setup(self):
        self.teardown()  # leftovers of a killed run
        run(["ip", "link", "add", self.bridge, "type", "bridge"])
        run(["ip", "addr", "add", self.host_ip + "/24", "dev", self.bridge])
        run(["ip", "link", "set", self.bridge, "up"])
        for i in range(1, self.n + 1):
            ns, veth = self.ns(i), "stv%dn%d" % (self.net_id, i)
            run(["ip", "netns", "add", ns])
            run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
            run(["ip", "link", "set", veth, "master", self.bridge, "up"])
            run(self.exec_prefix(i) + ["ip", "addr", "add", self.ip(i) + "/24", "dev", "eth0"])
            run(self.exec_prefix(i) + ["ip", "link", "set", "eth0", "up"])
            run(self.exec_prefix(i) + ["ip", "link", "set", "lo", "up"])
            self.rules[ns] = []

    def teardown(self):
        for i in range(1, self.n + 1):
            run(["ip", "netns", "del", self.ns(i)], check=False)
        run(["ip", "link", "del", self.bridge], check=False)

    # -- faults

    def _ipt(self, i, spec):
        run(self.exec_prefix(i) + ["iptables", "-A"] + spec)
        self.rules[self.ns(i)].append(spec)

    def drop_from(self, i, j):
        """i no longer receives what j sends (one way)."""
        self._ipt(i, ["INPUT", "-s", self.ip(j), "-j", "DROP"])

    def cut(self, i, j):
        """No packet between i and j, either way."""
        self.drop_from(i, j)
        self.drop_from(j, i)

    def partition(self, groups):
        """Every pair of nodes in different groups is cut."""
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                for i in groups[a]:
                    for j in groups[b]:
                        self.cut(i, j)

    def loss(self, i, probability):
        self._ipt(i, ["INPUT", "-m", "statistic", "--mode", "random", "--probability",
                      "%.3f" % probability, "-j", "DROP"])

    def netem_available(self):
        global _NETEM
        if _NETEM is None:
            r = run(self.exec_prefix(1) + ["tc", "qdisc", "add", "dev", "lo", "root", "netem",
                                           "delay", "1ms"], check=False)
            _NETEM = r.returncode == 0
            if _NETEM:
                run(self.exec_prefix(1) + ["tc", "qdisc", "del", "dev", "lo", "root"], check=False)
        return _NETEM

    def slow(self, i, delay_ms, jitter_ms):
        """Delay (and with netem, reorder) what i sends."""
        if self.netem_available():
            spec = ["netem", "delay", "%dms" % delay_ms, "%dms" % jitter_ms, "reorder", "25%",
                    "50%"]
        else:  # queueing delay from a slow token bucket
            spec = ["tbf", "rate", "2mbit", "burst", "32kbit", "latency", "%dms" % (delay_ms * 4)]
        run(self.exec_prefix(i) + ["tc", "qdisc", "replace", "dev", "eth0", "root"] + spec)
        self.qdisc.add(i)

    def heal(self):
        """Removes every rule and qdisc: the network is whole again."""
        for i in range(1, self.n + 1):
            if self.rules.get(self.ns(i)):
                run(self.exec_prefix(i) + ["iptables", "-F", "INPUT"], check=False)
                self.rules[self.ns(i)] = []
        for i in list(self.qdisc):
            run(self.exec_prefix(i) + ["tc", "qdisc", "del", "dev", "eth0", "root"], check=False)
        self.qdisc.clear()
