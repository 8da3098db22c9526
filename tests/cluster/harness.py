"""Real-process cluster harness for stcache (Python 3 standard library only).

A Cluster owns a temporary directory (data dirs + one log file per node
process), a set of ports reserved for this test run, and every `stcache
server` process it started (each in its own process group). Cluster.close()
kills every process and removes the directory; run_scenario() guarantees it
runs even when a step fails, and prints the tail of every node's log first.

Waiting is event-driven: wait_for() polls a condition (an HTTP answer) until
it holds or a deadline passes; deadlines are generous and scaled up under
sanitizers (ST_SANITIZED=1), they never assert timing.
"""

import contextlib
import fcntl
import glob
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import ssl
import tempfile
import threading
import time
import traceback
import urllib.parse

SANITIZED = os.environ.get("ST_SANITIZED") == "1"
# Deadlines are multiplied by SLOW, work (key counts...) divided by WORK_DIV.
SLOW = 4 if SANITIZED else 1
WORK_DIV = 2 if SANITIZED else 1
KEEP = os.environ.get("ST_KEEP_DIRS") == "1"
# STCACHE_TEST_TLS=1: every cluster runs with mutual TLS on the peer port
# and HTTPS with client-certificate authentication on the client port,
# certificates made at test time by scripts/gen-certs.sh (docs/SECURITY.md).
TLS = os.environ.get("STCACHE_TEST_TLS") == "1"
# HTTP address -> the ssl.SSLContext the harness speaks HTTPS to it with
# (filled by Node.start for nodes with client TLS).
CLIENT_TLS = {}
# HTTP address -> the environment the stcache CLI needs to reach it
# (STCACHE_CACERT, STCACHE_CERT, STCACHE_KEY).
CLIENT_TLS_ENV = {}


def cli_env(endpoints, env=None):
    """env (default: os.environ) plus what the stcache CLI needs to talk
    to endpoints ("h:p,h:p"): the TLS variables when one of them serves
    client TLS."""
    env = dict(os.environ if env is None else env)
    for ep in (endpoints or "").split(","):
        ep = ep.strip()
        for prefix in ("https://", "http://"):
            if ep.startswith(prefix):
                ep = ep[len(prefix):]
        if ep in CLIENT_TLS_ENV:
            env.update(CLIENT_TLS_ENV[ep])
            break
    return env
GEN_CERTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts",
                         "gen-certs.sh")


def faketime_lib():
    """The path of Debian's libfaketime (package faketime), or None."""
    libs = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1") +
                  glob.glob("/usr/lib/faketime/libfaketime.so.1"))
    return libs[0] if libs else None


def faketime_sweep():
    """Removes what libfaketime left in /dev/shm for processes that are gone:
    each process it is preloaded into makes a semaphore and a segment named
    after its pid, and only a clean exit removes them (not SIGKILL, not some
    of a shell script's processes). Left there, thousands gathered in a
    nemesis soak, and the `faketime` wrapper refuses to start in a process
    whose pid one of them names. A live process's are kept."""
    try:
        names = os.listdir("/dev/shm")
    except OSError:
        return
    for name in names:
        for prefix in ("faketime_shm_", "sem.faketime_sem_"):
            pid = name[len(prefix):]
            if name.startswith(prefix) and pid.isdigit() and not os.path.exists("/proc/" + pid):
                try:
                    os.unlink(os.path.join("/dev/shm", name))
                except OSError:
                    pass


def gen_certs(certdir, *args, backdate=False):
    """Runs scripts/gen-certs.sh CERTDIR ARGS... (a CA, a node or a client).
    backdate: valid from a day ago (libfaketime), so that a node whose clock
    a test moves back still finds every certificate valid."""
    env = None
    if backdate:
        lib = faketime_lib()
        if lib is None:
            raise TestFailure("libfaketime not found: install the Debian package faketime "
                              "(scripts/deps.sh)")
        env = dict(os.environ, LD_PRELOAD=lib, FAKETIME="-1d")
    subprocess.run([GEN_CERTS, certdir] + [str(a) for a in args], check=True,
                   stdout=subprocess.DEVNULL, env=env)
    if backdate:
        faketime_sweep()

# Ports come from below the kernel's ephemeral range (32768+ on Linux) so an
# outgoing connection can never take one between our check and the server's
# bind; a lock file per port keeps concurrent test processes (ctest -j, other
# build trees) off each other's ports.
PORT_LO, PORT_HI = 20000, 32000
PORT_LOCK_DIR = os.path.join(tempfile.gettempdir(), "stcache-cluster-ports")


