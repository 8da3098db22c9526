"""Issue 16, items 4 and 5 on real processes: requests a web page could make
(CSRF, DNS rebinding) and the seed's state-changing GETs are refused;
connection floods from one address or of idle connections lock nobody out;
a malformed answer from a proxied upstream (a 1xx) becomes a 502 and the
node keeps running. docs/SECURITY.md describes each defence."""

import json
import resource
import select
import socket
import threading

from harness import (Scenario, check, log, reserve_ports, retry_503, scaled, step, wait_for)


def read_head(s):
    """Bytes from s until the end of an HTTP head (or EOF)."""
    out = b""
    while b"\r\n\r\n" not in out:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    return out


def raw_status(addr, data, timeout=None, source=None):
    """Sends raw request bytes on a fresh connection; returns (status, text)
    of the answer, or (None, b"") when the server closed without one."""
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout or scaled(10),
                                 source_address=(source, 0) if source else None)
    try:
        s.sendall(data)
        head, _, body = read_head(s).partition(b"\r\n\r\n")
        parts = head.split(b" ", 2)
        if len(parts) < 2 or not head.startswith(b"HTTP/1."):
            return None, b""
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                want = int(line.split(b":", 1)[1])
                while len(body) < want:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    body += chunk
        return int(parts[1]), body
    finally:
        s.close()


def members(node):
    info = node.info()
    check(info is not None, "%r: /cluster unreachable" % node)
    return sorted(m["id"] for m in info["members"])


