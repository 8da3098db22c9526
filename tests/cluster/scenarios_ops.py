"""Operating stcache: versions (`stcache version`, /cluster, the
stcache_build_info metric, the handshake)."""

import re
import subprocess

from harness import Scenario, check, log, step


def run_cli(binary, *args):
    p = subprocess.run([binary] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


class Versions(Scenario):
    """`stcache --version` and `stcache version` agree with /cluster and the
    stcache_build_info metric of every node of a running cluster."""

    def run(self):
        with step("--version and version print release, commit, formats, compiler"):
            rc, out, err = run_cli(self.binary, "--version")
            check(rc == 0, "--version exit %d: %s" % (rc, err))
            rc2, out2, _ = run_cli(self.binary, "version")
            check(rc2 == 0 and out2 == out, "`version` differs from `--version`: %r" % out2)
            m = re.match(r"stcache (\d+\.\d+\.\d+)\ncommit: (\S+)\n", out)
            check(m is not None, "no release/commit in %r" % out)
            release, commit = m.group(1), m.group(2)
            for what in ("disk formats: wal segment 1", "kv snapshot 2", "wire formats: frame 1",
                         "raft message 1", "kv command 3", "compiler: "):
                check(what in out, "%r missing from %r" % (what, out))
            log("binary: %s (%s)" % (release, commit))
        c = self.cluster("versions")
        with step("a 3-node cluster forms: the handshake accepts peers of the same release"):
            c.start_bootstrap_and_join(3)
            c.wait_members(voters=[1, 2, 3])
            c.put_retry("k", "v")
        with step("/cluster and /metrics of every node carry the same release and commit"):
            for n in c.running():
                v = n.info()["version"]
                check(v["release"] == release and v["commit"] == commit,
                      "%r /cluster version %r" % (n, v))
                check(v["formats"]["wire_msg"] == 1 and v["formats"]["kv_snapshot"] == 2,
                      "%r formats %r" % (n, v["formats"]))
                check(v["compiler"] in out, "%r compiler %r" % (n, v["compiler"]))
                r = n.request("GET", "/metrics")
                line = 'stcache_build_info{version="%s",commit="%s"} 1' % (release, commit)
                check(r.status == 200 and line in r.text(), "%r metrics lack %s" % (n, line))


SCENARIOS = {"versions": Versions}
