"""Issue 16 on the peer port, against real processes: what a stranger on the
network can do to the Raft port. Fake peers are Python sockets (plaintext)
or the ssl module (TLS), certificates come from scripts/gen-certs.sh at test
time. Each scenario failed before issue 16 (noted per step)."""

import os
import select
import socket
import ssl
import struct
import threading
import time

from harness import (Scenario, check, gen_certs, log, scaled, step, wait_for)

FRAME_HELLO, FRAME_HELLO_ACK = 1, 2
HELLO_MAGIC = 0x54435453


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def frame(ftype, body):
    hdr = struct.pack("<IBBH", len(body), ftype, 1, 0)
    return hdr + struct.pack("<I", crc32c(body, crc32c(hdr))) + body


def hello(cluster, frm, to, addr=b"127.0.0.1:1"):
    return frame(FRAME_HELLO, struct.pack("<IHHQQQ", HELLO_MAGIC, 1, len(addr), cluster, frm,
                                          to) + addr)


def recv_exact_or_eof(sock, n, timeout):
    """Up to n bytes, fewer if the peer closes first."""
    sock.settimeout(timeout)
    out = b""
    while len(out) < n:
        try:
            b = sock.recv(n - len(out))
        except (ConnectionError, ssl.SSLError, OSError):
            break
        if not b:
            break
        out += b
    return out


def read_ack(sock):
    """The HELLO_ACK (status, cluster_id, node_id), or None if the node
    closed without one."""
    data = recv_exact_or_eof(sock, 12 + 28, scaled(5))
    if len(data) < 40:
        return None
    magic, _ver, _res, status, cluster, node = struct.unpack("<IHHiQQ", data[12:40])
    check(magic == HELLO_MAGIC, "HELLO_ACK magic %x" % magic)
    return status, cluster, node


def raft_addr(node):
    return ("127.0.0.1", node.raft_port)


def cluster_id_of(node):
    return int(node.info()["cluster_id"], 16)


class PeerRefusalRevealsNothing(Scenario):
    """A refused HELLO tells a stranger neither the cluster id nor the node
    id, and a live link is not replaced by a stranger claiming its id."""

    def run(self):
        c = self.cluster("peer-refusal", tls=False)
        c.start_static(3)
        c.wait_members(voters=[1, 2, 3])
        n3 = c.nodes[3]
        cid = cluster_id_of(n3)
        with step("a HELLO with a wrong cluster id gets a refusal with zero ids"):
            s = socket.create_connection(raft_addr(n3), timeout=scaled(5))
            s.sendall(hello(cid ^ 0x1234, 1, 3))
            ack = read_ack(s)
            s.close()
            check(ack is not None and ack[0] < 0, "want a refusal, got %r" % (ack,))
            # before issue 16: (-18, <the real cluster id>, 3)
            check(ack[1] == 0 and ack[2] == 0,
                  "the refusal reveals cluster id %x / node id %d" % (ack[1], ack[2]))
        with step("a HELLO addressed to another node id gets the same empty refusal"):
            s = socket.create_connection(raft_addr(n3), timeout=scaled(5))
            s.sendall(hello(0, 1, 77))
            ack = read_ack(s)
            s.close()
            check(ack is not None and ack[0] < 0 and ack[1] == 0 and ack[2] == 0,
                  "refusal: %r" % (ack,))
        with step("a stranger claiming node 1 does not replace node 1's live link to node 3"):
            c.put_retry("refusal/k", "v")  # traffic on every link
            lost_before = n3.log_text().count("peer 1 (")
            for _ in range(5):
                s = socket.create_connection(raft_addr(n3), timeout=scaled(5))
                s.sendall(hello(cid, 1, 3))
                ack = read_ack(s)
                s.close()
                # before issue 16: accepted (status 0), and node 1's link closed
                check(ack is not None and ack[0] < 0, "stranger accepted as node 1: %r" % (ack,))
            text = n3.log_text()
            check("peer already connected and its link is live" in text,
                  "node 3 did not say why it refused")
            check(text.count("peer 1 (") == lost_before,
                  "node 3's link with node 1 went down or up again")
            c.put_retry("refusal/k2", "v2")


class Flood:
    """Keeps `n` idle TCP connections from 127.0.0.2 open to each target,
    reopening those the node closes, until stop()."""

    def __init__(self, targets, n):
        self.targets, self.n = targets, n
        self.socks = {t: [] for t in targets}
        self.stopping = False
        self.opened = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _open(self, t):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.2", 0))
        s.settimeout(1)
        try:
            s.connect(t)
        except OSError:
            s.close()
            return
        s.setblocking(False)
        self.socks[t].append(s)
        self.opened += 1

    def _run(self):
        while not self.stopping:
            for t in self.targets:
                while len(self.socks[t]) < self.n and not self.stopping:
                    self._open(t)
                r, _, _ = select.select(self.socks[t], [], [], 0.02)
                for s in r:
                    try:
                        data = s.recv(64)
                    except OSError:
                        data = b""
                    if not data:
                        self.socks[t].remove(s)
                        s.close()

    def stop(self):
        self.stopping = True
        self.thread.join()
        for lst in self.socks.values():
            for s in lst:
                s.close()


