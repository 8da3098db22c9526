"""Deployment: systemd readiness (sd_notify through NOTIFY_SOCKET), the
unit file and `make install`."""

import os
import shutil
import socket
import subprocess
import threading

from harness import Scenario, check, log, step, wait_for

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


class K8sManifests(Scenario):
    """deploy/kubernetes/stcache.yaml parses, and its pieces agree: the
    headless Service is the StatefulSet's serviceName, Services, container
    ports and the entrypoint's ports match, the probes hit /readyz and
    /livez on the HTTP port, the PodDisruptionBudget selects the pods with
    maxUnavailable 1, the data volume is mounted where DATA_DIR points, and
    every flag the entrypoint and STCACHE_FLAGS pass exists in `stcache
    server --help`."""

    def run(self):
        docs = load_manifests(K8S)
        if docs is None:
            log("SKIPPED: python3-yaml is not installed (scripts/deps.sh)")
            return
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
            check(c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"},
                  "readiness %r" % c["readinessProbe"])
            check(c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"},
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
        with step("every flag passed exists in `stcache server --help`"):
            p = subprocess.run([self.binary, "server", "--help"], stdout=subprocess.PIPE,
                               timeout=30)
            helptext = p.stdout.decode()
            script = cm["data"]["entrypoint.sh"]
            import re
            flags = set(re.findall(r"(--[a-z][a-z-]+)", script + " " + env["STCACHE_FLAGS"]))
            missing = sorted(f for f in flags if f not in helptext)
            check(not missing, "flags unknown to the server: %s" % missing)
            log("flags checked: %s" % " ".join(sorted(flags)))


SCENARIOS["k8s_manifests"] = K8sManifests
