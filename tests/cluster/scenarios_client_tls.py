"""Client-port TLS (issue 16 item 1): HTTPS with client-certificate
authentication. Who is refused (plain HTTP, no certificate, a certificate of
another CA), what goes through (a write and an admin request forwarded by a
follower, which presents its node certificate to the leader), and
certificate rotation with SIGHUP under load."""

import os
import socket
import ssl
import threading

import harness
from harness import (Scenario, check, gen_certs, log, retry_503, scaled, step, wait_for)
from scenarios_membership import wait_transferred


def recv_all(sock):
    """Everything sock receives until the other side closes."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def https_get(node, ctx, path="/kv/ctls/a"):
    """One GET over TLS with ctx (a raw socket: the harness's own context is
    not used). Returns the status line, or raises ssl.SSLError/OSError when
    the server refuses the handshake or drops the connection."""
    raw = socket.create_connection(("127.0.0.1", node.http_port), timeout=scaled(5))
    try:
        s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                   % path).encode())
        return recv_all(s).split(b"\r\n", 1)[0].decode("latin-1")
    finally:
        raw.close()


def refused(node, ctx):
    """True when a TLS client with ctx gets no HTTP answer from node."""
    try:
        line = https_get(node, ctx)
    except (ssl.SSLError, OSError) as e:
        log("refused as expected: %s: %s" % (type(e).__name__, e))
        return True
    log("answered: %r" % line)
    return line == ""


def client_ctx(cafile, cert=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile)
    if cert:
        ctx.load_cert_chain(*cert)
    return ctx


class ClientTlsRefusals(Scenario):
    """With --client-cert-auth: plain HTTP, a client without a certificate
    and one whose certificate another CA signed get nothing; a client with a
    certificate of the cluster CA is served, and so are a write and an admin
    request sent to a follower (the follower forwards the write over the
    mutual-TLS peer link and proxies the admin request to the leader over
    HTTPS with its node certificate)."""

    def run(self):
        c = self.cluster("client-tls", tls=True, client_tls=True)
        leader = c.start_bootstrap_and_join(3)
        ca = os.path.join(c.certs, "ca.crt")
        other = os.path.join(c.dir, "other-ca")
        gen_certs(other, "ca")
        gen_certs(other, "client", "mallory")
        r = retry_503(lambda: leader.put("ctls/a", "secret"))
        check(r.status in (200, 201, 204), "put: %s" % r.error_text())

        with step("/cluster shows the addresses as https:// URLs"):
            info = leader.info()
            check(info["leader_url"] == "https://" + leader.http, "leader_url: %r" % info)
            check(all(m["url"] == "https://" + m["http"] for m in info["members"]),
                  "members' url: %r" % info["members"])

        with step("plain HTTP to the TLS port: 400 that says so, no data"):
            s = socket.create_connection(("127.0.0.1", leader.http_port), timeout=scaled(5))
            s.sendall(b"GET /kv/ctls/a HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            data = recv_all(s)
            s.close()
            check(data.startswith(b"HTTP/1.1 400") and b"https://" in data,
                  "plain HTTP answer: %r" % data[:200])
            check(b"secret" not in data, "plain HTTP got the value")

        with step("a client with a certificate of the cluster CA is served"):
            line = https_get(leader, client_ctx(ca, c.client_cert("alice")))
            check(line.startswith("HTTP/1.1 200"), "with a good certificate: %r" % line)

        with step("no client certificate: refused"):
            check(refused(leader, client_ctx(ca)), "served without a client certificate")

        with step("a client certificate of another CA: refused"):
            cert = (os.path.join(other, "client-mallory.crt"),
                    os.path.join(other, "client-mallory.key"))
            check(refused(leader, client_ctx(ca, cert)), "served a certificate of another CA")

        with step("a server certificate the client does not trust: the client refuses"):
            try:
                https_get(leader, client_ctx(os.path.join(other, "ca.crt"),
                                             c.client_cert("alice")))
                check(False, "the client accepted a server certificate of an untrusted CA")
            except ssl.SSLCertVerificationError as e:
                log("client refused: %s" % e)

        followers = [n for n in c.running() if n.id != leader.id]
        with step("a write through a follower (forwarded to the leader) works"):
            r = retry_503(lambda: followers[0].put("ctls/fwd", "through a follower"))
            check(r.status in (200, 201, 204), "put via follower: %s" % r.error_text())
            r = leader.get("ctls/fwd")
            check(r.status == 200 and r.text() == "through a follower", "read back: %s" % r.text())

        with step("an admin request to a follower is proxied to the leader over HTTPS"):
            target = followers[1]
            term_before = leader.info()["term"]
            r = retry_503(lambda: followers[0].request("POST", "/cluster/transfer?to=%d"
                                                       % target.id))
            check(200 <= r.status < 300, "transfer via follower: %s" % r.error_text())
            wait_transferred(c, target, term_before)
            check("TLS with a client failed" not in leader.log_text(), "the proxy failed TLS")


class ClientTlsRotation(Scenario):
    """The client-port certificates rotated with SIGHUP under continuous
    writes (new connections and a keep-alive one): every request is
    answered, a bad file is refused and the old certificate kept, and new
    connections get the new certificate."""

    def run(self):
        c = self.cluster("client-tls-rotation", tls=True, client_tls=True)
        c.start_static(3)
        c.wait_members(voters=[1, 2, 3])
        leader = c.wait_leader()
        acked, failures = {}, []
        stop = threading.Event()

        def writer(name, keepalive):
            conn = harness.KeepAlive(leader.http) if keepalive else None
            i = 0
            while not stop.is_set():
                key, value = "rot/%s/%d" % (name, i), "value %d" % i
                path = harness.kv_path(key)
                try:
                    if conn:
                        r = conn.request("PUT", path, body=value)
                    else:
                        r = leader.request("PUT", path, body=value, timeout=scaled(5))
                    if r.status in (200, 201, 204):
                        acked[key] = value
                    else:
                        failures.append("%s: HTTP %d %s" % (key, r.status, r.error_text()))
                except Exception as e:  # noqa: BLE001 (any failure is a lost request)
                    failures.append("%s: %s" % (key, e))
                i += 1
            if conn:
                conn.close()

        threads = [threading.Thread(target=writer, args=(n, ka), daemon=True)
                   for n, ka in (("fresh", False), ("keepalive", True))]
        for t in threads:
            t.start()
        try:
            wait_for("some writes", lambda: len(acked) >= 50, 30)
            crt = os.path.join(c.certs, "node-%d.crt" % leader.id)
            with step("a bad certificate file is refused on SIGHUP and the old one kept"):
                with open(crt) as f:
                    good = f.read()
                with open(crt, "w") as f:
                    f.write("not a certificate\n")
                leader.proc.send_signal(1)
                wait_for("the leader to refuse the bad file",
                         lambda: "certificates NOT reloaded" in leader.log_text(), 30)
                check(leader.running(), "the leader died on SIGHUP")
                with open(crt, "w") as f:
                    f.write(good)
                n0 = len(acked)
                wait_for("writes go on over new connections", lambda: len(acked) >= n0 + 50, 30)
            with step("a new certificate for the leader, SIGHUP, writes go on"):
                old_der = ssl.PEM_cert_to_DER_cert(good)
                gen_certs(c.certs, "node", leader.id)
                leader.proc.send_signal(1)
                wait_for("the leader to reload", lambda: "client TLS certificates reloaded"
                         in leader.log_text(), 30)
                n0 = len(acked)
                wait_for("more writes after the rotation", lambda: len(acked) >= n0 + 50, 30)
            with step("a new connection is served the new certificate"):
                raw = socket.create_connection(("127.0.0.1", leader.http_port), timeout=scaled(5))
                s = c.client_ssl_context().wrap_socket(raw, server_hostname="127.0.0.1")
                der = s.getpeercert(binary_form=True)
                s.close()
                with open(crt) as f:
                    check(der == ssl.PEM_cert_to_DER_cert(f.read()) and der != old_der,
                          "the leader still serves its old certificate")
        finally:
            stop.set()
            for t in threads:
                t.join(scaled(10))
        with step("every request was answered, every acknowledged write is there"):
            log("%d writes acknowledged, %d failed" % (len(acked), len(failures)))
            check(not failures, "requests lost during the rotation: %s" % failures[:5])
            missing = [k for k, v in acked.items()
                       if (lambda r: r.status != 200 or r.text() != v)(leader.get(k))]
            check(not missing, "lost acknowledged writes: %s" % missing[:10])


SCENARIOS = {
    "client_tls_refusals": ClientTlsRefusals,
    "client_tls_rotation": ClientTlsRotation,
}
