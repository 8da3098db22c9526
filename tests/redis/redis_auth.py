"""Redis front end with --auth (docs/REDIS.md, "Authentication"), with
redis-py and redis-cli: NOAUTH before AUTH, WRONGPASS for a bad token
(the same for an unknown user), NOPERM on a key outside the user's
prefixes and on admin commands, HELLO 3 AUTH; a token works through a
follower too."""

import os
import socket
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cluster"))

from harness import Scenario, check, scaled, step, wait_for  # noqa: E402
from scenarios_auth import add_user, auth_cluster, wait_admin  # noqa: E402


class RedisAuth(Scenario):
    def run(self):
        import redis
        import run_redis  # its cluster starter (imported here: it imports this file)
        c = auth_cluster(self, "redis-auth")
        ports, leader = run_redis.start_redis_cluster(c)
        wait_admin(c, leader)
        follower = [n for n in c.nodes.values() if n.id != leader.id][0]
        tok = add_user(leader, "app", "readwrite", ["app:"])
        user, secret = tok.split(".", 1)
        port = ports[follower.id]
        # The user is created through the leader: wait until the follower
        # applied it (replication, not a race of the test's own making).
        def knows_user():
            try:
                return redis.Redis(host="127.0.0.1", port=port, username=user, password=secret).ping()
            except redis.exceptions.RedisError:
                return False
        wait_for("the follower to know the new user", knows_user)

        def error_of(fn):
            try:
                fn()
            except redis.exceptions.ResponseError as e:
                return str(e)
            except redis.exceptions.AuthenticationError as e:
                return "auth:" + str(e)
            return None
        with step("NOAUTH before AUTH (redis-py)"):
            r = redis.Redis(host="127.0.0.1", port=port)
            e = error_of(lambda: r.set("app:1", "x"))
            check(e is not None and "Authentication required" in e, "SET before AUTH: %r" % e)
            e = error_of(lambda: r.get("app:1"))
            check(e is not None and "Authentication required" in e, "GET before AUTH: %r" % e)
        with step("WRONGPASS for a wrong secret and for an unknown user alike"):
            for u, p in ((user, "A" * 43), ("nobody", secret)):
                e = error_of(lambda u=u, p=p: redis.Redis(host="127.0.0.1", port=port, username=u, password=p).ping())
                check(e is not None and ("WRONGPASS" in e or "invalid username-password" in e),
                      "AUTH %s: %r" % (u, e))
        with step("AUTH user token: keys under the prefix pass, others NOPERM"):
            r = redis.Redis(host="127.0.0.1", port=port, username=user, password=secret)
            check(r.set("app:1", "v") is True, "SET app:1")
            check(r.get("app:1") == b"v", "GET app:1")
            e = error_of(lambda: r.set("other", "v"))
            check(e is not None and e.startswith("this user has no permissions to access one of "
                                                 "the keys"), "SET other: %r" % e)
            e = error_of(lambda: r.mset({"app:2": "a", "other": "b"}))
            check(e is not None and "no permissions" in e, "MSET with a foreign key: %r" % e)
            check(r.get("app:2") is None, "MSET applied a part")
            for name, fn in (("KEYS", lambda: r.keys("*")), ("SCAN", lambda: r.scan(0)),
                             ("RANDOMKEY", r.randomkey)):
                e = error_of(fn)
                check(e is not None and "no permissions" in e, "%s by a prefix user: %r" % (name, e))
            p = r.pipeline(transaction=True)
            p.set("app:3", "x")
            p.set("other", "x")
            e = error_of(p.execute)
            check(e is not None, "MULTI with a foreign key: executed")
            check(r.get("app:3") is None, "MULTI with a foreign key applied a part")
            e = error_of(lambda: r.config_get("maxmemory"))
            check(e is not None and "no permissions to run the 'config' command" in e,
                  "CONFIG GET as non-admin: %r" % e)
        with step("AUTH with the whole token, and HELLO 3 AUTH"):
            r = redis.Redis(host="127.0.0.1", port=ports[leader.id], password=tok)
            check(r.get("app:1") == b"v", "AUTH token")
            s = socket.create_connection(("127.0.0.1", ports[leader.id]), timeout=scaled(10))
            s.sendall(("HELLO 3 AUTH %s %s\r\nGET app:1\r\nQUIT\r\n" % (user, secret)).encode())
            got = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
            s.close()
            check(got.startswith(b"%") and got.endswith(b"$1\r\nv\r\n+OK\r\n"),
                  "HELLO 3 AUTH: %r" % got)
        with step("SUBSCRIBE: keyspace channels of readable keys only"):
            conn = redis.Connection(host="127.0.0.1", port=port, username=user, password=secret,
                                    socket_timeout=scaled(10))

            def reply(*args):
                conn.send_command(*args)
                try:
                    return conn.read_response()
                except redis.exceptions.ResponseError as e:
                    return "error:" + str(e)
            ok = [("SUBSCRIBE", "__keyspace@0__:app:1"), ("PSUBSCRIBE", "__keyspace@0__:app:*"),
                  ("SUBSCRIBE", "news")]
            for args in ok:
                got = reply(*args)
                check(isinstance(got, list) and got[0] == args[0].lower().encode(),
                      "%r by a prefix user: %r" % (args, got))
            for args in (("SUBSCRIBE", "__keyspace@0__:other"), ("SUBSCRIBE", "__keyevent@0__:set"),
                         ("PSUBSCRIBE", "*"), ("PSUBSCRIBE", "__keyspace@0__:*"),
                         ("SUBSCRIBE", "news2", "__keyevent@0__:del")):
                got = reply(*args)
                check(isinstance(got, str) and "no permissions to access one of the channels" in got,
                      "%r by a prefix user: %r" % (args, got))
            got = reply("UNSUBSCRIBE")  # news2 was not subscribed: all or none
            check(got[1] == b"__keyspace@0__:app:1" and got[2] == 2, "UNSUBSCRIBE: %r" % (got,))
            got = conn.read_response()
            check(got[1] == b"news" and got[2] == 1, "UNSUBSCRIBE news: %r" % (got,))
            conn.disconnect()
        with step("redis-cli: NOAUTH, then --user/--pass"):
            def cli(*args):
                return subprocess.run(["redis-cli", "-p", str(port)] + list(args),
                                      capture_output=True, timeout=scaled(20)).stdout.decode()
            check("NOAUTH" in cli("GET", "app:1"), "redis-cli without AUTH")
            out = cli("--user", user, "--pass", secret, "--no-auth-warning", "GET", "app:1")
            check(out.strip() == "v", "redis-cli --user: %r" % out)
            out = cli("--user", user, "--pass", secret, "--no-auth-warning", "SET", "x", "1")
            check("NOPERM" in out, "redis-cli SET outside the prefix: %r" % out)


SCENARIOS = {"auth": RedisAuth}
