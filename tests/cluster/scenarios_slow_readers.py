"""Slow readers (issue 14, finding 7): clients that pipeline GETs of 1 MiB
values and never read their responses must not grow the server's memory
without bound. The server bounds the bytes queued for all clients together
(--client-output-bytes-max, 64 MiB by default), drops the slowest readers
first when the bound is exceeded, keeps serving normal clients, and gives the
memory back to the OS once the slow sockets are gone."""

import socket
import struct
import threading

from harness import (SANITIZED, Fatal, Scenario, check, count, log, scaled, step, wait_for)

MIB = 1 << 20
GLOBAL_MAX = 64 * MIB  # the default --client-output-bytes-max
SLOW_CONNS = 32
PIPELINED = 64  # GETs per slow connection
# Bounds with generous margins: allocator slack, kernel-side nothing (RSS is
# the process's own memory), a response or two in flight per normal client.
FLOOD_MARGIN = 96 * MIB
# After the close: freed heap pages must have gone back to the OS (without
# the trim about 17 MiB of them stayed on a 7 MiB baseline).
AFTER_MARGIN = 12 * MIB

TCP_ESTABLISHED = 1


def rss_bytes(node):
    with open("/proc/%d/status" % node.proc.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise Fatal("no VmRSS for %r" % node)


def tcp_state(sock):
    """The kernel's TCP state of sock (struct tcp_info's first byte)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    return struct.unpack("B", info[:1])[0]


def metric(node, name):
    r = node.request("GET", "/metrics")
    check(r.status == 200, "/metrics: %d" % r.status)
    for line in r.text().splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    return None


class RssWatch:
    """Samples the node's VmRSS in a thread; fails fast (from check()) once
    it exceeds the bound."""

    def __init__(self, node, bound):
        self.node, self.bound = node, bound
        self.peak = 0
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop_ev.is_set():
            try:
                self.peak = max(self.peak, rss_bytes(self.node))
            except (OSError, Fatal):
                return
            self.stop_ev.wait(0.005)

    def check(self):
        # Under ASan the allocator's quarantine and shadow memory make RSS
        # meaningless: the behaviour is checked, the figures only printed.
        if self.peak > self.bound and not SANITIZED:
            raise Fatal("VmRSS reached %.1f MiB, over the bound %.1f MiB"
                        % (self.peak / MIB, self.bound / MIB))
        return True

    def stop(self):
        self.stop_ev.set()
        self.t.join()


class SlowReaders(Scenario):
    def run(self):
        c = self.cluster("slow_readers")
        with step("single node with a 1 MiB value"):
            node = c.new_node(1).start(["--bootstrap"])
            c.wait_leader([node])
            big = bytes((i * 7) & 0xff for i in range(MIB))
            c.put_retry("big", big, via=node)
            for _ in range(4):  # warm up: the normal path's buffers are part of the baseline
                r = node.get("big")
                check(r.status == 200 and r.body == big, "GET big before the flood")
            baseline = rss_bytes(node)
            log("baseline VmRSS %.1f MiB" % (baseline / MIB))

        host, port = node.http.rsplit(":", 1)
        req = b"GET /kv/big HTTP/1.1\r\nHost: %s\r\n\r\n" % node.http.encode()
        socks = []
        watch = RssWatch(node, baseline + GLOBAL_MAX + FLOOD_MARGIN)
        try:
            with step("%d connections pipeline %d GETs each and never read"
                      % (SLOW_CONNS, PIPELINED)):
                for _ in range(count(SLOW_CONNS, 8)):
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    # a small receive window: the responses stay in the server
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                    s.settimeout(scaled(10))
                    s.connect((host, int(port)))
                    s.sendall(req * PIPELINED)
                    socks.append(s)

            with step("the server drops slow readers; its memory stays bounded"):
                def dropped():
                    watch.check()
                    closed = sum(1 for s in socks if tcp_state(s) != TCP_ESTABLISHED)
                    n = metric(node, "stcache_client_slow_readers_dropped_total")
                    queued = metric(node, "stcache_client_output_bytes")
                    return (closed > 0 and n and n > 0 and queued is not None and
                            queued <= GLOBAL_MAX and (closed, n, queued))
                closed, n, queued = wait_for("slow readers to be dropped", dropped)
                log("%d of %d slow connections closed by the server (metric %d), "
                    "%.1f MiB queued" % (closed, len(socks), n, queued / MIB))

            with step("a normal client can GET and PUT during the flood"):
                for i in range(5):
                    r = node.get("big")
                    check(r.status == 200 and r.body == big,
                          "GET big during the flood: %d %r" % (r.status, r.body[:100]))
                    r = node.put("small%d" % i, "v%d" % i)
                    check(r.status in (200, 201), "PUT during the flood: %s" % r.error_text())
                    check(node.get("small%d" % i).body == b"v%d" % i, "read back small%d" % i)
                    watch.check()
                watch.check()
                log("peak VmRSS during the flood %.1f MiB (bound %.1f MiB)"
                    % (watch.peak / MIB, watch.bound / MIB))
        finally:
            watch.stop()
            for s in socks:
                s.close()

        with step("after the slow sockets close, memory returns near the baseline"):
            bound = baseline + AFTER_MARGIN
            def released():
                v = rss_bytes(node)
                return ((v <= bound or SANITIZED) and
                        metric(node, "stcache_client_output_bytes") == 0) and v
            rss = wait_for("VmRSS <= %.1f MiB and nothing queued" % (bound / MIB), released)
            log("VmRSS after close %.1f MiB (baseline %.1f MiB)" % (rss / MIB, baseline / MIB))
            r = node.get("big")
            check(r.status == 200 and r.body == big, "GET big after the flood")


SCENARIOS = {"slow_readers": SlowReaders}