class WebGuards(Scenario):
    """CSRF, DNS rebinding and the seed GETs against a loopback node."""

    def run(self):
        c = self.cluster("webguards")
        with step("bootstrap one node on 127.0.0.1 (no --seed-api, no --allowed-hosts)"):
            n = c.new_node(1).start(["--bootstrap"])
            c.wait_leader([n])
            before = members(n)
        body = json.dumps({"id": 7, "raft": "127.0.0.1:9", "http": "127.0.0.1:10"})
        host = "Host: %s\r\n" % n.http

        def post_members(extra):
            req = ("POST /cluster/members HTTP/1.1\r\n%s%sContent-Length: %d\r\n"
                   "Connection: close\r\n\r\n%s" % (host if "Host:" not in extra else "", extra,
                                                  len(body), body))
            return raw_status(n.http, req.encode())

        with step("a text/plain POST (an HTML form's or a no-cors fetch's) is refused: 415"):
            st, text = post_members("Content-Type: text/plain\r\n")
            check(st == 415, "text/plain POST /cluster/members: %s %r" % (st, text))
            st, text = post_members("Content-Type: application/x-www-form-urlencoded\r\n")
            check(st == 415, "form POST /cluster/members: %s %r" % (st, text))
            st, text = post_members("")
            check(st == 415, "POST /cluster/members without Content-Type: %s %r" % (st, text))
        with step("a foreign Origin is refused: 403"):
            st, text = post_members("Content-Type: application/json\r\n"
                                    "Origin: http://evil.example\r\n")
            check(st == 403 and b"forbidden_origin" in text,
                  "POST with a foreign Origin: %s %r" % (st, text))
            st, text = post_members("Content-Type: application/json\r\nOrigin: null\r\n")
            check(st == 403, "POST with Origin: null: %s %r" % (st, text))
        with step("a foreign Host (DNS rebinding) is refused: 403, also for reads"):
            st, text = post_members("Host: evil.example:%d\r\nContent-Type: application/json\r\n"
                                    % n.http_port)
            check(st == 403 and b"forbidden_host" in text, "foreign Host POST: %s %r" % (st, text))
            st, text = raw_status(n.http, ("GET /kv/x HTTP/1.1\r\nHost: evil.example:%d\r\n"
                                           "Connection: close\r\n\r\n" % n.http_port).encode())
            check(st == 403, "foreign Host GET: %s %r" % (st, text))
        with step("the seed's GET /set and GET /join are refused without --seed-api"):
            r = n.request("GET", "/set?key=csrf&value=1")
            check(r.status == 403, "GET /set: %s" % r.error_text())
            r = n.request("GET", "/join?peerAddress=127.0.0.1:9&id=8")
            check(r.status == 403, "GET /join: %s" % r.error_text())
        with step("nothing changed: no member added, no key written"):
            check(members(n) == before, "members changed: %r -> %r" % (before, members(n)))
            r = n.get("csrf")
            check(r.status == 404, "GET /kv/csrf: %s" % r.error_text())
        with step("the same requests from a same-origin client are served"):
            st, text = post_members("Content-Type: application/json\r\n"
                                    "Origin: http://%s\r\n" % n.http)
            check(st == 200, "same-origin JSON POST /cluster/members: %s %r" % (st, text))
            r = n.request("GET", "/cluster", headers={"Host": "localhost:%d" % n.http_port})
            check(r.status == 200, "Host localhost:PORT: %s" % r.error_text())
            check(7 in members(n), "member 7 not added")


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def get_k(n, source="127.0.0.1"):
    return raw_status(n.http, ("GET /kv/k HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                               % n.http).encode(), source=source)


def open_idle(n, count, source):
    """Opens count idle connections to node n from the source address and
    sorts them into the admitted (still open, returned) and the refused
    (answered 503 and closed, counted). A request on a later connection is
    the synchronisation point: the server accepted (and refused, with a
    write at accept) every earlier connection before it answers it."""
    host, port = n.http.rsplit(":", 1)
    socks = [socket.create_connection((host, int(port)), timeout=scaled(10),
                                      source_address=(source, 0)) for _ in range(count)]
    st, _ = get_k(n)
    check(st in (200, 503), "sync request: %s" % st)
    poller = select.poll()
    by_fd = {}
    for s in socks:
        poller.register(s.fileno(), select.POLLIN)
        by_fd[s.fileno()] = s
    readable = {fd for fd, _ in poller.poll(0)}
    admitted, refused = [], 0
    for s in socks:
        if s.fileno() not in readable:
            admitted.append(s)
            continue
        data = s.recv(4096)
        check(data == b"" or b" 503 " in data.split(b"\r\n", 1)[0], "refusal: %r" % data[:80])
        refused += 1
        s.close()
    return admitted, refused


def metric(n, name):
    r = n.request("GET", "/metrics")
    for line in r.text().splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    raise AssertionError("metric %s missing" % name)


class ConnFlood(Scenario):
    """1,100 idle connections do not lock out another client."""

    def run(self):
        FLOOD = 1100
        if raise_nofile(2 * FLOOD + 200) < 2 * FLOOD + 100:
            log("SKIP: needs %d file descriptors" % (2 * FLOOD + 100))
            return
        c = self.cluster("connflood", ["--log-level", "warn", "--max-conns-per-ip", "100"])
        n = c.new_node(1).start(["--bootstrap"])
        c.wait_leader([n])
        r = retry_503(lambda: n.put("k", "v"))
        check(r.status in (200, 201), "PUT: %s" % r.error_text())
        held = []
        try:
            with step("%d idle connections from 127.0.0.2: at most 100 are kept" % FLOOD):
                admitted, refused = open_idle(n, FLOOD, "127.0.0.2")
                held += admitted
                log("admitted %d, refused %d" % (len(admitted), refused))
                check(len(admitted) == 100 and refused == FLOOD - 100,
                      "per-address share: admitted %d refused %d" % (len(admitted), refused))
                check(metric(n, "stcache_http_connections_rejected_per_ip_total") == FLOOD - 100,
                      "per-address refusals not counted")
            with step("another address is served during the flood"):
                st, body = get_k(n)
                check(st == 200 and body == b"v", "GET from 127.0.0.1: %s %r" % (st, body))
            with step("idle connections from 11 addresses fill the 1,024 places: the one "
                      "idle longest makes room for a new client"):
                for i in range(3, 13):
                    admitted, refused = open_idle(n, 100, "127.0.0.%d" % i)
                    held += admitted
                for attempt in range(5):
                    st, body = get_k(n)
                    check(st == 200 and body == b"v",
                          "GET %d at the connection cap: %s %r" % (attempt, st, body))
                evicted = metric(n, "stcache_http_idle_evicted_total")
                log("idle connections closed to make room: %d" % evicted)
                check(evicted >= 1100 - 1024, "only %d idle connections evicted" % evicted)
            with step("the node is still healthy"):
                check(n.running(), "node died")
                wait_for("/health 200", lambda: n.health() == 200)
        finally:
            for s in held:
                s.close()


class FakeUpstream:
    """Accepts connections and answers each with `answer`, then closes."""

    def __init__(self, port, answer):
        self.answer = answer
        self.hits = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                conn.settimeout(5)
                read_head(conn)
                self.hits += 1
                conn.sendall(self.answer)
            except OSError:
                pass
            finally:
                conn.close()

    def close(self):
        self.sock.close()


class Proxy1xx(Scenario):
    """A leader whose advertised HTTP address answers 1xx or garbage."""

    def run(self):
        c = self.cluster("proxy1xx")
        fake_port = reserve_ports(1)[0]
        fake = FakeUpstream(fake_port, b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            n1, n2 = c.new_node(1), c.new_node(2)
            spec = "1=%s/127.0.0.1:%d,2=%s/%s" % (n1.raft, fake_port, n2.raft, n2.http)
            with step("2-node cluster; node 1 is advertised at a fake HTTP upstream"):
                n1.start(["--peers", spec])
                n2.start(["--peers", spec])

                def n1_leads():
                    i1, i2 = n1.info(), n2.info()
                    if not i1 or not i2 or not i2.get("leader"):
                        return False
                    if i2["leader"] == 2:
                        n2.request("POST", "/cluster/transfer?to=1")
                        return False
                    return i1.get("leader") == 1 and i2["leader"] == 1
                wait_for("node 1 leads and node 2 follows it", n1_leads)
            body = json.dumps({"id": 9, "raft": "127.0.0.1:9"})
            with step("an admin request to the follower is proxied; the 1xx becomes a 502"):
                r = n2.request("POST", "/cluster/members", body=body)
                check(fake.hits >= 1, "the fake upstream was not asked")
                check(r.status == 502, "proxied POST /cluster/members: %s" % r.error_text())
                check(n2.running(), "node 2 died")
            with step("a garbage answer also becomes a 502"):
                fake.answer = b"HTTP/1.1 abc\r\n\r\n"
                r = n2.request("POST", "/cluster/members", body=body)
                check(r.status == 502, "garbage upstream: %s" % r.error_text())
            with step("node 2 keeps serving"):
                check(n2.running(), "node 2 died")
                r = retry_503(lambda: n2.put("after", "1"))
                check(r.status in (200, 201), "PUT via node 2: %s" % r.error_text())
        finally:
            fake.close()


SCENARIOS = {"web_guards": WebGuards, "conn_flood": ConnFlood, "proxy_1xx": Proxy1xx}