def log(msg):
    print("[%8.3f] %s" % (time.monotonic() - _T0, msg), flush=True)


_T0 = time.monotonic()


def scaled(seconds):
    return seconds * SLOW


def count(n, minimum=1):
    """Scales a workload size down under sanitizers."""
    return max(minimum, n // WORK_DIV)


class TestFailure(AssertionError):
    pass


class Fatal(TestFailure):
    """A failure that wait_for() must not treat as "not yet"."""


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def fatal_unless(cond, msg):
    if not cond:
        raise Fatal(msg)


# ---------------------------------------------------------------------------
# ports


_port_locks = []  # open lock files, held until the process exits


def reserve_ports(n):
    """Returns n ports that are free now and locked for this process."""
    os.makedirs(PORT_LOCK_DIR, exist_ok=True)
    ports = []
    rnd = random.Random(os.getpid() ^ int(time.time() * 1000))
    attempts = 0
    while len(ports) < n:
        attempts += 1
        if attempts > 20000:
            raise RuntimeError("could not reserve %d free ports" % n)
        port = rnd.randrange(PORT_LO, PORT_HI)
        if port in ports:
            continue
        path = os.path.join(PORT_LOCK_DIR, "%d.lock" % port)
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        if not _port_free(port):
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            continue
        _port_locks.append(fd)
        ports.append(port)
    return ports


def _port_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


# ---------------------------------------------------------------------------
# HTTP


class Unreachable(Exception):
    """The node could not be reached or did not answer (no HTTP status)."""


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def text(self):
        return self.body.decode("utf-8", "replace")

    def error_text(self):
        return "HTTP %d %s" % (self.status, self.text()[:300])

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.body[:120])


def default_headers(method, headers):
    """The caller's headers; a POST gets a JSON Content-Type unless it names
    one (the API answers 415 without: docs/HTTP-API.md)."""
    headers = dict(headers or {})
    if method == "POST" and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = "application/json"
    return headers


def http_connection(addr, timeout):
    """An http.client connection to addr: HTTPS when the node there serves
    client TLS (CLIENT_TLS), plain HTTP otherwise."""
    host, port = addr.rsplit(":", 1)
    ctx = CLIENT_TLS.get(addr)
    if ctx is not None:
        return http.client.HTTPSConnection(host, int(port), timeout=timeout, context=ctx)
    return http.client.HTTPConnection(host, int(port), timeout=timeout)


def http_request(addr, method, path, body=None, headers=None, timeout=None):
    headers = default_headers(method, headers)
    conn = http_connection(addr, timeout or scaled(10))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    except (OSError, http.client.HTTPException) as e:
        raise Unreachable("%s %s %s: %s: %s" % (addr, method, path, type(e).__name__, e)) from e
    finally:
        conn.close()


class KeepAlive:
    """One keep-alive connection for bulk requests to one node (reconnects
    once per request after a failure)."""

    def __init__(self, addr, timeout=None):
        self.addr = addr
        self.timeout = timeout or scaled(10)
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http_connection(self.addr, self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=default_headers(method, headers))
                r = self.conn.getresponse()
                data = r.read()
                resp = Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
                if r.will_close:
                    self.close()
                return resp
            except (OSError, http.client.HTTPException) as e:
                self.close()
                if attempt == 1:
                    raise Unreachable("%s %s %s: %s" % (self.addr, method, path, e)) from e

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def kv_path(key, **query):
    if isinstance(key, str):
        key = key.encode("utf-8")
    p = "/kv/" + urllib.parse.quote(key, safe="")
    q = {k: v for k, v in query.items() if v is not None}
    if q:
        p += "?" + urllib.parse.urlencode(q)
    return p


# ---------------------------------------------------------------------------
# nodes