class PeerFlood(Scenario):
    """Idle connections from one address, renewed as fast as the node closes
    them, no longer keep a restarting peer out."""

    def run(self):
        c = self.cluster("peer-flood", tls=False)
        c.start_static(3)
        c.wait_members(voters=[1, 2, 3])
        n1 = c.nodes[1]
        with step("node 1 goes down; 100 idle connections per port flood nodes 2 and 3"):
            n1.kill9()
            c.wait_leader([c.nodes[2], c.nodes[3]])
            flood = Flood([raft_addr(c.nodes[2]), raft_addr(c.nodes[3])], 100)
            wait_for("the flood to open 200 connections", lambda: flood.opened >= 200, 30)
        try:
            with step("node 1 restarts and catches up through the flood"):
                c.put_retry("flood/k", "during the flood")
                commit = c.leader().info()["commit"]
                n1.start()
                # before issue 16: 64 idle connections filled the pending
                # limit and node 1's dials were refused as long as the flood
                # lasted.
                c.wait_caught_up(n1, commit, timeout=30)
                r = c.get_retry("flood/k", n1, consistency="stale")
                check(r.status == 200 and r.text() == "during the flood", r.error_text())
                log("flood: %d connections opened" % flood.opened)
        finally:
            flood.stop()


def tls_client_ctx(certdir, name=None, ca="ca.crt", cafile_dir=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(os.path.join(cafile_dir or certdir, ca))
    if name:
        ctx.load_cert_chain(os.path.join(certdir, name + ".crt"), os.path.join(certdir, name + ".key"))
    return ctx


def tls_attempt(node, ctx, claim, to, cid):
    """Dials node's Raft port over TLS with ctx, sends a HELLO claiming
    `claim`: "tls-refused", "closed" (no HELLO_ACK) or the ACK tuple."""
    raw = socket.create_connection(raft_addr(node), timeout=scaled(5))
    try:
        s = ctx.wrap_socket(raw)
    except (ssl.SSLError, ConnectionError, OSError) as e:
        raw.close()
        return "tls-refused: %s" % e
    try:
        s.sendall(hello(cid, claim, to))
        ack = read_ack(s)
    except (ssl.SSLError, ConnectionError, OSError) as e:
        return "closed: %s" % e
    finally:
        s.close()
    return ack if ack is not None else "closed"


def refused(res):
    return isinstance(res, str) or res[0] < 0


class PeerTlsRefusals(Scenario):
    """With mutual TLS, a fake peer without a certificate, with one of
    another CA, or with a valid one that names another node than it claims
    is refused; a fake learner added at an attacker's address never learns
    the cluster id."""

    def run(self):
        c = self.cluster("peer-tls", tls=True)
        c.start_static(3)
        c.wait_members(voters=[1, 2, 3])
        n3 = c.nodes[3]
        cid = cluster_id_of(n3)
        other = os.path.join(c.dir, "other-ca")
        gen_certs(other, "ca")
        gen_certs(other, "node", 1)
        gen_certs(c.certs, "node", 4)  # valid, from the cluster CA, but node 4's
        cases = [
            ("no certificate", tls_client_ctx(c.certs)),
            ("node 1's name from another CA", tls_client_ctx(other, "node-1", cafile_dir=c.certs)),
            ("a valid certificate of node 4 claiming node 1", tls_client_ctx(c.certs, "node-4")),
        ]
        for what, ctx in cases:
            with step("a fake peer with %s cannot connect as node 1" % what):
                # before issue 16 (no TLS at all): the handshake is plaintext
                # and a HELLO claiming node 1 was accepted.
                res = tls_attempt(n3, ctx, 1, 3, cid)
                log("%s: %s" % (what, res))
                check(refused(res), "accepted: %r" % (res,))
        with step("the real nodes still talk: a write commits everywhere"):
            c.put_retry("tls/k", "v")
            commit = c.leader().info()["commit"]
            for n in c.running():
                c.wait_caught_up(n, commit)
        with step("a learner added at an attacker's address never gets a HELLO"):
            attacker = socket.socket()
            attacker.bind(("127.0.0.1", 0))
            attacker.listen(8)
            port = attacker.getsockname()[1]
            sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            sctx.load_cert_chain(os.path.join(other, "node-1.crt"), os.path.join(other, "node-1.key"))
            got = []

            def serve():
                attacker.settimeout(scaled(10))
                try:
                    while len(got) < 3:
                        conn, _ = attacker.accept()
                        try:
                            t = sctx.wrap_socket(conn, server_side=True)
                            t.settimeout(2)
                            got.append(t.recv(4096))
                            t.close()
                        except (ssl.SSLError, OSError) as e:
                            got.append(("refused", str(e)))
                            conn.close()
                except OSError:
                    pass

            th = threading.Thread(target=serve, daemon=True)
            th.start()
            leader = c.leader()
            r = leader.request("POST", "/cluster/members",
                               body=b'{"id":9,"raft":"127.0.0.1:%d"}' % port,
                               headers={"Content-Type": "application/json"})
            log("add learner 9 at the attacker: %d %s" % (r.status, r.text()[:100]))
            th.join(scaled(15))
            attacker.close()
            log("attacker saw: %r" % (got,))
            check(got, "the leader never dialed the attacker")
            for g in got:
                # before issue 16: the first bytes were a HELLO with the cluster id
                check(isinstance(g, tuple) or struct.pack("<Q", cid) not in g,
                      "the attacker learned the cluster id: %r" % (g,))


def cert_der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


class PeerTlsRotation(Scenario):
    """Certificates rotated with SIGHUP under continuous writes: no
    acknowledged write is lost, a bad file is refused and the old
    certificate kept, and new connections get the new certificates."""

    def run(self):
        c = self.cluster("peer-tls-rotation", tls=True)
        c.start_static(3)
        c.wait_members(voters=[1, 2, 3])
        acked = {}
        errors = []
        stop = threading.Event()

        def writer():
            i = 0
            while not stop.is_set():
                key, value = "rot/%d" % i, "value %d" % i
                try:
                    r = c.leader().put(key, value, timeout=scaled(5))
                    if r.status in (200, 201, 204):
                        acked[key] = value
                except Exception as e:  # a leader change: retried with the next key
                    errors.append(str(e))
                i += 1

        th = threading.Thread(target=writer, daemon=True)
        th.start()
        try:
            wait_for("some writes", lambda: len(acked) >= 50, 30)
            with step("a bad certificate file is refused on SIGHUP and the old one kept"):
                n2 = c.nodes[2]
                crt = os.path.join(c.certs, "node-2.crt")
                with open(crt) as f:
                    good = f.read()
                with open(crt, "w") as f:
                    f.write("not a certificate\n")
                n2.proc.send_signal(1)
                wait_for("node 2 to refuse the bad file",
                         lambda: "certificates NOT reloaded" in n2.log_text(), 30)
                check(n2.running(), "node 2 died on SIGHUP")
                with open(crt, "w") as f:
                    f.write(good)
            with step("new certificates for every node, SIGHUP to all three"):
                old_der = cert_der(os.path.join(c.certs, "node-1.crt"))
                for n in c.running():
                    gen_certs(c.certs, "node", n.id)
                for n in c.running():
                    n.proc.send_signal(1)
                for n in c.running():
                    wait_for("%r to reload" % n,
                             lambda n=n: "SIGHUP: certificates reloaded" in n.log_text(), 30)
                n0 = len(acked)
                wait_for("more writes after the rotation", lambda: len(acked) >= n0 + 50, 30)
            with step("a new connection to node 1 is served the new certificate"):
                ctx = tls_client_ctx(c.certs, "node-3")
                raw = socket.create_connection(raft_addr(c.nodes[1]), timeout=scaled(5))
                s = ctx.wrap_socket(raw)
                der = s.getpeercert(binary_form=True)
                s.close()
                check(der == cert_der(os.path.join(c.certs, "node-1.crt")) and der != old_der,
                      "node 1 still serves its old certificate")
            with step("node 3 restarts with its new certificate and rejoins"):
                c.nodes[3].stop()
                c.nodes[3].start()
                n0 = len(acked)
                wait_for("more writes", lambda: len(acked) >= n0 + 50, 30)
        finally:
            stop.set()
            th.join(scaled(10))
        with step("every acknowledged write is present on every node"):
            log("%d writes acknowledged, %d client errors (leader changes)" % (len(acked), len(errors)))
            commit = c.leader().info()["commit"]
            for n in c.running():
                c.wait_caught_up(n, commit)
            missing = [k for k, v in acked.items()
                       if (lambda r: r.status != 200 or r.text() != v)(c.get_retry(k, c.leader()))]
            check(not missing, "lost acknowledged writes: %s" % missing[:10])
            for n in c.running():
                for k in list(acked)[::max(1, len(acked) // 50)]:
                    r = n.get(k, consistency="stale")
                    check(r.status == 200 and r.text() == acked[k], "%r lacks %s" % (n, k))


SCENARIOS = {
    "peer_refusal": PeerRefusalRevealsNothing,
    "peer_flood": PeerFlood,
    "peer_tls_refusals": PeerTlsRefusals,
    "peer_tls_rotation": PeerTlsRotation,
}
