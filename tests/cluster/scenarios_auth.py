"""Issue 16, items 2 and 4 on real processes: with --auth a client without
credentials gets 401, a readonly user 403 on writes and on every admin route,
a prefix-limited user cannot touch other prefixes, membership changes need
an admin; tokens work on every node of a cluster, survive a restart, reach
a node added after a snapshot, and stop working when rotated or removed;
secure by default refuses a non-loopback port without auth or peer TLS.
docs/SECURITY.md, "Authentication and authorisation"."""

import base64
import json
import os
import subprocess

from harness import (Scenario, check, http_request, reserve_ports, retry_503, scaled, step,
                     wait_for)


def new_token(user):
    return "%s.%s" % (user, base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="))


def auth_cluster(sc, name, common=()):
    """A cluster whose nodes run --auth with an initial admin token file;
    c.token (sent by Node.request) is the admin's."""
    c = sc.cluster(name, common_args=["--log-level", "info", "--auth"] + list(common))
    c.token = new_token("admin")
    path = os.path.join(c.dir, "admin.token")
    with open(path, "w") as f:
        f.write(c.token + "\n")
    os.chmod(path, 0o600)
    c.common_args += ["--initial-admin-token-file", path, "--join-token-file", path]
    return c


def as_user(token):
    return {"Authorization": "Bearer " + token} if token else {"Authorization": ""}


def add_user(node, name, role, prefixes=()):
    body = json.dumps({"name": name, "role": role, "prefixes": list(prefixes)})
    r = retry_503(lambda: node.request("POST", "/auth/users", body=body))
    check(r.status == 201, "POST /auth/users %s: %s" % (name, r.error_text()))
    return r.json()["token"]


def wait_admin(c, node):
    """The leader proposes the initial admin once it leads: wait for it."""
    wait_for("the initial admin works on %r" % node,
             lambda: node.request("GET", "/auth/whoami").status == 200, timeout=scaled(30))


class AuthHttp(Scenario):
    """401, 403, prefixes, rotation and removal on one node."""

    def run(self):
        c = auth_cluster(self, "auth-http")
        n = c.new_node(1).start(["--bootstrap"])
        wait_admin(c, n)
        with step("no credentials, a malformed one, an unknown user, a wrong secret: 401 alike"):
            answers = []
            for hdr in (None, "Basic eDp5", "Bearer nodot", "Bearer nobody." + "A" * 43,
                        "Bearer admin." + "A" * 43):
                for method, path in (("GET", "/kv/x"), ("PUT", "/kv/x"), ("GET", "/cluster"),
                                     ("GET", "/metrics"), ("GET", "/kv?prefix=a"),
                                     ("POST", "/cluster/members"), ("GET", "/auth/users")):
                    r = http_request(n.http, method, path, body=b"{}" if method != "GET" else None,
                                     headers={"Authorization": hdr} if hdr else None)
                    check(r.status == 401, "%s %s with %r: %s" % (method, path, hdr,
                                                                 r.error_text()))
                    check(r.headers.get("www-authenticate", "").startswith("Bearer"),
                          "401 without WWW-Authenticate: Bearer")
                    answers.append(r.body)
            check(len(set(answers)) == 1, "401 bodies differ: %r" % set(answers))
            check(n.request("GET", "/readyz", headers={"Authorization": ""}).status == 200,
                  "/readyz is a probe: open")
        with step("the admin creates a readonly user and a prefix-limited readwrite user"):
            ro = add_user(n, "reader", "readonly")
            app = add_user(n, "app", "readwrite", ["app/"])
            r = n.request("POST", "/auth/users", body=json.dumps({"name": "reader",
                                                                  "role": "readonly"}))
            check(r.status == 409, "adding an existing user: %s" % r.error_text())
            check(n.put("app/1", "v1").status == 201, "admin PUT")
            check(n.put("other", "o").status == 201, "admin PUT")
        with step("readonly: reads pass, PUT and DELETE 403"):
            check(n.request("GET", "/kv/other", headers=as_user(ro)).status == 200, "ro GET")
            r = n.request("PUT", "/kv/other", body=b"x", headers=as_user(ro))
            check(r.status == 403 and r.json()["code"] == "forbidden", "ro PUT: %s" % r.error_text())
            check(n.request("DELETE", "/kv/other", headers=as_user(ro)).status == 403, "ro DELETE")
        with step("readonly: 403 on every admin route; /cluster hides the cluster id"):
            admin_routes = [("POST", "/cluster/members", json.dumps({"id": 9, "raft": "127.0.0.1:9"})),
                            ("DELETE", "/cluster/members/1", None),
                            ("POST", "/cluster/transfer?to=1", None),
                            ("POST", "/snapshot", None), ("GET", "/snapshot", None),
                            ("GET", "/auth/users", None), ("POST", "/auth/users", "{}"),
                            ("DELETE", "/auth/users/app", None),
                            ("POST", "/auth/users/app/token", None)]
            for method, path, body in admin_routes:
                r = n.request(method, path, body=body, headers=as_user(ro))
                check(r.status == 403, "ro %s %s: %s" % (method, path, r.error_text()))
            info = n.request("GET", "/cluster", headers=as_user(ro)).json()
            check(info["cluster_id"] is None, "cluster id shown to a non-admin: %r" % info)
            check(n.info()["cluster_id"], "the admin sees the cluster id")
            check(len(n.info()["members"]) == 1, "a member was added")
        with step("prefix-limited: its prefix only, for keys and listings"):
            check(n.request("PUT", "/kv/app/2", body=b"x", headers=as_user(app)).status == 201,
                  "app PUT app/2")
            for method, path in (("PUT", "/kv/other"), ("GET", "/kv/other"),
                                 ("DELETE", "/kv/other"), ("GET", "/kv?start="),
                                 ("GET", "/kv?prefix=ap"), ("GET", "/kv?start=app/&end=b")):
                r = n.request(method, path, body=b"x" if method == "PUT" else None,
                              headers=as_user(app))
                check(r.status == 403, "app %s %s: %s" % (method, path, r.error_text()))
            r = n.request("GET", "/kv?prefix=app/", headers=as_user(app))
            check(r.status == 200 and r.json()["count"] == 2, "app lists app/: %s" % r.error_text())
            r = n.request("GET", "/kv?start=app/&end=app0", headers=as_user(app))
            check(r.status == 200, "app lists [app/, app0): %s" % r.error_text())
            check(n.get("other").body == b"o", "other changed")
        with step("prefix-limited: transactions and watches too"):
            for body in ({"compare": [], "success": [{"put": {"key": "other", "value": "t"}}]},
                         {"compare": [{"key": "other", "target": "exists", "exists": True}],
                          "success": [{"put": {"key": "app/3", "value": "t"}}]},
                         {"success": [{"delete_prefix": {"prefix": "ap"}}]},
                         {"success": [{"get": {"key": "other"}}]}):
                r = n.request("POST", "/txn", body=json.dumps(body).encode(),
                              headers=dict(as_user(app), **{"Content-Type": "application/json"}))
                check(r.status == 403, "app txn %r: %s" % (body, r.error_text()))
            r = n.request("POST", "/txn", body=json.dumps(
                {"success": [{"put": {"key": "app/3", "value": "t"}}]}).encode(),
                headers=dict(as_user(app), **{"Content-Type": "application/json"}))
            check(r.status == 200 and r.json()["succeeded"], "app txn on app/3: %s" % r.error_text())
            r = n.request("POST", "/txn", body=json.dumps(
                {"success": [{"delete_prefix": {"prefix": "app/3"}}]}).encode(),
                headers=dict(as_user(app), **{"Content-Type": "application/json"}))
            check(r.status == 200, "app txn delete_prefix app/3: %s" % r.error_text())
            for path in ("/watch?prefix=", "/watch?prefix=ap", "/watch?key=other"):
                r = n.request("GET", path, headers=as_user(app))
                check(r.status == 403, "app watch %s: %s" % (path, r.error_text()))
            check(n.get("other").body == b"o", "other changed")
        with step("sessions: attaching needs write access, ending too (it deletes the keys)"):
            js = dict(as_user(app), **{"Content-Type": "application/json"})
            r = n.request("POST", "/session", body=b'{"ttl_ms":60000}', headers=js)
            check(r.status == 200, "app POST /session: %s" % r.error_text())
            sid = r.json()["id"]
            r = n.request("PUT", "/kv/other?session=%d" % sid, body=b"x", headers=as_user(app))
            check(r.status == 403, "app attaches other: %s" % r.error_text())
            r = n.request("PUT", "/kv/app/s?session=%d" % sid, body=b"x", headers=as_user(app))
            check(r.status == 201, "app attaches app/s: %s" % r.error_text())
            check(n.request("PUT", "/session/%d/renew" % sid, headers=as_user(ro)).status == 200,
                  "ro renews")
            r = n.request("DELETE", "/session/%d" % sid, headers=as_user(ro))
            check(r.status == 403, "ro ends a session holding app/s: %s" % r.error_text())
            check(n.get("app/s").status == 200, "app/s went")
            r = n.request("DELETE", "/session/%d" % sid, headers=as_user(app))
            check(r.status == 200, "app ends its session: %s" % r.error_text())
            check(n.get("app/s").status == 404, "app/s stayed")
        with step("grant and revoke change the rights at once"):
            r = n.request("POST", "/auth/users/reader/grant", body=json.dumps({"role": "readwrite"}))
            check(r.status == 200, "grant: %s" % r.error_text())
            check(n.request("PUT", "/kv/ro", body=b"x", headers=as_user(ro)).status == 201,
                  "PUT after the grant")
            r = n.request("POST", "/auth/users/app/revoke", body=json.dumps({"prefix": "app/"}))
            check(r.status == 200, "revoke: %s" % r.error_text())
            check(n.request("GET", "/kv?start=", headers=as_user(app)).status == 200,
                  "no prefix left: every key")
        with step("a rotated token replaces the old one; a removed user is refused"):
            r = n.request("POST", "/auth/users/app/token")
            check(r.status == 200, "rotate: %s" % r.error_text())
            app2 = r.json()["token"]
            check(n.request("GET", "/kv/app/1", headers=as_user(app)).status == 401, "old token")
            check(n.request("GET", "/kv/app/1", headers=as_user(app2)).status == 200, "new token")
            check(n.request("DELETE", "/auth/users/app").status == 200, "DELETE user")
            check(n.request("GET", "/kv/app/1", headers=as_user(app2)).status == 401,
                  "removed user")
            users = [u["name"] for u in n.request("GET", "/auth/users").json()["users"]]
            check(users == ["admin", "reader"], "users: %r" % users)
            check(app2.split(".")[1] not in n.log_text(), "a token was logged")
        with step("the users are not keys: a listing of every key shows none of them"):
            r = n.request("GET", "/kv?start=&keys_only=1")
            keys = [kv["key"] for kv in r.json()["kvs"]]
            check(keys == ["app/1", "app/2", "other", "ro"], "keys: %r" % keys)


class AuthCluster(Scenario):
    """Tokens on every node of 3, across a restart, on a node added after a
    snapshot; a proxied admin request carries the client's credential."""

    def run(self):
        c = auth_cluster(self, "auth-cluster", ["--snapshot-threshold", "20"])
        nodes = [c.new_node(i) for i in (1, 2, 3)]
        spec = c.peers_spec(nodes)
        for n in nodes:
            n.start(["--peers", spec])
        leader = c.wait_leader()
        wait_admin(c, leader)
        follower = [n for n in nodes if n.id != leader.id][0]
        with step("a user added through a follower works on every node"):
            tok = add_user(follower, "rw", "readwrite")
            r = retry_503(lambda: follower.request("PUT", "/kv/k", body=b"v", headers=as_user(tok)))
            check(r.status == 201, "PUT via follower: %s" % r.error_text())
            for n in nodes:
                wait_for("%r knows the user" % n,
                         lambda n=n: n.request("GET", "/kv/k", headers=as_user(tok)).status == 200,
                         timeout=scaled(20))
        with step("membership needs an admin: 401 without, 403 for rw, also through a follower"):
            body = json.dumps({"id": 9, "raft": "127.0.0.1:9"})
            for n in (leader, follower):
                r = n.request("POST", "/cluster/members", body=body, headers={"Authorization": ""})
                check(r.status == 401, "%r POST members without token: %s" % (n, r.error_text()))
                r = n.request("POST", "/cluster/members", body=body, headers=as_user(tok))
                check(r.status == 403, "%r POST members as rw: %s" % (n, r.error_text()))
            r = leader.request("POST", "/cluster/members?proxied=1", body=body,
                               headers={"Authorization": ""})
            check(r.status == 401, "a forged proxied request: %s" % r.error_text())
            check(len(leader.info()["members"]) == 3, "a member was added")
        with step("enough writes for snapshots, then node 4 joins and knows the users"):
            for i in range(60):
                retry_503(lambda i=i: leader.request("PUT", "/kv/fill%d" % i, body=b"x"))
            for n in nodes:
                r = n.request("POST", "/snapshot")
                check(r.status == 200, "%r POST /snapshot: %s" % (n, r.error_text()))
            n4 = c.new_node(4).start(["--join", leader.http])
            c.wait_members(voters=[1, 2, 3, 4])
            wait_for("node 4 serves the token",
                     lambda: n4.request("GET", "/kv/k", headers=as_user(tok)).status == 200,
                     timeout=scaled(30))
            check("snapshot" in n4.log_text().lower(), "node 4 did not install a snapshot")
        with step("a restarted node knows the users"):
            follower.stop()
            follower.start()
            wait_for("the restarted node serves the token",
                     lambda: follower.request("GET", "/kv/k", headers=as_user(tok)).status == 200,
                     timeout=scaled(30))
        with step("an admin request to a follower is proxied with the admin's token"):
            r = retry_503(lambda: follower.request("DELETE", "/cluster/members/4"))
            check(r.status == 200, "proxied DELETE /cluster/members/4: %s" % r.error_text())
            c.wait_members(voters=[1, 2, 3], nodes=nodes)


class SecureDefault(Scenario):
    """A non-loopback port needs authentication and TLS (HTTP, Redis) or
    peer TLS (Raft), or --insecure; the refusal says why in one line."""

    def run(self):
        c = self.cluster("secure-default", tls=False)
        raft, http = reserve_ports(2)
        d = os.path.join(c.dir, "d")

        def server(*extra):
            return subprocess.run([c.binary, "server", "--bootstrap", "--data", d,
                                   "--raft", "127.0.0.1:%d" % raft] + list(extra),
                                  capture_output=True, timeout=scaled(20))
        with step("HTTP on 0.0.0.0 without --auth: refused, exit 2, one line why"):
            r = server("--http", "0.0.0.0:%d" % http)
            err = r.stderr.decode()
            check(r.returncode == 2 and "--auth" in err and "--insecure" in err
                  and err.count("\n") == 1, "exit %d: %r" % (r.returncode, err))
            check(not os.path.exists(d), "the data directory was created")
        with step("Redis on 0.0.0.0 without --auth, and Raft on 0.0.0.0 without TLS: refused"):
            r = server("--http", "127.0.0.1:%d" % http, "--redis", "0.0.0.0:%d" % raft)
            check(r.returncode == 2 and "Redis" in r.stderr.decode(), r.stderr.decode())
            r = subprocess.run([c.binary, "server", "--bootstrap", "--data", d, "--http",
                                "127.0.0.1:%d" % http, "--raft", "0.0.0.0:%d" % raft, "--auth"],
                               capture_output=True, timeout=scaled(20))
            check(r.returncode == 2 and "TLS" in r.stderr.decode(), r.stderr.decode())
        with step("HTTP on 0.0.0.0 with --auth but without TLS: refused, TLS named"):
            r = server("--http", "0.0.0.0:%d" % http, "--auth")
            err = r.stderr.decode()
            check(r.returncode == 2 and "--cert-file" in err and err.count("\n") == 1,
                  "exit %d: %r" % (r.returncode, err))
        with step("--insecure starts and serves on 0.0.0.0"):
            n = c.new_node(1, ports=(raft, http))
            n.http = "0.0.0.0:%d" % http
            n.start(["--bootstrap"])  # the harness adds --insecure for this address
            n.http = "127.0.0.1:%d" % http
            c.wait_leader([n])
            check(retry_503(lambda: n.put("k", "v")).status == 201, "PUT")


SCENARIOS = {"auth_http": AuthHttp, "auth_cluster": AuthCluster, "secure_default": SecureDefault}