class Node:
    def __init__(self, cluster, node_id, raft_port, http_port, data_dir=None):
        self.cluster = cluster
        self.id = node_id
        self.raft_port = raft_port
        self.http_port = http_port
        self.raft = "127.0.0.1:%d" % raft_port
        self.http = "127.0.0.1:%d" % http_port
        self.data_dir = data_dir or os.path.join(cluster.dir, "node%d" % node_id)
        self.proc = None
        self.log_path = None
        self.starts = 0
        self.extra_args = []
        self.wrapper = []  # argv prefix, e.g. ["prlimit", "--nofile=100", "--"] (it execs)
        self.create_parent = True  # start() creates the data directory's parent
        self.env = {}  # extra environment variables (e.g. libfaketime's)
        self.expected_alive = False

    def __repr__(self):
        return "node%d(%s)" % (self.id, self.http)

    # -- process control

    def start(self, mode_args=(), extra=(), expect_exit=False):
        """Starts `stcache server` for this node. mode_args: ["--bootstrap"],
        ["--join", addr], ["--peers", spec] or [] (restart from the data dir).
        Unless expect_exit, the process exiting on its own fails the test at
        the next wait_for() poll."""
        check(self.proc is None or self.proc.poll() is not None, "%r already running" % self)
        self.starts += 1
        self.log_path = os.path.join(self.cluster.dir, "node%d.%d.log" % (self.id, self.starts))
        if self.create_parent:
            os.makedirs(os.path.dirname(self.data_dir) or ".", exist_ok=True)
        args = list(self.wrapper) + [self.cluster.binary, "server", "--id", str(self.id), "--data", self.data_dir,
                "--raft", self.raft, "--http", self.http]
        args += list(mode_args) + list(self.cluster.common_args) + list(self.extra_args) + list(extra)
        if self.cluster.tls:
            args += self.cluster.peer_tls_args(self.id)
        if self.cluster.client_tls:
            args += self.cluster.client_tls_args(self.id)
            CLIENT_TLS[self.http] = self.cluster.client_ssl_context()
            CLIENT_TLS_ENV[self.http] = self.cluster.cli_tls_env()
        else:
            CLIENT_TLS.pop(self.http, None)
            CLIENT_TLS_ENV.pop(self.http, None)
        secured = self.cluster.tls and self.cluster.client_tls  # as docs/SECURITY.md asks
        if not (self.http.startswith("127.") and self.raft.startswith("127.")) and not secured:
            args.append("--insecure")  # secure by default refuses other addresses
        self.last_args = args
        logf = open(self.log_path, "wb")
        logf.write(("# " + " ".join(args) + "\n").encode())
        logf.flush()
        try:
            env = dict(os.environ, **self.env) if self.env else None
            if self.env:
                logf.write(("# env " + " ".join("%s=%s" % kv for kv in sorted(self.env.items()))
                            + "\n").encode())
                logf.flush()
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                         start_new_session=True, env=env)
        finally:
            logf.close()
        self.cluster.procs.append(self.proc)
        self.expected_alive = not expect_exit
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        self.expected_alive = False
        if self.proc is not None and self.proc.poll() is None:
            _killpg(self.proc, signal.SIGKILL)
            self.proc.wait()
            if self.env.get("LD_PRELOAD"):
                faketime_sweep()

    def pause(self):
        """SIGSTOP: the process keeps its sockets but does nothing (a long GC
        pause, a VM freeze)."""
        _killpg(self.proc, signal.SIGSTOP)

    def resume(self):
        _killpg(self.proc, signal.SIGCONT)

    def stop(self, timeout=None):
        """SIGTERM and wait; returns the exit status (SIGKILL after the deadline,
        in which case the status is negative)."""
        self.expected_alive = False
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            _killpg(self.proc, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout or scaled(20))
            except subprocess.TimeoutExpired:
                log("%r did not stop after SIGTERM: SIGKILL" % self)
                _killpg(self.proc, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    def wipe(self):
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def log_tail(self, lines=40):
        out = []
        for start in range(1, self.starts + 1):
            path = os.path.join(self.cluster.dir, "node%d.%d.log" % (self.id, start))
            try:
                with open(path, "rb") as f:
                    data = f.read().decode("utf-8", "replace").splitlines()
            except OSError:
                continue
            out.append("---- %s (start %d of %d)%s ----" % (
                self, start, self.starts,
                ", exit %s" % self.proc.returncode if start == self.starts and self.proc and
                self.proc.poll() is not None else ""))
            if len(data) > lines:
                out.append("  ... %d lines before" % (len(data) - lines))
            out.extend("  " + l for l in data[-lines:])
        return "\n".join(out)

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return ""

    # -- HTTP

    def request(self, method, path, body=None, headers=None, timeout=None):
        token = self.cluster.token
        if token and not any(k.lower() == "authorization" for k in (headers or {})):
            headers = dict(headers or {}, Authorization="Bearer " + token)
        return http_request(self.http, method, path, body, headers, timeout)

    def info(self, timeout=None):
        """GET /cluster as a dict, or None when unreachable / not 200."""
        try:
            r = self.request("GET", "/cluster", timeout=timeout or scaled(3))
        except Unreachable:
            return None
        if r.status != 200:
            return None
        try:
            return r.json()
        except ValueError:
            raise TestFailure("%r: /cluster is not JSON: %r" % (self, r.body[:200]))

    def health(self):
        try:
            return self.request("GET", "/health", timeout=scaled(3)).status
        except Unreachable:
            return None

    def put(self, key, value, ttl=None, if_match=None, if_absent=False, timeout=None):
        headers = {}
        if if_match is not None:
            headers["If-Match"] = '"%s"' % if_match
        if if_absent:
            headers["If-None-Match"] = "*"
        if isinstance(value, str):
            value = value.encode()
        return self.request("PUT", kv_path(key, ttl=ttl), body=value, headers=headers,
                            timeout=timeout)

    def get(self, key, consistency=None, timeout=None):
        return self.request("GET", kv_path(key, consistency=consistency), timeout=timeout)

    def delete(self, key, timeout=None):
        return self.request("DELETE", kv_path(key), timeout=timeout)


def _killpg(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------------------
# waiting


def wait_for(what, fn, timeout=30, interval=0.02):
    """Polls fn() until it returns a truthy value, which is returned. Fails
    after timeout*SLOW seconds with the last value/exception in the message."""
    deadline = time.monotonic() + scaled(timeout)
    last = None
    while True:
        check_no_unexpected_exit()
        try:
            v = fn()
            if v:
                return v
            last = v
        except Unreachable as e:
            last = e
        except Fatal:
            raise
        except TestFailure as e:
            last = e
        if time.monotonic() > deadline:
            raise TestFailure("timed out after %.0f s waiting for %s (last: %s)"
                              % (scaled(timeout), what, last))
        time.sleep(interval)


_live_clusters = []


def check_no_unexpected_exit():
    """Fails at once when a node that should be running has exited (a crash,
    a sanitizer report, a refused start) instead of waiting for a deadline."""
    for c in _live_clusters:
        for n in list(c.nodes.values()) + c.retired:
            if n.expected_alive and n.proc is not None and n.proc.poll() is not None:
                n.expected_alive = False
                raise TestFailure("%r exited unexpectedly with status %s; its log ends with:\n%s"
                                  % (n, n.proc.returncode, n.log_tail(15)))


def retry_503(fn, timeout=30):
    """Calls fn() (one HTTP request) until it answers something other than
    503 or unreachable (an election in progress); returns that Response.
    A retry after a 503 "timeout" may find the first attempt applied."""
    def attempt():
        try:
            r = fn()
        except Unreachable:
            return None
        return None if r.status == 503 else r
    return wait_for("an answer other than 503", attempt, timeout)


# ---------------------------------------------------------------------------
# clusters


class Cluster:
    def __init__(self, binary, name, common_args=(), tls=None, client_tls=None,
                 backdate_certs=False):
        self.binary = binary
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="stcache-%s-" % name)
        self.tls = TLS if tls is None else tls
        self.client_tls = TLS if client_tls is None else client_tls
        self._client_ctx = None
        self.certs = os.path.join(self.dir, "certs")
        self.backdate_certs = backdate_certs  # see gen_certs
        if self.tls or self.client_tls:
            gen_certs(self.certs, "ca", backdate=backdate_certs)
        self.common_args = list(common_args) or ["--log-level", "info"]
        self.token = None  # sent as Authorization: Bearer by Node.request (--auth clusters)
        self.nodes = {}
        self.retired = []  # nodes removed from self.nodes (logs still dumped)
        self.procs = []
        _live_clusters.append(self)

    def node_cert(self, node_id, *names):
        """The certificate of node_id (made on first use, naming names as
        subjectAltNames: gen-certs.sh's default is localhost 127.0.0.1)."""
        crt = os.path.join(self.certs, "node-%d.crt" % node_id)
        if not os.path.exists(crt):
            gen_certs(self.certs, "node", node_id, *names, backdate=self.backdate_certs)
        return crt

    def peer_tls_args(self, node_id):
        """The peer TLS flags of node_id (its certificate made on first use)."""
        crt = self.node_cert(node_id)
        return ["--peer-cert-file", crt,
                "--peer-key-file", os.path.join(self.certs, "node-%d.key" % node_id),
                "--peer-trusted-ca-file", os.path.join(self.certs, "ca.crt")]

    def client_tls_args(self, node_id):
        """The client-port TLS flags of node_id: HTTPS with its node
        certificate, client certificates required (signed by the cluster CA)."""
        crt = self.node_cert(node_id)
        return ["--cert-file", crt,
                "--key-file", os.path.join(self.certs, "node-%d.key" % node_id),
                "--trusted-ca-file", os.path.join(self.certs, "ca.crt"), "--client-cert-auth"]

    def client_cert(self, user="tester"):
        """(cert, key) of a client certificate for user, made on first use."""
        crt = os.path.join(self.certs, "client-%s.crt" % user)
        if not os.path.exists(crt):
            gen_certs(self.certs, "client", user, backdate=self.backdate_certs)
        return crt, os.path.join(self.certs, "client-%s.key" % user)

    def client_ssl_context(self):
        """The harness's HTTPS context: trusts the cluster CA, presents the
        client certificate of user "tester"."""
        if self._client_ctx is None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(os.path.join(self.certs, "ca.crt"))
            ctx.load_cert_chain(*self.client_cert())
            self._client_ctx = ctx
        return self._client_ctx

    def cli_tls_env(self):
        """Environment for the stcache CLI to talk to this cluster's client
        ports (empty without client TLS)."""
        if not self.client_tls:
            return {}
        crt, key = self.client_cert()
        return {"STCACHE_CACERT": os.path.join(self.certs, "ca.crt"), "STCACHE_CERT": crt,
                "STCACHE_KEY": key}

    # -- membership of the harness (not of the raft cluster)

    def new_node(self, node_id, ports=None, data_dir=None):
        raft_port, http_port = ports or reserve_ports(2)
        n = Node(self, node_id, raft_port, http_port, data_dir)
        self.nodes[node_id] = n
        return n

    def retire(self, node):
        node.kill9()
        self.nodes.pop(node.id, None)
        self.retired.append(node)

    def running(self):
        return [n for n in self.nodes.values() if n.running()]

    def peers_spec(self, nodes=None):
        nodes = nodes or list(self.nodes.values())
        return ",".join("%d=%s/%s" % (n.id, n.raft, n.http) for n in nodes)

    # -- starting

    def start_bootstrap_and_join(self, n_nodes, first_id=1):
        """Node first_id bootstraps, the others join through it one at a time;
        returns once every node is a voter and all agree on a leader."""
        ids = list(range(first_id, first_id + n_nodes))
        first = self.new_node(ids[0]).start(["--bootstrap"])
        self.wait_leader([first])
        for i in ids[1:]:
            self.new_node(i).start(["--join", first.http])
            self.wait_members(voters=ids[:ids.index(i) + 1])
        return self.wait_leader()

    def start_static(self, n_nodes, first_id=1):
        nodes = [self.new_node(i) for i in range(first_id, first_id + n_nodes)]
        spec = self.peers_spec(nodes)
        for n in nodes:
            n.start(["--peers", spec])
        return self.wait_leader()

    # -- observation

    def infos(self, nodes=None):
        return {n.id: n.info() for n in (nodes or self.running())}

    def wait_leader(self, nodes=None, exclude=(), timeout=30):
        """Waits until every node in nodes (default: all running) answers
        /cluster naming the same leader, which is one of them, is not in
        exclude, and says it is the leader. Returns the leader Node."""
        def agreed():
            ns = nodes or self.running()
            infos = {n.id: n.info() for n in ns}
            if any(i is None for i in infos.values()):
                return None
            leaders = {i.get("leader") for i in infos.values()}
            if len(leaders) != 1:
                return None
            lid = leaders.pop()
            if lid is None or lid in exclude or lid not in infos:
                return None
            if infos[lid].get("role") != "leader":
                return None
            return self.nodes[lid]
        return wait_for("an agreed leader among %s" % (nodes or self.running()), agreed, timeout)

    def leader(self):
        return self.wait_leader()

    def wait_members(self, voters, learners=(), nodes=None, timeout=45):
        """Waits until every running node's /cluster lists exactly these voters
        and learners (ids)."""
        want_v, want_l = sorted(voters), sorted(learners)

        def ok():
            for n in nodes or self.running():
                i = n.info()
                if i is None:
                    return False
                ms = i.get("members", [])
                v = sorted(m["id"] for m in ms if m.get("voter"))
                l = sorted(m["id"] for m in ms if not m.get("voter"))
                if v != want_v or l != want_l:
                    return False
            return True
        wait_for("membership voters=%s learners=%s" % (want_v, want_l), ok, timeout)

    def wait_caught_up(self, node, index, timeout=45):
        """Waits until node has applied at least index."""
        def ok():
            i = node.info()
            return i is not None and i.get("applied", 0) >= index
        wait_for("%r to apply index %d" % (node, index), ok, timeout)

    def wait_healthy(self, nodes=None, timeout=45):
        for n in nodes or self.running():
            wait_for("%r /health 200" % n, lambda n=n: n.health() == 200, timeout)

    # -- writes and reads with retries (for use around elections)

    def put_retry(self, key, value, via=None, timeout=30, **kw):
        """PUTs through via (or any running node, rotating) until one answers
        2xx. Returns the version. Retries only on unreachable nodes and 503;
        any other status fails the test. A retry after a lost answer may apply
        the write twice (same value): fine for these tests."""
        candidates = [via] if via else None
        state = {"i": random.randrange(1 << 16)}

        def attempt():
            ns = candidates or self.running()
            n = ns[state["i"] % len(ns)]
            state["i"] += 1
            try:
                r = n.put(key, value, **kw)
            except Unreachable:
                return None
            if r.status == 503:
                return None
            check(r.status in (200, 201), "PUT %r via %r: %s" % (key, n, r.error_text()))
            return r.json()["version"]
        return wait_for("PUT %r to succeed" % (key,), attempt, timeout)

    def get_retry(self, key, via, consistency=None, timeout=30):
        """GET through via until it answers something other than 503 or
        unreachable; returns the Response."""
        def attempt():
            try:
                r = via.get(key, consistency=consistency)
            except Unreachable:
                return None
            return None if r.status == 503 else r
        return wait_for("GET %r via %r" % (key, via), attempt, timeout)

    def put_many(self, items, via=None, threads=8, timeout=60):
        """PUTs every (key, value) of items with put_retry from several
        threads (through via, or rotating over the running nodes)."""
        items = list(items)
        errors = []

        def work(chunk):
            try:
                for k, v in chunk:
                    self.put_retry(k, v, via=via, timeout=timeout)
            except Exception as e:  # reported below, in the calling thread
                errors.append(e)
        chunks = [items[i::threads] for i in range(threads)]
        ts = [threading.Thread(target=work, args=(ch,), daemon=True) for ch in chunks if ch]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        if errors:
            raise errors[0]

    def verify_ledger(self, ledger, nodes=None, threads=8):
        """Every key of ledger {key: value} must be readable with exactly that
        value on every node: stale reads of every key once the node has
        applied the leader's commit index and its /health is 200, then
        linearizable reads of every key (several client threads per node, so
        reads share ReadIndex rounds)."""
        nodes = nodes or self.running()
        leader = self.wait_leader(nodes)
        commit = wait_for("leader /cluster", leader.info)["commit"]
        keys = sorted(ledger)
        for n in nodes:
            self.wait_caught_up(n, commit)
            wait_for("%r /health 200" % n, lambda n=n: n.health() == 200, 45)
            for consistency in ("stale", "linearizable"):
                bad = []

                def work(chunk, n=n, consistency=consistency, bad=bad):
                    conn = KeepAlive(n.http)
                    try:
                        for k in chunk:
                            r = conn.request("GET", kv_path(k, consistency=consistency))
                            if r.status == 503 and consistency != "stale":
                                r = self.get_retry(k, n, consistency=consistency)
                            if r.status != 200 or r.body != _b(ledger[k]):
                                bad.append((k, r.status, r.body[:60]))
                    except Exception as e:
                        bad.append(("(reader failed)", None, repr(e)))
                    finally:
                        conn.close()
                ts = [threading.Thread(target=work, args=(keys[i::threads],), daemon=True)
                      for i in range(threads)]
                for t in ts:
                    t.start()
                for t in ts:
                    t.join()
                check(not bad, "%r: %d of %d acknowledged writes missing or wrong in %s reads "
                      "(first: %s)" % (n, len(bad), len(keys), consistency, sorted(bad)[:5]))
        log("ledger verified: %d keys on %s (stale and linearizable reads of every key)"
            % (len(keys), nodes))
        self.verify_identical(nodes)

    def verify_identical(self, nodes=None, timeout=45):
        """Waits until every node has applied the leader's commit index with
        no writes in flight, then checks that all state digests are equal
        (GET /cluster?digest=1 gives the digest with the index it describes).
        Returns the common digest."""
        nodes = nodes or self.running()
        seen = {}

        def same():
            seen.clear()
            for n in nodes:
                r = n.request("GET", "/cluster?digest=1", timeout=scaled(5))
                if r.status != 200:
                    return None
                j = r.json()
                seen[n.id] = (j["digest_applied"], j["digest"])
            idx = {a for a, _ in seen.values()}
            return len(idx) == 1 or None

        wait_for("equal applied index on %r" % nodes, same, timeout)
        digests = {d for _, d in seen.values()}
        check(len(digests) == 1, "replicas differ at the same applied index: %r" % seen)
        log("replicas identical: digest %s at index %d on %r"
            % (digests.pop(), next(iter(seen.values()))[0], nodes))
        return next(iter(seen.values()))[1]

    # -- teardown

    def dump_logs(self, lines=40):
        for n in list(self.nodes.values()) + self.retired:
            print(n.log_tail(lines), flush=True)

    def close(self):
        if self in _live_clusters:
            _live_clusters.remove(self)
        for p in self.procs:
            if p.poll() is None:
                _killpg(p, signal.SIGKILL)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        faketime_sweep()
        if KEEP:
            log("keeping %s (ST_KEEP_DIRS=1)" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def _b(v):
    return v.encode() if isinstance(v, str) else v


# ---------------------------------------------------------------------------
# steps and the runner


_current_steps = []


@contextlib.contextmanager
def step(name):
    t = time.monotonic()
    _current_steps.append(name)
    log("STEP %s" % name)
    try:
        yield
    except BaseException:
        log("FAILED in step: %s (after %.2f s)" % (name, time.monotonic() - t))
        raise
    finally:
        _current_steps.pop()
    log("  done: %s (%.2f s)" % (name, time.monotonic() - t))


class Scenario:
    """Base of a scenario: a subclass implements run(); self.cluster() makes
    clusters that are all torn down (logs dumped on failure) afterwards."""

    def __init__(self, binary):
        self.binary = binary
        self.clusters = []

    def cluster(self, name, common_args=(), tls=None, client_tls=None):
        c = Cluster(self.binary, name, common_args, tls, client_tls)
        self.clusters.append(c)
        return c


def _on_signal(signum, frame):
    # Further signals (ctest and `timeout` may both send one) must not
    # interrupt the cleanup that this exception starts.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise SystemExit("killed by signal %d" % signum)


def main(scenarios):
    """Command line: SCRIPT STCACHE_BINARY [SCENARIO...]; runs the named
    scenarios (all by default) and exits 1 if any failed."""
    if len(sys.argv) < 2:
        print("usage: %s STCACHE_BINARY [scenario...]\nscenarios: %s"
              % (sys.argv[0], " ".join(scenarios)), file=sys.stderr)
        sys.exit(2)
    binary = os.path.abspath(sys.argv[1])
    if not os.access(binary, os.X_OK):
        print("not an executable: %s" % binary, file=sys.stderr)
        sys.exit(2)
    names = sys.argv[2:] or list(scenarios)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    failed = []
    for name in names:
        if name not in scenarios:
            print("unknown scenario %s (have: %s)" % (name, " ".join(scenarios)), file=sys.stderr)
            sys.exit(2)
        sc = scenarios[name](binary)
        log("==== scenario %s%s" % (name, " (sanitized: deadlines x%d, work /%d)" % (SLOW, WORK_DIV) if SANITIZED else ""))
        t = time.monotonic()
        ok = False
        try:
            sc.run()
            ok = True
        except BaseException as e:
            traceback.print_exc()
            log("==== scenario %s FAILED: %s" % (name, e))
            for c in sc.clusters:
                print("==== node logs of cluster %s (%s)" % (c.name, c.dir), flush=True)
                c.dump_logs()
            if not isinstance(e, Exception):
                for c in sc.clusters:
                    c.close()
                raise
        finally:
            for c in sc.clusters:
                c.close()
        if ok:
            log("==== scenario %s passed (%.1f s)" % (name, time.monotonic() - t))
        else:
            failed.append(name)
    if failed:
        log("FAILED: %s" % " ".join(failed))
        sys.exit(1)
