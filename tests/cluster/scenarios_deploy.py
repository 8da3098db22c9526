"""Deployment: systemd readiness (sd_notify through NOTIFY_SOCKET), the
unit file and `make install`."""

import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading

from harness import (CLIENT_TLS, Node, Scenario, TestFailure, check, gen_certs, http_request,
                     log, step, wait_for)

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
UNIT = os.path.join(ROOT, "deploy", "systemd", "stcache.service")
ENV = os.path.join(ROOT, "deploy", "systemd", "stcache.env")


def linked_with_systemd(binary):
    p = subprocess.run(["ldd", binary], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return b"libsystemd" in p.stdout


class NotifySocket:
    """A unix datagram socket standing in for systemd's NOTIFY_SOCKET: every
    datagram received is one message ("READY=1\\nSTATUS=...")."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.msgs = []
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.done.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.msgs.append(dict(kv.split("=", 1) for kv in data.decode().split("\n") if "=" in kv))

    def messages(self):
        with self.lock:
            return list(self.msgs)

    def clear(self):
        with self.lock:
            self.msgs.clear()

    def find(self, key):
        return [m for m in self.messages() if key in m]

    def close(self):
        self.done.set()
        self.t.join(5)
        self.sock.close()


class SystemdNotify(Scenario):
    """Type=notify readiness: READY=1 only once the node serves (a leader
    known, applied up to the commit index it recovered), STATUS= lines
    saying what it waits for, STOPPING=1 at shutdown; again after a
    restart."""

    def run(self):
        if not linked_with_systemd(self.binary):
            log("SKIPPED: this stcache is built without libsystemd (STCACHE_SYSTEMD, "
                "libsystemd-dev): it sends no notification")
            return
        c = self.cluster("notify")
        nodes = [c.new_node(i) for i in (1, 2, 3)]
        spec = c.peers_spec(nodes)
        ns = NotifySocket(os.path.join(c.dir, "notify.sock"))
        try:
            n1 = nodes[0]
            n1.env = {"NOTIFY_SOCKET": ns.path}
            with step("node 1 alone (no quorum): STATUS says what it waits for, no READY"):
                n1.start(["--peers", spec])
                wait_for("a STATUS=waiting: no_leader message",
                         lambda: any(m["STATUS"].startswith("waiting: no_leader")
                                     for m in ns.find("STATUS")))
                first = ns.messages()[0]
                check(first.get("STATUS", "").startswith("starting"), "first message %r" % first)
                r = n1.request("GET", "/readyz")
                check(r.status == 503, "/readyz %d" % r.status)
                check(not ns.find("READY"), "READY=1 sent without a leader: %r" % ns.messages())
            with step("node 2 starts: a leader, READY=1 from node 1, which serves"):
                nodes[1].start(["--peers", spec])
                wait_for("READY=1", lambda: ns.find("READY"))
                ready = ns.find("READY")[0]
                check(ready["READY"] == "1" and ready.get("STATUS", "").startswith("serving"),
                      "ready message %r" % ready)
                check(n1.request("GET", "/readyz").status == 200, "READY=1 but /readyz is not 200")
                c.put_retry("sd/1", "x", via=n1)
                check(len(ns.find("READY")) == 1, "READY=1 sent twice: %r" % ns.messages())
            with step("SIGTERM: STOPPING=1"):
                check(n1.stop() == 0, "node 1 exit status")
                stopping = ns.find("STOPPING")
                check(stopping and stopping[0]["STOPPING"] == "1", "no STOPPING=1: %r"
                      % ns.messages()[-3:])
            with step("a restart: READY=1 again once it serves what it had"):
                ns.clear()
                n1.start()
                wait_for("READY=1 after the restart", lambda: ns.find("READY"))
                info = n1.info()
                check(info["applied"] >= info["commit"] - 10000 and info["leader"],
                      "ready but %r" % {k: info[k] for k in ("applied", "commit", "leader")})
                r = n1.get("sd/1", consistency="stale")
                check(r.status == 200, "the write before the restart: %s" % r.error_text())
                log("messages after the restart: %r" % ns.messages())
        finally:
            ns.close()


class SystemdUnit(Scenario):
    """deploy/systemd/stcache.service passes `systemd-analyze verify` (when
    the tool is there), and `cmake --install` with DESTDIR stages the binary,
    the unit (ExecStart pointing at the installed binary), the environment
    file and the help."""

    def run(self):
        c = self.cluster("unit")
        with step("systemd-analyze verify on the unit"):
            tool = shutil.which("systemd-analyze")
            if not tool:
                log("SKIPPED: no systemd-analyze on this machine")
            else:
                # The unit names /usr/local/bin/stcache and the env file under
                # /etc: verify a copy naming this build's binary.
                d = os.path.join(c.dir, "verify")
                os.makedirs(d)
                text = open(UNIT).read().replace("/usr/local/bin/stcache", self.binary)
                text = text.replace("/etc/stcache/stcache.env", ENV)
                unit = os.path.join(d, "stcache.service")
                with open(unit, "w") as f:
                    f.write(text)
                p = subprocess.run([tool, "verify", unit], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, timeout=60)
                out = p.stdout.decode(errors="replace")
                log("systemd-analyze verify: exit %d %s" % (p.returncode, out.strip()))
                bad = [line for line in out.splitlines() if "stcache.service" in line]
                check(p.returncode == 0 and not bad, "verify: %s" % out)
        with step("cmake --install with DESTDIR stages binary, unit, env file, help"):
            build = os.path.dirname(os.path.abspath(self.binary))
            dest = os.path.join(c.dir, "stage")
            env = dict(os.environ, DESTDIR=dest)
            p = subprocess.run(["cmake", "--install", build, "--prefix", "/opt/stc"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
            check(p.returncode == 0, "install: %s" % p.stdout.decode(errors="replace")[-2000:])
            root = dest + "/opt/stc"
            for rel in ("bin/stcache", "lib/systemd/system/stcache.service",
                        "share/doc/stcache/stcache.env", "share/doc/stcache/stcache-server.txt",
                        "share/doc/stcache/DEPLOYMENT.md", "share/doc/stcache/OPERATIONS.md"):
                check(os.path.exists(os.path.join(root, rel)), "%s not installed" % rel)
            unit = open(os.path.join(root, "lib/systemd/system/stcache.service")).read()
            check("ExecStart=/opt/stc/bin/stcache server" in unit, "ExecStart not rewritten")
            helptext = open(os.path.join(root, "share/doc/stcache/stcache-server.txt")).read()
            check("--force-new-cluster" in helptext, "help text lacks the flags")
            p = subprocess.run([os.path.join(root, "bin/stcache"), "version"],
                               stdout=subprocess.PIPE, timeout=30)
            check(p.returncode == 0 and p.stdout.startswith(b"stcache "), "installed binary")


SCENARIOS = {"systemd_notify": SystemdNotify, "systemd_unit": SystemdUnit}


K8S = os.path.join(ROOT, "deploy", "kubernetes", "stcache.yaml")
K8S_TLS = os.path.join(ROOT, "deploy", "kubernetes", "stcache-tls.yaml")


def load_manifests(path):
    """The documents of a YAML file, through python3-yaml (this interpreter's,
    else Debian's /usr/bin/python3), or None when neither has it."""
    try:
        import yaml  # noqa: F401
        with open(path) as f:
            return list(yaml.safe_load_all(f))
    except ImportError:
        pass
    import json
    if not os.path.exists("/usr/bin/python3"):
        return None
    p = subprocess.run(["/usr/bin/python3", "-c",
                        "import json,sys,yaml; print(json.dumps(list(yaml.safe_load_all("
                        "open(sys.argv[1])))))", path],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    if p.returncode != 0:
        return None
    return json.loads(p.stdout)


def check_flags(binary, script, env):
    """Every flag of the entrypoint's `server` command line and of
    STCACHE_FLAGS is in `stcache server --help`; every flag of its CLI
    calls (before the server's exec) and of STCACHE_CLI_FLAGS in the CLI's
    usage (`stcache members --help`)."""

    def helptext(*args):
        p = subprocess.run([binary] + list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30)
        return p.stdout.decode()

    check('"$bin" server' in script, "the entrypoint does not exec `$bin server`")
    # CLI calls: `"$bin" CMD ...` (CMD not server) with their continuation lines.
    cli_part, server_part, in_cli = [], [], False
    for line in script.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line)  # comments name flags in prose
        if re.search(r'"\$bin" (?!server)[a-z]', line):
            in_cli = True
        (cli_part if in_cli else server_part).append(line)
        if not line.rstrip().endswith("\\"):
            in_cli = False
    cli_part, server_part = "\n".join(cli_part), "\n".join(server_part)
    for what, text, args in (
            ("server", server_part + " " + env.get("STCACHE_FLAGS", ""), ("server", "--help")),
            ("CLI", cli_part + " " + env.get("STCACHE_CLI_FLAGS", ""), ("members", "--help"))):
        flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", text))
        known = helptext(*args)
        missing = sorted(f for f in flags if f not in known)
        check(not missing, "flags unknown to the %s: %s" % (what, missing))
        log("%s flags checked: %s" % (what, " ".join(sorted(flags))))


def check_entrypoint_argv(script, env, d):
    """Runs the entrypoint with STCACHE naming a stand-in that prints its
    arguments (and answers no CLI call, as when no other pod is up), from a
    directory holding files (a shell glob would expand to them): pod 0
    bootstraps, pod 2 joins through pod 0's DNS name, STCACHE_FLAGS arrive
    word for word."""
    fake = os.path.join(d, "fake-stcache")
    with open(fake, "w") as f:
        f.write('#!/bin/sh\n[ "$1" = server ] || exit 3\nprintf "%s\\n" "$@"\n')
    os.chmod(fake, 0o755)
    path = os.path.join(d, "entrypoint.sh")
    with open(path, "w") as f:
        f.write(script)
    first = "%s-0.%s:%s" % (env["STS_NAME"], env["PEERS_SERVICE"], env["HTTP_PORT"])
    for ordinal, mode in ((0, ["--bootstrap"]), (2, ["--join", first])):
        pod = "%s-%d" % (env["STS_NAME"], ordinal)
        penv = {k: v for k, v in env.items() if v is not None}
        penv.update(POD_NAME=pod, HOSTNAME=pod, STCACHE=fake, PATH="/usr/bin:/bin",
                    DATA_DIR=os.path.join(d, "pv-%d" % ordinal))
        p = subprocess.run(["/bin/sh", path], env=penv, cwd=d, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        out = p.stdout.decode()
        check(p.returncode == 0, "entrypoint of %s: exit %d: %s" % (pod, p.returncode, out))
        argv = [a for a in out.splitlines() if not a.startswith("entrypoint:")]
        want = ["server", "--id", str(ordinal + 1)]
        check(argv[:3] == want, "%s: %r" % (pod, argv))
        self_name = "%s.%s" % (pod, env["PEERS_SERVICE"])
        check("--advertise-http" in argv and
              argv[argv.index("--advertise-http") + 1] == self_name + ":" + env["HTTP_PORT"],
              "%s advertises %r" % (pod, argv))
        tls = []
        if env.get("TLS_DIR"):
            crt, key = ("%s/node-%d.%s" % (env["TLS_DIR"], ordinal + 1, x) for x in ("crt", "key"))
            ca = env["TLS_DIR"] + "/ca.crt"
            tls = ["--peer-cert-file", crt, "--peer-key-file", key, "--peer-trusted-ca-file", ca,
                   "--cert-file", crt, "--key-file", key, "--trusted-ca-file", ca]
        tail = mode + tls + env.get("STCACHE_FLAGS", "").split()
        check(argv[-len(tail):] == tail, "%s: ends %r, want %r" % (pod, argv[-len(tail):], tail))


class K8sManifests(Scenario):
    """deploy/kubernetes/stcache.yaml parses, and its pieces agree: the
    headless Service is the StatefulSet's serviceName, Services, container
    ports and the entrypoint's ports match, the probes hit /readyz and
    /livez on the HTTP port, the PodDisruptionBudget selects the pods with
    maxUnavailable 1, the data volume is mounted where DATA_DIR points, and
    every flag the entrypoint and STCACHE_FLAGS pass exists in `stcache
    server --help`. The same for stcache-tls.yaml, which also must: run
    the same entrypoint, pass --auth with the admin token and no
    --insecure, probe over HTTPS, and find every file it names (TLS_DIR,
    token files, the CLI's CA) on a read-only Secret mount."""

    def run(self):
        for path in (K8S, K8S_TLS):
            docs = load_manifests(path)
            if docs is None:
                log("SKIPPED: python3-yaml is not installed (scripts/deps.sh)")
                return
            log("==== %s" % os.path.relpath(path, ROOT))
            self.check_manifest(docs, path == K8S_TLS)

    def check_manifest(self, docs, tls):
        by_kind = {}
        for d in docs:
            by_kind.setdefault(d["kind"], []).append(d)
        with step("a StatefulSet of 3 behind a headless Service, a client Service, a PDB"):
            sts = by_kind["StatefulSet"][0]
            spec = sts["spec"]
            check(spec["replicas"] == 3, "replicas %r" % spec["replicas"])
            svcs = {s["metadata"]["name"]: s for s in by_kind["Service"]}
            headless = svcs.get(spec["serviceName"])
            check(headless and headless["spec"].get("clusterIP") == "None",
                  "serviceName %r is not a headless Service" % spec["serviceName"])
            labels = spec["template"]["metadata"]["labels"]
            check(spec["selector"]["matchLabels"].items() <= labels.items(), "selector")
            for s in svcs.values():
                check(s["spec"]["selector"].items() <= labels.items(), "%s selector" % s)
            clients = [s for s in svcs.values() if s["spec"].get("clusterIP") != "None"]
            check(clients, "no client Service")
            pdb = by_kind["PodDisruptionBudget"][0]["spec"]
            check(pdb.get("maxUnavailable") == 1 and
                  pdb["selector"]["matchLabels"].items() <= labels.items(), "PDB %r" % pdb)
        c = spec["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in c["env"]}
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        with step("ports agree: containers, Services, the entrypoint's environment"):
            check(ports == {"raft": int(env["RAFT_PORT"]), "http": int(env["HTTP_PORT"])},
                  "ports %r env %r" % (ports, env))
            for s in svcs.values():
                for p in s["spec"]["ports"]:
                    check(p["targetPort"] in ports and ports[p["targetPort"]] == p["port"],
                          "%s port %r" % (s["metadata"]["name"], p))
            check(env["PEERS_SERVICE"] == spec["serviceName"] and
                  env["STS_NAME"] == sts["metadata"]["name"], "names in env %r" % env)
        with step("probes: /readyz and /livez on the HTTP port"):
            scheme = {"scheme": "HTTPS"} if tls else {}
            check(c["readinessProbe"]["httpGet"] == dict(path="/readyz", port="http", **scheme),
                  "readiness %r" % c["readinessProbe"])
            check(c["livenessProbe"]["httpGet"] == dict(path="/livez", port="http", **scheme),
                  "liveness %r" % c["livenessProbe"])
        with step("volumes: the claim is mounted where DATA_DIR is; the entrypoint is mounted"):
            mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
            claim = spec["volumeClaimTemplates"][0]["metadata"]["name"]
            check(env["DATA_DIR"].startswith(mounts[claim] + "/"), "DATA_DIR %r" % env["DATA_DIR"])
            cm = by_kind["ConfigMap"][0]
            vols = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
            ep = [n for n, v in vols.items()
                  if v.get("configMap", {}).get("name") == cm["metadata"]["name"]]
            check(ep and c["command"][-1] == mounts[ep[0]] + "/entrypoint.sh", "command %r"
                  % c["command"])
        with step("every flag passed exists in `stcache server --help` (the CLI's in its usage)"):
            script = cm["data"]["entrypoint.sh"]
            check_flags(self.binary, script, env)
        with step("the entrypoint's command line (a stand-in binary prints it)"):
            check_entrypoint_argv(script, env, self.cluster("k8s-argv").dir)
        if not tls:
            self.plain_script = script
            return
        with step("TLS: same entrypoint; --auth, no --insecure; files on read-only Secrets"):
            check(script == self.plain_script, "the entrypoint differs from stcache.yaml's")
            flags = env["STCACHE_FLAGS"].split()
            check("--insecure" not in flags and "--auth" in flags and
                  "--initial-admin-token-file" in flags and "--join-token-file" in flags,
                  "STCACHE_FLAGS %r" % flags)
            secret_mounts = [m["mountPath"] for m in c["volumeMounts"]
                             if "secret" in vols.get(m["name"], {})]
            check(len(secret_mounts) == 2 and all(
                m.get("readOnly") for m in c["volumeMounts"] if "secret" in vols.get(m["name"], {})),
                "Secret mounts %r" % c["volumeMounts"])
            files = [f for f in (env["STCACHE_FLAGS"] + " " + env["STCACHE_CLI_FLAGS"]).split()
                     if f.startswith("/")] + [env["TLS_DIR"] + "/ca.crt"]
            for f in files:
                check(any(os.path.dirname(f) == m for m in secret_mounts),
                      "%s is not on a Secret mount (%r)" % (f, secret_mounts))
            check("--cacert" in env["STCACHE_CLI_FLAGS"] and
                  "--token-file" in env["STCACHE_CLI_FLAGS"], "STCACHE_CLI_FLAGS")


SCENARIOS["k8s_manifests"] = K8sManifests


# ---------------------------------------------------------------------------
# The StatefulSet's start-up logic, run for real: pods in network namespaces


sys.path.insert(0, os.path.join(ROOT, "tests", "nemesis"))
import netns  # noqa: E402  (tests/nemesis/netns.py: namespaces on a bridge)


class Pod(Node):
    """One pod of the StatefulSet: the manifest's entrypoint.sh run by
    /bin/sh inside a network namespace (exec_prefix), with the environment
    the StatefulSet gives the container (its env list, POD_NAME and
    HOSTNAME) and STCACHE pointing at this build. mounts: {container path:
    host directory} (the pod's PersistentVolume, the Secrets), applied to
    every path in the environment. ssl_ctx: how the harness speaks HTTPS to
    it (None: HTTP). Its HTTP address is the namespace's address."""

    def __init__(self, cluster, ordinal, ip, env, script, exec_prefix, mounts, ssl_ctx=None):
        http_port, raft_port = int(env["HTTP_PORT"]), int(env["RAFT_PORT"])
        env = {k: host_paths(v, mounts) for k, v in env.items()}
        super().__init__(cluster, ordinal + 1, raft_port, http_port, env["DATA_DIR"])
        self.name = "%s-%d" % (env["STS_NAME"], ordinal)
        self.http = "%s:%d" % (ip, http_port)
        self.raft = "%s:%d" % (ip, raft_port)
        self.pod_env = dict(env, POD_NAME=self.name, HOSTNAME=self.name, STCACHE=cluster.binary)
        self.script = script
        self.exec_prefix = exec_prefix
        self.ssl_ctx = ssl_ctx

    def __repr__(self):
        return "%s(%s)" % (self.name, self.http)

    def start(self, mode_args=(), extra=(), expect_exit=False):
        check(self.proc is None or self.proc.poll() is not None, "%r already running" % self)
        self.starts += 1
        self.log_path = os.path.join(self.cluster.dir, "node%d.%d.log" % (self.id, self.starts))
        os.makedirs(os.path.dirname(self.data_dir), exist_ok=True)  # the mounted volume
        if self.ssl_ctx:
            CLIENT_TLS[self.http] = self.ssl_ctx
        env = dict(self.pod_env, PATH=os.environ.get("PATH", "/usr/bin:/bin"))
        args = self.exec_prefix + ["env", "-i"] + ["%s=%s" % kv for kv in sorted(env.items())] \
            + ["/bin/sh", self.script]
        with open(self.log_path, "wb") as logf:
            logf.write(("# " + " ".join(args) + "\n").encode())
            logf.flush()
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                         start_new_session=True)
        self.cluster.procs.append(self.proc)
        self.expected_alive = not expect_exit
        return self


def host_paths(value, mounts):
    """value with every container path under a mount replaced by the host
    directory standing in for it (longest mount first)."""
    if value is None:
        return value
    for cpath in sorted(mounts, key=len, reverse=True):
        value = re.sub(r"(?<![\w/])%s(?=/|\s|$)" % re.escape(cpath), mounts[cpath], value)
    return value


class K8sNetns(Scenario):
    """deploy/kubernetes/stcache.yaml's start-up logic with real processes:
    the ConfigMap's entrypoint.sh, extracted from the manifest, runs for
    stcache-0..2, each in its own network namespace on a bridge
    (tests/nemesis/netns.py) with the StatefulSet's environment, and a
    hosts file per namespace (/etc/netns/NS/hosts, which `ip netns exec`
    mounts over /etc/hosts) naming the pods as the headless Service's DNS
    does (stcache-N.stcache-peers[.NAMESPACE.svc.cluster.local]). Checks:
    the pods started together form one cluster; a write through each pod
    reads back through the others; pod 1 killed and restarted on its
    volume rejoins without bootstrapping; pod 0 restarted does not
    bootstrap a second cluster; pods 2 and 0 on a wiped volume (a new
    PersistentVolume) rejoin the same cluster, their old member removed.
    k8s_netns_tls: the same with stcache-tls.yaml, its Secrets made here
    (scripts/gen-certs.sh certificates for the pods' DNS names, an admin
    token): mutual TLS between pods, HTTPS and tokens for clients."""

    manifest = K8S

    def run(self):
        why = netns.available()
        if why:
            log("SKIPPED: %s" % why)
            return
        docs = load_manifests(self.manifest)
        if docs is None:
            log("SKIPPED: python3-yaml is not installed (scripts/deps.sh)")
            return
        by_kind = {}
        for d in docs:
            by_kind.setdefault(d["kind"], []).append(d)
        sts = by_kind["StatefulSet"][0]
        pod_spec = sts["spec"]["template"]["spec"]
        container = pod_spec["containers"][0]
        env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
        vols = {v["name"]: v for v in pod_spec["volumes"]}
        claim = sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
        replicas = sts["spec"]["replicas"]
        svc = sts["spec"]["serviceName"]
        c = self.cluster("k8s")
        script = os.path.join(c.dir, "entrypoint.sh")
        with open(script, "w") as f:
            f.write(by_kind["ConfigMap"][0]["data"]["entrypoint.sh"])
        net = netns.Net(1 + os.getpid() % 250, replicas)
        dns = {o: ["%s-%d.%s" % (sts["metadata"]["name"], o, svc),
                   "%s-%d.%s.default.svc.cluster.local" % (sts["metadata"]["name"], o, svc)]
               for o in range(replicas)}
        secrets, ssl_ctx = {}, None
        for m in container["volumeMounts"]:
            secret = vols.get(m["name"], {}).get("secret")
            if secret:
                secrets[m["mountPath"]] = self.make_secret(c, secret["secretName"], dns, net)
        if secrets:
            ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ssl_ctx.load_verify_locations(os.path.join(c.certs, "ca.crt"))
        hosts_dirs = []
        try:
            with step("%d namespaces on a bridge, hosts files with the pods' DNS names" % replicas):
                net.setup()
                lines = ["%s %s" % (net.ip(o + 1), " ".join(dns[o])) for o in range(replicas)]
                for i in range(1, replicas + 1):
                    d = os.path.join("/etc/netns", net.ns(i))
                    os.makedirs(d, exist_ok=True)
                    hosts_dirs.append(d)
                    with open(os.path.join(d, "hosts"), "w") as f:
                        f.write("127.0.0.1 localhost\n%s\n" % "\n".join(lines))
                pods = []
                for o in range(replicas):
                    mounts = dict(secrets)
                    mounts[next(m["mountPath"] for m in container["volumeMounts"]
                                if m["name"] == claim)] = os.path.join(c.dir, "pv-%d" % o)
                    pods.append(Pod(c, o, net.ip(o + 1), env, script, net.exec_prefix(o + 1),
                                    mounts, ssl_ctx))
                for p in pods:
                    c.nodes[p.id] = p
            self.scenario(c, pods, env)
        finally:
            for p in c.nodes.values():
                p.kill9()
            net.teardown()
            for d in hosts_dirs:
                shutil.rmtree(d, ignore_errors=True)

    def make_secret(self, c, name, dns, net):
        """A directory standing in for Secret `name` of stcache-tls.yaml:
        stcache-tls (ca.crt, node-<id>.crt/.key for the pods' DNS names and
        addresses) or stcache-admin-token (token)."""
        d = os.path.join(c.dir, "secret-" + name)
        os.makedirs(d)
        if name == "stcache-admin-token":
            import base64
            token = "admin." + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
            with open(os.path.join(d, "token"), "w") as f:
                f.write(token + "\n")
            c.token = token
        elif name == "stcache-tls":
            gen_certs(c.certs, "ca")
            for o, names in dns.items():
                gen_certs(c.certs, "node", o + 1, *(names + [net.ip(o + 1)]))
            for f in os.listdir(c.certs):
                if f != "ca.key":
                    shutil.copy(os.path.join(c.certs, f), d)
                    os.chmod(os.path.join(d, f), 0o440)
        else:
            raise TestFailure("unknown Secret %s: make it here" % name)
        return d

    def scenario(self, c, pods, env):
        ids = [p.id for p in pods]
        with step("the pods start together (Parallel): one cluster of %d voters" % len(pods)):
            for p in pods:
                p.start()
            c.wait_members(voters=ids, timeout=60)
            c.wait_leader()
            cids = {p.info()["cluster_id"] for p in pods}
            check(len(cids) == 1, "cluster ids %r" % cids)
            cid = cids.pop()
            for p in pods:
                members = {m["id"]: m for m in p.info()["members"]}
                check(members[p.id]["http"] == "%s.%s:%s" % (
                    p.name, env["PEERS_SERVICE"], env["HTTP_PORT"]),
                    "%r advertises %r" % (p, members[p.id]))
            check("node 1 as %s.%s: --bootstrap" % (pods[0].name, env["PEERS_SERVICE"])
                  in pods[0].log_text(), "pod 0 did not bootstrap")
            for p in pods:  # the probes' endpoints, without a token
                r = http_request(p.http, "GET", "/readyz")
                check(r.status == 200, "%r /readyz: %s" % (p, r.error_text()))
        written = {}

        def write_read_all(tag):
            for p in pods:
                key = "k8s/%s/%s" % (tag, p.name)
                c.put_retry(key, "via " + p.name, via=p)
                written[key] = "via " + p.name
            for key, value in written.items():
                for p in pods:
                    r = c.get_retry(key, via=p)
                    check(r.body.decode() == value, "%s via %r: %r" % (key, p, r.body))

        with step("a write through each pod reads back through every pod"):
            write_read_all("start")

        def same_cluster(pod, what):
            c.wait_members(voters=ids, timeout=60)
            info = pod.info()
            check(info["cluster_id"] == cid, "%s: cluster id %r, was %r"
                  % (what, info["cluster_id"], cid))
            check("holds a node: restarting from it" in pod.log_text(),
                  "%s: did not restart from its volume" % what)

        with step("pod 1 killed and restarted on its volume rejoins (no bootstrap)"):
            pods[1].kill9()
            pods[1].start()
            same_cluster(pods[1], "pod 1")
            write_read_all("pod1")
        with step("pod 0 restarted: no second cluster"):
            check(pods[0].stop() == 0, "pod 0 exit status")
            pods[0].start()
            same_cluster(pods[0], "pod 0")
            write_read_all("pod0")
        for o in (2, 0):
            with step("pod %d on a wiped volume (a new PV): removed, joins again" % o):
                pods[o].kill9()
                pods[o].wipe()
                pods[o].start()
                c.wait_members(voters=ids, timeout=60)
                text = pods[o].log_text()
                check("is a member but its volume is empty: removing it" in text and
                      "joining it" in text, "the entrypoint did not rejoin: %s" % text[-600:])
                check(pods[o].info()["cluster_id"] == cid, "pod %d: another cluster" % o)
                write_read_all("wiped%d" % o)
        log("%d keys read back through every pod" % len(written))


class K8sNetnsTls(K8sNetns):
    manifest = K8S_TLS


SCENARIOS["k8s_netns"] = K8sNetns
SCENARIOS["k8s_netns_tls"] = K8sNetnsTls
