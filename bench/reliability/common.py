"""Helpers shared by the bench/reliability scripts (standard library only)."""
import http.client
import os
import socket

_next_port = [20000 + os.getpid() % 10000]


def free_port():
    """A port below the ephemeral range that binds now; never the same twice
    in one run."""
    while True:
        _next_port[0] += 1
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", _next_port[0]))
            return _next_port[0]
        except OSError:
            continue
        finally:
            s.close()


def request(addr, method, path, body=None, timeout=600):
    """(status, body); (0, b"") when the node cannot be reached."""
    h, p = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(h, int(p), timeout=timeout)
    try:
        # State-changing requests need a JSON or octet-stream type (api/guard.c).
        hdrs = {"Content-Type": "application/octet-stream"} if method in ("POST", "PUT") else {}
        c.request(method, path, body=body, headers=hdrs)
        r = c.getresponse()
        return r.status, r.read()
    except OSError:
        return 0, b""
    finally:
        c.close()


def rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def dir_mib(path):
    """Bytes allocated on disk under path, in MiB."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_blocks * 512
            except OSError:
                pass
    return total / (1 << 20)


def put_load(addr, count, path_of, value, threads=8):
    """PUTs value to path_of(k) for k in [0, count) from `threads` keep-alive
    connections; exits on any answer but 200/201."""
    import threading
    lock, nxt = threading.Lock(), [0]
    failed = []

    def worker():
        h, p = addr.rsplit(":", 1)
        c = http.client.HTTPConnection(h, int(p), timeout=60)
        try:
            while not failed:
                with lock:
                    k = nxt[0]
                    nxt[0] += 1
                if k >= count:
                    break
                c.request("PUT", path_of(k), body=value)
                r = c.getresponse()
                r.read()
                if r.status not in (200, 201):
                    failed.append(r.status)
        finally:
            c.close()
    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if failed:
        raise SystemExit("load: PUT answered %d" % failed[0])
