#!/usr/bin/python3
"""The Redis protocol front end (docs/REDIS.md) with real Redis clients.

usage: run_redis.py STCACHE_BINARY [SCENARIO...]

Runs with Debian's /usr/bin/python3 and its python3-redis (redis-py), and
uses redis-server and redis-cli from Debian's redis-server/redis-tools:
  compare   every supported command with its edge cases, against a real
            `redis-server` started here and against a 3-node stcache
            cluster through the leader and through a follower; replies
            are compared one by one where Redis is deterministic
  cli       redis-cli and a raw inline command; a protocol error closes
            the connection after its answer; pipelining through redis-py
  failover  kill -9 the leader while a redis-py client writes: errors only
            until a new leader serves, no acknowledged write lost
  hiredis   the C client pipelines 2100 commands (hiredis_pipeline.c)
  slow_reader  a client that sends without reading is disconnected past
            the output bound; others go on
  pubsub    SUBSCRIBE/PSUBSCRIBE and keyspace notifications against
            redis-server (redis_pubsub.py)
  txn_failover  HTTP /txn, MULTI/EXEC and WATCH transactions move units
            between accounts while the leader is killed (kill -9): the sum
            holds on every node, also on the killed one once restarted
Exits 77 (ctest: skipped) when redis-py, redis-server or redis-cli is
missing. Cluster processes come from tests/cluster/harness.py."""

import os
import shutil
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cluster"))

import harness  # noqa: E402
from harness import Scenario, check, count, log, reserve_ports, scaled, step, wait_for  # noqa: E402

SKIP = 77


def skip_unless_tools():
    try:
        import redis  # noqa: F401
    except ImportError:
        print("SKIP: %s has no redis module (apt-get install python3-redis)" % sys.executable)
        sys.exit(SKIP)
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            print("SKIP: %s not installed (apt-get install redis-server redis-tools)" % tool)
            sys.exit(SKIP)


def start_redis_server(tmpdir):
    """A reference redis-server on a reserved port, no persistence."""
    (port,) = reserve_ports(1)
    logpath = os.path.join(tmpdir, "redis-server.log")
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", tmpdir,
                             "--logfile", logpath],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    proc.logpath = logpath
    import redis
    r = redis.Redis(host="127.0.0.1", port=port)

    def up():
        try:
            return r.ping()
        except redis.exceptions.ConnectionError:
            return False
    wait_for("redis-server on port %d" % port, up, timeout=scaled(10))
    return proc, port


def stop_redis_server(proc):
    """Stops the reference server; when it had died on its own, says how and
    prints the end of its log, so a failure against it explains itself."""
    died = proc.poll()
    proc.kill()
    proc.wait()
    if died is not None:
        log("reference redis-server had exited with status %s" % died)
        try:
            with open(proc.logpath, errors="replace") as f:
                for line in f.readlines()[-30:]:
                    log("  redis-server: " + line.rstrip())
        except OSError as e:
            log("  (no redis-server log: %s)" % e)


def start_cluster(sc, name="redis"):
    """3 static nodes, each with --redis on a reserved port. Returns the
    cluster, {node id: redis port} and the leader."""
    c = sc.cluster(name)
    ports, leader = start_redis_cluster(c)
    return c, ports, leader


def start_redis_cluster(c):
    """Starts nodes 1..3 of cluster c (--peers), each with --redis on a
    reserved port; returns ({node id: redis port}, the leader)."""
    ports = {}
    for i in (1, 2, 3):
        n = c.new_node(i)
        (p,) = reserve_ports(1)
        n.extra_args = ["--redis", "127.0.0.1:%d" % p]
        ports[i] = p
    spec = c.peers_spec()
    for n in c.nodes.values():
        n.start(["--peers", spec])
    leader = c.wait_leader()
    return ports, leader


def outcome(fn):
    """A reply or ('error', text): what a client observes."""
    import redis
    try:
        return fn()
    except redis.exceptions.ResponseError as e:
        return ("error", str(e))
    except (TypeError, IndexError, ValueError) as e:  # redis-py's reply callbacks
        return ("client-side", type(e).__name__)


# Each case: arguments with {k} standing for a key prefix (so that the
# leader and the follower runs use distinct keys in one cluster).
BIG = b"v" * 100000
BINARY = b"a\x00b\r\nc\xff"
CASES = [
    ("PING",), ("PING", "hello"), ("PING", "a", "b"), ("ECHO", "x"), ("ECHO", ""), ("ECHO",),
    ("SELECT", "0"), ("SELECT", "x"),
    ("GET", "{k}missing"), ("GET",), ("GET", "{k}a", "b"),
    ("SET", "{k}a", "1"), ("GET", "{k}a"), ("SET", "{k}a", ""), ("GET", "{k}a"),
    ("SET", "{k}big", BIG), ("GET", "{k}big"), ("SET", "{k}bin", BINARY), ("GET", "{k}bin"),
    ("SET", "{k}a", "2", "NX"), ("GET", "{k}a"), ("SET", "{k}nx", "3", "nx"), ("GET", "{k}nx"),
    ("SET", "{k}a", "v", "EX", "0"), ("SET", "{k}a", "v", "EX", "-1"),
    ("SET", "{k}a", "v", "EX", "abc"), ("SET", "{k}a", "v", "EX", "99999999999999999999"),
    ("SET", "{k}a", "v", "PX", "9223372036854775807"), ("SET", "{k}a", "v", "EX", "9223372036854775"),
    ("SET", "{k}a", "v", "EX", "10", "PX", "10"), ("SET", "{k}a", "v", "NX", "XX"),
    ("SET", "{k}a", "v", "EX"), ("SET", "{k}a", "v", "foo"), ("SET", "{k}a"),
    ("SET", "{k}a", "v", "KEEPTTL", "EX", "5"),
    ("SET", "{k}ttl", "v", "PX", "100000"), ("GET", "{k}ttl"),
    ("SET", "{k}ttl", "v", "ex", "100"), ("SET", "{k}past", "v", "EXAT", "1"), ("GET", "{k}past"),
    ("SET", "{k}past", "v", "PXAT", "1000"), ("EXISTS", "{k}past"),
    ("SETNX", "{k}a", "x"), ("SETNX", "{k}snx", "x"), ("GET", "{k}snx"), ("SETNX", "{k}a"),
    ("SETEX", "{k}se", "0", "v"), ("SETEX", "{k}se", "-5", "v"), ("SETEX", "{k}se", "x", "v"),
    ("SETEX", "{k}se", "100", "v"), ("GET", "{k}se"),
    ("PSETEX", "{k}pse", "0", "v"), ("PSETEX", "{k}pse", "100000", "v"), ("GET", "{k}pse"),
    ("MSET", "{k}m1", "1", "{k}m2", "2"), ("MGET", "{k}m1", "{k}m2", "{k}missing", "{k}m1"),
    ("MSET", "{k}m1"), ("MSET", "{k}m1", "1", "{k}m2"), ("MGET",),
    ("EXISTS", "{k}m1", "{k}m1", "{k}missing", "{k}m2"), ("EXISTS",),
    ("DEL", "{k}m1", "{k}m2", "{k}missing", "{k}m1"), ("DEL",), ("MGET", "{k}m1", "{k}m2"),
    ("UNLINK", "{k}a", "{k}missing"), ("UNLINK",), ("GET", "{k}a"),
    ("SET", "{k}s", "Hello World"), ("STRLEN", "{k}s"), ("STRLEN", "{k}missing"), ("STRLEN",),
    ("GETRANGE", "{k}s", "0", "4"), ("GETRANGE", "{k}s", "-5", "-1"), ("GETRANGE", "{k}s", "5", "2"),
    ("GETRANGE", "{k}s", "-1", "-5"), ("GETRANGE", "{k}s", "0", "100"), ("GETRANGE", "{k}s", "-100", "2"),
    ("GETRANGE", "{k}missing", "0", "-1"), ("GETRANGE", "{k}s", "x", "1"), ("GETRANGE", "{k}s", "0"),
    ("GETRANGE", "{k}s", "-9223372036854775808", "9223372036854775807"), ("SUBSTR", "{k}s", "1", "3"),
    ("TYPE", "{k}s"), ("TYPE", "{k}missing"), ("TYPE",),
    ("TTL", "{k}s"), ("PTTL", "{k}s"), ("TTL", "{k}missing"), ("PTTL", "{k}missing"),
    ("EXPIRETIME", "{k}s"), ("PEXPIRETIME", "{k}missing"), ("TTL",), ("TTL", "{k}s", "x"),
    ("SETEX", "{k}t", "1000", "v"), ("TTL", "{k}t"),
    ("NOSUCHCOMMAND", "a", "b"), ("nosuch",),
    ("CLIENT", "SETNAME", "myname"), ("CLIENT", "GETNAME"), ("CLIENT", "SETNAME", "a b"),
    ("CLIENT", "NOSUCH"), ("CLIENT", "GETNAME", "x"),
    ("AUTH", "x"), ("AUTH", "default", "anything"), ("AUTH", "other", "x"), ("AUTH", "a", "b", "c"),
    ("HELLO", "4"), ("HELLO", "x"), ("HELLO", "2", "FOO"),
    ("CONFIG", "GET", "maxmemory"), ("CONFIG", "GET", "databasesXX"), ("CONFIG", "NOSUCH"),
    ("COMMAND", "INFO", "nosuchcommand"), ("COMMAND", "NOSUCH"),
    ("WAIT", "x", "0"), ("WAIT", "0", "-1"),
    ("TIME", "x"), ("DBSIZE", "x"),
    ("SCAN", "abc"), ("SCAN", "0", "COUNT", "0"), ("SCAN", "0", "COUNT", "x"),
    ("SCAN", "0", "FOO", "x"), ("SCAN", "0", "MATCH"), ("SCAN",), ("KEYS",), ("KEYS", "a", "b"),
    ("RANDOMKEY", "x"),
] + [
    # Read-modify-write commands: kv transactions decided at apply.
    ("SET", "{k}n", "10"), ("INCR", "{k}n"), ("INCRBY", "{k}n", "5"), ("DECR", "{k}n"),
    ("DECRBY", "{k}n", "3"), ("INCRBY", "{k}n", "-20"), ("GET", "{k}n"), ("INCR", "{k}new"),
    ("DECR", "{k}new2"), ("INCRBY", "{k}n", "x"), ("INCRBY", "{k}n", "1.5"), ("INCR",), ("INCR", "a", "b"),
    ("INCRBY", "{k}n", "99999999999999999999"), ("DECRBY", "{k}n", "-9223372036854775808"),
    ("SET", "{k}max", "9223372036854775807"), ("INCR", "{k}max"), ("DECRBY", "{k}max", "-1"),
    ("SET", "{k}min", "-9223372036854775808"), ("DECR", "{k}min"), ("INCRBY", "{k}min", "-1"),
    ("SET", "{k}s", "abc"), ("INCR", "{k}s"), ("SET", "{k}s", " 1"), ("INCR", "{k}s"),
    ("SET", "{k}s", "01"), ("INCR", "{k}s"), ("SET", "{k}s", "+1"), ("INCR", "{k}s"),
    ("SET", "{k}s", ""), ("INCR", "{k}s"), ("GET", "{k}s"),
    ("SET", "{k}t", "5", "EX", "1000"), ("INCR", "{k}t"), ("TTL", "{k}t"),
    ("INCRBYFLOAT", "{k}f", "10.5"), ("INCRBYFLOAT", "{k}f", "0.1"), ("INCRBYFLOAT", "{k}f", "-5"),
    ("INCRBYFLOAT", "{k}f", "5.0e3"), ("INCRBYFLOAT", "{k}f", "abc"), ("INCRBYFLOAT", "{k}f", "inf"),
    ("INCRBYFLOAT", "{k}f", " 1"), ("INCRBYFLOAT", "{k}f", ""), ("INCRBYFLOAT", "{k}g", "-0.0"),
    ("INCRBYFLOAT", "{k}h", "1.1"), ("INCRBYFLOAT", "{k}h", "2.2"), ("INCRBYFLOAT", "{k}h", "3e-5"),
    ("INCRBYFLOAT", "{k}i", "0x10"), ("INCRBYFLOAT", "{k}j", "1e308"), ("INCRBYFLOAT", "{k}j", "1e308"),
    ("SET", "{k}fs", "abc"), ("INCRBYFLOAT", "{k}fs", "1"), ("INCRBYFLOAT", "{k}f"),
    ("APPEND", "{k}ap", "Hello"), ("APPEND", "{k}ap", " World"), ("GET", "{k}ap"), ("APPEND", "{k}ap", ""),
    ("APPEND", "{k}ap"), ("SET", "{k}apt", "x", "EX", "1000"), ("APPEND", "{k}apt", "y"), ("TTL", "{k}apt"),
    ("SETRANGE", "{k}ap", "6", "Redis"), ("GET", "{k}ap"), ("SETRANGE", "{k}sr", "3", "x"), ("GET", "{k}sr"),
    ("SETRANGE", "{k}sr2", "3", ""), ("EXISTS", "{k}sr2"), ("SETRANGE", "{k}ap", "-1", "x"),
    ("SETRANGE", "{k}ap", "x", "y"), ("SETRANGE", "{k}ap", "0", ""), ("SETRANGE", "{k}ap", "1"),
    ("GETSET", "{k}gs", "1"), ("GETSET", "{k}gs", "2"), ("GET", "{k}gs"), ("GETSET", "{k}gs"),
    ("GETDEL", "{k}gs"), ("GETDEL", "{k}gs"), ("EXISTS", "{k}gs"), ("GETDEL",),
    ("SET", "{k}ge", "v"), ("GETEX", "{k}ge"), ("GETEX", "{k}ge", "EX", "100"), ("TTL", "{k}ge"),
    ("GETEX", "{k}ge", "PERSIST"), ("TTL", "{k}ge"), ("GETEX", "{k}ge", "PX", "0"),
    ("GETEX", "{k}ge", "EX", "-1"), ("GETEX", "{k}ge", "EX", "x"), ("GETEX", "{k}ge", "FOO"),
    ("GETEX", "{k}ge", "EX"), ("GETEX", "{k}ge", "EX", "10", "PERSIST"), ("GETEX", "{k}missing", "EX", "10"),
    ("GETEX", "{k}ge", "EXAT", "1"), ("EXISTS", "{k}ge"), ("GETEX", "{k}ge", "PXAT", "99999999999999"),
    ("SET", "{k}o", "1"), ("SET", "{k}o", "2", "XX"), ("GET", "{k}o"), ("SET", "{k}ox", "2", "XX"),
    ("EXISTS", "{k}ox"), ("SET", "{k}o", "3", "GET"), ("SET", "{k}og", "3", "GET"), ("GET", "{k}og"),
    ("SET", "{k}o", "4", "NX", "GET"), ("SET", "{k}o2", "4", "NX", "GET"), ("GET", "{k}o2"),
    ("SET", "{k}o", "5", "XX", "GET"), ("SET", "{k}ox2", "5", "XX", "GET"), ("EXISTS", "{k}ox2"),
    ("SET", "{k}o", "6", "EX", "1000"), ("SET", "{k}o", "7", "KEEPTTL"), ("TTL", "{k}o"),
    ("SET", "{k}o", "8", "KEEPTTL", "GET", "XX"), ("TTL", "{k}o"), ("SET", "{k}o", "9"), ("TTL", "{k}o"),
    ("SET", "{k}o", "10", "GET", "EX", "100"), ("TTL", "{k}o"), ("SET", "{k}o", "v", "KEEPTTL", "PX", "5"),
    ("SET", "{k}o", "v", "XX", "NX"), ("SET", "{k}o", "11", "EXAT", "1", "GET"), ("EXISTS", "{k}o"),
    ("SET", "{k}onx", "1"), ("SET", "{k}onx", "v", "NX", "PXAT", "1000"), ("GET", "{k}onx"),
    ("MSETNX", "{k}x1", "1", "{k}x2", "2"), ("MGET", "{k}x1", "{k}x2"),
    ("MSETNX", "{k}x2", "9", "{k}x3", "3"), ("MGET", "{k}x2", "{k}x3"), ("MSETNX", "{k}x1"),
    ("MSETNX", "{k}x1", "1", "{k}x2"), ("MSETNX", "{k}x4", "1", "{k}x4", "2"), ("GET", "{k}x4"),
    ("SET", "{k}e", "v"), ("EXPIRE", "{k}e", "100"), ("TTL", "{k}e"), ("EXPIRE", "{k}e", "50", "NX"),
    ("EXPIRE", "{k}e", "50", "XX"), ("TTL", "{k}e"), ("EXPIRE", "{k}e", "10", "GT"), ("EXPIRE", "{k}e", "100", "GT"),
    ("TTL", "{k}e"), ("EXPIRE", "{k}e", "200", "LT"), ("EXPIRE", "{k}e", "20", "LT"), ("TTL", "{k}e"),
    ("EXPIRE", "{k}e", "10", "NX", "XX"), ("EXPIRE", "{k}e", "10", "GT", "LT"), ("EXPIRE", "{k}e", "10", "FOO"),
    ("EXPIRE", "{k}e", "x"), ("EXPIRE", "{k}e", "9223372036854775807"), ("EXPIRE", "{k}e"),
    ("EXPIRE", "{k}missing", "10"), ("PERSIST", "{k}e"), ("PERSIST", "{k}e"), ("TTL", "{k}e"),
    ("PERSIST", "{k}missing"), ("EXPIRE", "{k}e", "10", "XX"), ("EXPIRE", "{k}e", "10", "GT"),
    ("EXPIRE", "{k}e", "10", "LT"), ("TTL", "{k}e"), ("PEXPIRE", "{k}e", "100000"), ("TTL", "{k}e"),
    ("EXPIREAT", "{k}e", "99999999999"), ("EXPIRETIME", "{k}e"), ("PEXPIREAT", "{k}e", "99999999999000"),
    ("PEXPIRETIME", "{k}e"), ("EXPIRE", "{k}e", "0"), ("EXISTS", "{k}e"), ("SET", "{k}e", "v"),
    ("EXPIRE", "{k}e", "-5"), ("EXISTS", "{k}e"), ("SET", "{k}e", "v"), ("EXPIREAT", "{k}e", "1"),
    ("EXISTS", "{k}e"), ("SET", "{k}e", "v"), ("PEXPIREAT", "{k}e", "1", "NX"), ("EXISTS", "{k}e"),
    ("SET", "{k}r", "1", "EX", "1000"), ("RENAME", "{k}r", "{k}r2"), ("GET", "{k}r2"), ("TTL", "{k}r2"),
    ("EXISTS", "{k}r"), ("RENAME", "{k}r", "{k}r3"), ("RENAME", "{k}r2", "{k}r2"), ("RENAMENX", "{k}r2", "{k}r2"),
    ("SET", "{k}r4", "x"), ("RENAMENX", "{k}r2", "{k}r4"), ("RENAMENX", "{k}r2", "{k}r5"), ("GET", "{k}r5"),
    ("RENAME", "{k}r5", "{k}r4"), ("GET", "{k}r4"), ("RENAMENX", "{k}missing", "{k}r9"), ("RENAME", "{k}r4"),
] + [
    # Hashes (listpack-sized here, so Redis's field order is insertion order, as stcache's).
    ("HSET", "{k}h", "f1", "v1"), ("HSET", "{k}h", "f2", "v2", "f3", "v3", "f1", "new"),
    ("HSET", "{k}h", "f2", "x", "f2", "y"), ("HGETALL", "{k}h"), ("HSET", "{k}h", "f4"), ("HSET", "{k}h"),
    ("HSET", "{k}h", "a", "1", "b"), ("HMSET", "{k}h", "f5", "5"), ("HMSET", "{k}h", "f5"),
    ("HGET", "{k}h", "f1"), ("HGET", "{k}h", "nofield"), ("HGET", "{k}missing", "f"), ("HGET", "{k}h"),
    ("HSET", "{k}h", "", "empty field"), ("HGET", "{k}h", ""), ("HSET", "{k}h", "bin", BINARY),
    ("HGET", "{k}h", "bin"), ("HMGET", "{k}h", "f1", "nofield", "f2"), ("HMGET", "{k}missing", "a", "b"),
    ("HMGET", "{k}h"), ("HSETNX", "{k}h", "f1", "z"), ("HSETNX", "{k}h", "f6", "6"), ("HSETNX", "{k}h", "f6"),
    ("HSETNX", "{k}hn", "a", "1"), ("HGET", "{k}hn", "a"),
    ("HEXISTS", "{k}h", "f1"), ("HEXISTS", "{k}h", "nofield"), ("HEXISTS", "{k}missing", "f"), ("HEXISTS", "{k}h"),
    ("HLEN", "{k}h"), ("HLEN", "{k}missing"), ("HLEN",), ("HLEN", "{k}h", "x"),
    ("HSTRLEN", "{k}h", "f1"), ("HSTRLEN", "{k}h", "nofield"), ("HSTRLEN", "{k}missing", "f"), ("HSTRLEN", "{k}h"),
    ("HKEYS", "{k}h"), ("HVALS", "{k}h"), ("HKEYS", "{k}missing"), ("HVALS", "{k}missing"), ("HKEYS",),
    ("HGETALL", "{k}missing"), ("HGETALL",),
    ("HDEL", "{k}h", "f2", "nofield", "f2", "f3"), ("HDEL", "{k}h", "nofield"), ("HDEL", "{k}missing", "f"),
    ("HDEL", "{k}h"), ("HGETALL", "{k}h"), ("HSET", "{k}h", "f2", "back"), ("HKEYS", "{k}h"),
    ("HSET", "{k}hd", "only", "1"), ("HDEL", "{k}hd", "only"), ("EXISTS", "{k}hd"), ("TYPE", "{k}hd"),
    ("HINCRBY", "{k}hi", "n", "5"), ("HINCRBY", "{k}hi", "n", "-7"), ("HINCRBY", "{k}hi", "n", "x"),
    ("HINCRBY", "{k}hi", "n", "1.5"), ("HINCRBY", "{k}hi", "n", "99999999999999999999"), ("HINCRBY", "{k}hi", "n"),
    ("HSET", "{k}hi", "s", "abc", "max", "9223372036854775807", "min", "-9223372036854775808", "sp", " 1"),
    ("HINCRBY", "{k}hi", "s", "1"), ("HINCRBY", "{k}hi", "sp", "1"), ("HINCRBY", "{k}hi", "max", "1"),
    ("HINCRBY", "{k}hi", "min", "-1"), ("HINCRBY", "{k}hi", "max", "-9223372036854775808"), ("HGET", "{k}hi", "max"),
    ("HINCRBYFLOAT", "{k}hf", "f", "10.5"), ("HINCRBYFLOAT", "{k}hf", "f", "0.1"), ("HINCRBYFLOAT", "{k}hf", "f", "-5"),
    ("HINCRBYFLOAT", "{k}hf", "f", "5.0e3"), ("HINCRBYFLOAT", "{k}hf", "f", "abc"), ("HINCRBYFLOAT", "{k}hf", "f", ""),
    ("HINCRBYFLOAT", "{k}hf", "f", "inf"), ("HINCRBYFLOAT", "{k}hf", "g", "1.1"), ("HINCRBYFLOAT", "{k}hf", "g", "2.2"),
    ("HINCRBYFLOAT", "{k}hf", "h", "3e-5"), ("HINCRBYFLOAT", "{k}hf", "z", "-0.0"), ("HINCRBYFLOAT", "{k}hf", "j", "1e308"),
    ("HINCRBYFLOAT", "{k}hf", "j", "1e308"), ("HSET", "{k}hf", "s", "abc"), ("HINCRBYFLOAT", "{k}hf", "s", "1"),
    ("HINCRBYFLOAT", "{k}hf", "f"), ("HGETALL", "{k}hf"),
    # Types: WRONGTYPE both ways, TYPE, and the key commands on a hash.
    ("SET", "{k}str", "v"), ("HSET", "{k}str", "a", "1"), ("HGET", "{k}str", "a"), ("HGETALL", "{k}str"),
    ("HDEL", "{k}str", "a"), ("HLEN", "{k}str"), ("HINCRBY", "{k}str", "a", "1"), ("HSCAN", "{k}str", "0"),
    ("HMGET", "{k}str", "a"), ("HEXISTS", "{k}str", "a"), ("HSTRLEN", "{k}str", "a"), ("HSETNX", "{k}str", "a", "1"),
    ("GET", "{k}h"), ("STRLEN", "{k}h"), ("GETRANGE", "{k}h", "0", "1"), ("APPEND", "{k}h", "x"),
    ("INCR", "{k}h"), ("INCRBYFLOAT", "{k}h", "1"), ("SETRANGE", "{k}h", "0", "x"), ("GETSET", "{k}h", "x"),
    ("GETDEL", "{k}h"), ("SET", "{k}h", "x", "GET"), ("GETEX", "{k}h"), ("MGET", "{k}h", "{k}str"),
    ("TYPE", "{k}h"), ("TYPE", "{k}str"), ("EXISTS", "{k}h", "{k}str"), ("HLEN", "{k}h"),
    ("EXPIRE", "{k}h", "100"), ("TTL", "{k}h"), ("HSET", "{k}h", "f7", "7"), ("TTL", "{k}h"),
    ("HINCRBY", "{k}h", "n", "1"), ("TTL", "{k}h"), ("PERSIST", "{k}h"), ("TTL", "{k}h"),
    ("PEXPIRE", "{k}h", "100000"), ("TTL", "{k}h"), ("EXPIRETIME", "{k}missing"),
    ("RENAME", "{k}h", "{k}h2"), ("TYPE", "{k}h2"), ("HGET", "{k}h2", "f1"), ("EXISTS", "{k}h"),
    ("RENAMENX", "{k}h2", "{k}str"), ("RENAMENX", "{k}h2", "{k}h"), ("HLEN", "{k}h"),
    ("HSET", "{k}hx", "a", "1"), ("EXPIRE", "{k}hx", "0"), ("EXISTS", "{k}hx"), ("HGET", "{k}hx", "a"),
    ("HSET", "{k}hx", "a", "1"), ("PEXPIREAT", "{k}hx", "1"), ("HLEN", "{k}hx"),
    ("HSET", "{k}hs", "a", "1"), ("SET", "{k}hs", "now a string"), ("GET", "{k}hs"), ("TYPE", "{k}hs"),
    ("HSET", "{k}hdel", "a", "1"), ("DEL", "{k}hdel", "{k}missing"), ("UNLINK", "{k}h", "{k}none"),
    ("SET", "{k}str2", "x"), ("RENAME", "{k}str2", "{k}hn"), ("TYPE", "{k}hn"),
    # HSCAN (a small hash: one page, cursor 0, as Redis's listpack answers)
    ("HSET", "{k}sc", "a1", "1", "a2", "2", "b1", "3", "c", "4"), ("HSCAN", "{k}sc", "0"),
    ("HSCAN", "{k}sc", "0", "MATCH", "a*"), ("HSCAN", "{k}sc", "0", "COUNT", "100"),
    ("HSCAN", "{k}sc", "0", "MATCH", "*", "COUNT", "10"), ("HSCAN", "{k}sc", "0", "MATCH", "zz*"),
    ("HSCAN", "{k}missing", "0"), ("HSCAN", "{k}sc", "x"), ("HSCAN", "{k}sc", "0", "COUNT", "0"),
    ("HSCAN", "{k}sc", "0", "COUNT", "x"), ("HSCAN", "{k}sc", "0", "FOO"), ("HSCAN", "{k}sc", "0", "MATCH"),
    ("HSCAN", "{k}sc"),
    ("FLUSHDB", "FOO"), ("FLUSHALL", "SYNC", "x"), ("FLUSHDB",), ("DBSIZE",), ("FLUSHALL", "ASYNC"),
    ("SET", "{k}after", "1"),
]

# MULTI/EXEC sequences, each run on one connection (the replies of every
# command, QUEUED included, are compared).
MULTI_CASES = [
    [("MULTI",), ("SET", "{k}a", "1"), ("INCR", "{k}a"), ("GET", "{k}a"), ("MGET", "{k}a", "{k}none"),
     ("EXPIRE", "{k}a", "100"), ("TTL", "{k}a"), ("EXISTS", "{k}a", "{k}none"), ("STRLEN", "{k}a"),
     ("TYPE", "{k}a"), ("GETRANGE", "{k}a", "0", "0"), ("DEL", "{k}a", "{k}none"), ("EXEC",)],
    [("MULTI",), ("SET", "{k}b", "x"), ("INCR", "{k}b"), ("SET", "{k}b", "v", "BAD"), ("APPEND", "{k}b", "y"),
     ("GET", "{k}b"), ("EXEC",)],
    [("MULTI",), ("SET", "{k}c", "1"), ("NOSUCHCMD",), ("EXEC",), ("GET", "{k}c")],
    [("MULTI",), ("INCR",), ("SET", "{k}c", "1"), ("EXEC",), ("GET", "{k}c")],
    [("MULTI",), ("EXEC",)], [("EXEC",)], [("DISCARD",)],
    [("MULTI",), ("MULTI",), ("WATCH", "{k}d"), ("SET", "{k}d", "1"), ("DISCARD",), ("GET", "{k}d")],
    [("WATCH", "{k}e"), ("MULTI",), ("SET", "{k}e", "1"), ("EXEC",), ("GET", "{k}e")],
    [("WATCH", "{k}e"), ("SET", "{k}e", "2"), ("MULTI",), ("SET", "{k}e", "3"), ("EXEC",), ("GET", "{k}e")],
    [("WATCH", "{k}e"), ("UNWATCH",), ("SET", "{k}e", "4"), ("MULTI",), ("GET", "{k}e"), ("EXEC",)],
    [("WATCH", "{k}e"), ("EXPIRE", "{k}e", "100"), ("MULTI",), ("GET", "{k}e"), ("EXEC",)],
    [("WATCH", "{k}f"), ("MULTI",), ("SET", "{k}f", "1"), ("DISCARD",), ("SET", "{k}f", "x"), ("MULTI",),
     ("GET", "{k}f"), ("EXEC",)],
    [("MULTI",), ("HSET", "{k}mh", "a", "1", "b", "2"), ("HINCRBY", "{k}mh", "a", "5"), ("HGET", "{k}mh", "a"),
     ("HMGET", "{k}mh", "a", "zz", "b"), ("HSETNX", "{k}mh", "b", "9"), ("HINCRBYFLOAT", "{k}mh", "c", "1.5"),
     ("HDEL", "{k}mh", "b"), ("HLEN", "{k}mh"), ("HKEYS", "{k}mh"), ("HVALS", "{k}mh"), ("HGETALL", "{k}mh"),
     ("HEXISTS", "{k}mh", "a"), ("HSTRLEN", "{k}mh", "c"), ("TYPE", "{k}mh"), ("GET", "{k}mh"),
     ("EXISTS", "{k}mh"), ("MGET", "{k}mh"), ("SET", "{k}ms", "x"), ("HGET", "{k}ms", "a"), ("EXEC",),
     ("HGETALL", "{k}mh")],
    [("HSET", "{k}wh", "a", "1"), ("WATCH", "{k}wh"), ("HSET", "{k}wh", "a", "2"), ("MULTI",),
     ("HSET", "{k}wh", "a", "3"), ("EXEC",), ("HGET", "{k}wh", "a")],
    [("HSET", "{k}wh2", "a", "1"), ("WATCH", "{k}wh2"), ("MULTI",), ("HINCRBY", "{k}wh2", "a", "1"), ("EXEC",),
     ("HGET", "{k}wh2", "a")],
    [("MULTI",), ("MSET", "{k}g1", "1", "{k}g2", "2"), ("RENAME", "{k}g1", "{k}g3"),
     ("RENAME", "{k}none", "{k}g4"), ("INCRBYFLOAT", "{k}g2", "1.5"), ("GETDEL", "{k}g3"), ("EXEC",)],
]


def expand(args, prefix):
    out = []
    for a in args:
        if isinstance(a, str):
            a = a.replace("{k}", prefix)
        out.append(a)
    return out


def run_cases(client, prefix):
    return [outcome(lambda a=a: client.execute_command(*expand(a, prefix))) for a in CASES]


def raw_replies(port, seq, prefix):
    """Sends one MULTI_CASES sequence on a fresh connection and returns the
    raw reply of every command (redis-py's own MULTI handling would hide
    the QUEUED replies)."""
    import redis
    conn = redis.Connection(host="127.0.0.1", port=port, socket_timeout=scaled(10))
    out = []
    try:
        for a in seq:
            conn.send_command(*expand(a, prefix))
            try:
                out.append(conn.read_response())
            except redis.exceptions.ResponseError as e:
                out.append(("error", str(e)))
    finally:
        conn.disconnect()

    def norm(v):  # errors inside an EXEC reply arrive as exception objects
        if isinstance(v, Exception):
            return ("error", str(v))
        if isinstance(v, list):
            return [norm(x) for x in v]
        return v
    return [norm(v) for v in out]


class Compare(Scenario):
    """Every case through redis-server and through stcache's leader and a
    follower: the same replies, one by one."""

    def run(self):
        import redis
        tmp = harness.tempfile.mkdtemp(prefix="stcache-redis-ref-")
        ref, ref_port = start_redis_server(tmp)
        try:
            c, ports, leader = start_cluster(self)
            follower = [n for n in c.nodes.values() if n.id != leader.id][0]
            ref_client = redis.Redis(host="127.0.0.1", port=ref_port)
            for node, tag in ((leader, "leader"), (follower, "follower")):
                with step("the cases through the %s (%r) and through redis-server" % (tag, node)):
                    prefix = "%s:" % tag
                    st = redis.Redis(host="127.0.0.1", port=ports[node.id], socket_timeout=scaled(10))
                    want = run_cases(ref_client, prefix)
                    got = run_cases(st, prefix)
                    bad = [(CASES[i], want[i], got[i]) for i in range(len(CASES)) if want[i] != got[i]]
                    for case, w, g in bad:
                        log("  differs: %r\n    redis:   %r\n    stcache: %r" % (case, w, g))
                    check(not bad, "%d of %d replies differ from redis-server's" % (len(bad), len(CASES)))
                    log("  %d replies equal to redis-server's" % len(CASES))
            for node, tag in ((leader, "leader"), (follower, "follower")):
                with step("MULTI/EXEC/WATCH sequences through the %s and through redis-server" % tag):
                    bad = 0
                    for i, seq in enumerate(MULTI_CASES):
                        prefix = "multi%d:%s:" % (i, tag)
                        want = raw_replies(ref_port, seq, prefix)
                        got = raw_replies(ports[node.id], seq, prefix)
                        if want != got:
                            bad += 1
                            log("  differs: %r\n    redis:   %r\n    stcache: %r" % (seq, want, got))
                    check(bad == 0, "%d of %d sequences differ" % (bad, len(MULTI_CASES)))
                    log("  %d sequences equal to redis-server's" % len(MULTI_CASES))
            with step("replies that depend on the server have the right shape"):
                st = redis.Redis(host="127.0.0.1", port=ports[follower.id])
                t = st.time()
                check(isinstance(t, tuple) and len(t) == 2 and t[0] > 1600000000, "TIME: %r" % (t,))
                info = st.info()
                check(info.get("redis_version") and "connected_clients" in info, "INFO: %r" % info)
                raft = st.info("raft")
                check(raft.get("role") == "follower" and raft.get("leader") == leader.id,
                      "INFO raft on a follower: %r" % raft)
                check(st.execute_command("WAIT", "1", "0") == 2, "WAIT answers the 2 replicas")
                check(st.command_count() >= 20, "COMMAND COUNT")
                cinfo = st.execute_command("COMMAND", "INFO", "get")
                check(cinfo.get("get", {}).get("arity") == 2, "COMMAND INFO get: %r" % cinfo)
                check(st.client_id() > 0, "CLIENT ID")
                check(b"id=" in st.execute_command("CLIENT", "LIST"), "CLIENT LIST")
                check(st.dbsize() > 0, "DBSIZE counts the keys written")
                st.set("ttl:k", "v", px=100000)
                pttl = st.pttl("ttl:k")
                check(90000 < pttl <= 100000, "PTTL after SET PX 100000: %r" % pttl)
                pexp = st.execute_command("PEXPIRETIME", "ttl:k")
                check(abs(pexp - (time.time() * 1000 + pttl)) < 5000, "PEXPIRETIME: %r" % pexp)
                check(st.config_get("maxmemory") == {"maxmemory": "0"}, "CONFIG GET maxmemory")
                # One database (docs/REDIS.md): SELECT of another is an error.
                check(outcome(lambda: st.execute_command("SELECT", "1")) ==
                      ("error", "DB index is out of range"), "SELECT 1")
            with step("a Redis hash over HTTP: GET answers 409 wrong_type, listings mark it, PUT replaces it"):
                w = redis.Redis(host="127.0.0.1", port=ports[leader.id])
                check(w.hset("http:h", mapping={"a": "1", "b": "2"}) == 2, "HSET")
                r = follower.get("http:h")
                check(r.status == 409 and r.json().get("code") == "wrong_type",
                      "GET /kv of a hash: %r %r" % (r.status, r.body[:200]))
                r = follower.request("GET", "/kv?prefix=http:")
                items = r.json().get("kvs", []) if r.status == 200 else []
                check(len(items) == 1 and items[0].get("value_type") == "hash" and "value" not in items[0],
                      "a listing marks the hash: %r" % (items,))
                check(leader.put("http:h", b"s").status in (200, 201), "PUT over a hash")
                check(w.type("http:h") == b"string" and w.get("http:h") == b"s", "PUT replaced the hash")
            with step("READONLY reads locally, READWRITE linearizably; both see acknowledged writes"):
                w = redis.Redis(host="127.0.0.1", port=ports[leader.id])
                r = redis.Redis(host="127.0.0.1", port=ports[follower.id], single_connection_client=True)
                check(r.execute_command("READONLY") in (b"OK", True), "READONLY")
                w.set("ro:key", "1")
                wait_for("the follower applies the write", lambda: r.get("ro:key") == b"1",
                         timeout=scaled(10))
                check(r.execute_command("READWRITE") in (b"OK", True), "READWRITE")
                w.set("ro:key", "2")
                check(r.get("ro:key") == b"2", "a linearizable read sees the acknowledged write")
        finally:
            stop_redis_server(ref)
            shutil.rmtree(tmp, ignore_errors=True)


def raw_exchange(port, data, want_close=False):
    """Sends bytes, returns what came back until the reply stops (or EOF)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=scaled(5))
    s.sendall(data)
    got = b""
    closed = False
    s.settimeout(scaled(0.5) if not want_close else scaled(5))
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                closed = True
                break
            got += chunk
    except socket.timeout:
        pass
    s.close()
    return got, closed


class Cli(Scenario):
    """redis-cli against a node; raw inline commands; protocol errors."""

    def run(self):
        import redis
        c, ports, leader = start_cluster(self, "redis-cli")
        port = ports[leader.id]
        follower = [n for n in c.nodes.values() if n.id != leader.id][0]
        with step("redis-cli PING, SET, GET (through a follower too)"):
            def cli(p, *args):
                return subprocess.run(["redis-cli", "-p", str(p)] + list(args), capture_output=True,
                                      timeout=scaled(20)).stdout.decode().strip()
            check(cli(port, "PING") == "PONG", "redis-cli PING")
            check(cli(ports[follower.id], "SET", "cli:k", "hello world") == "OK", "redis-cli SET")
            check(cli(port, "GET", "cli:k") == "hello world", "redis-cli GET")
            check(cli(port, "GET", "cli:missing") == "", "redis-cli GET of a missing key")
            check("ERR unknown command" in cli(port, "NOSUCH"), "redis-cli unknown command")
        with step("an inline PING over a raw connection, and pipelined inline commands"):
            got, _ = raw_exchange(port, b"PING\r\n")
            check(got == b"+PONG\r\n", "inline PING: %r" % got)
            got, _ = raw_exchange(port, b"SET raw:k \"a b\"\r\nGET raw:k\r\nECHO 'x y'\n")
            check(got == b"+OK\r\n$3\r\na b\r\n$3\r\nx y\r\n", "pipelined inline: %r" % got)
        with step("a protocol error is answered after the replies before it, then the connection closes"):
            got, closed = raw_exchange(port, b"*1\r\n$4\r\nPING\r\n*1\r\nx\r\nPING\r\n", want_close=True)
            check(got == b"+PONG\r\n-ERR Protocol error: expected '$', got 'x'\r\n" and closed,
                  "protocol error: %r closed=%s" % (got, closed))
            got, closed = raw_exchange(port, b"SET \"abc\r\n", want_close=True)
            check(got == b"-ERR Protocol error: unbalanced quotes in request\r\n" and closed,
                  "unbalanced quotes: %r closed=%s" % (got, closed))
            got, closed = raw_exchange(port, b"*1\r\n$99999999999\r\n", want_close=True)
            check(got == b"-ERR Protocol error: invalid bulk length\r\n" and closed,
                  "bulk over --max-value-bytes: %r" % got)
        with step("an HTTP request (a web page aiming at the port) is closed unanswered, as Redis does"):
            got, closed = raw_exchange(port, b"POST / HTTP/1.1\r\nHost: x\r\n\r\nSET web:k 1\r\n",
                                       want_close=True)
            check(got == b"" and closed, "POST: %r closed=%s" % (got, closed))
            check(redis.Redis(host="127.0.0.1", port=port).get("web:k") is None, "the command after the POST ran")
        with step("QUIT answers +OK and closes"):
            got, closed = raw_exchange(port, b"QUIT\r\nPING\r\n", want_close=True)
            check(got == b"+OK\r\n" and closed, "QUIT: %r closed=%s" % (got, closed))
            # With arguments too, as Redis 7.0 answers (not in the compare
            # cases: the reference server closes its connection in a race
            # with the client's next command).
            got, closed = raw_exchange(port, b"QUIT x y\r\nPING\r\n", want_close=True)
            check(got == b"+OK\r\n" and closed, "QUIT x y: %r closed=%s" % (got, closed))
        with step("RESP3 after HELLO 3: nulls, maps and verbatim strings"):
            got, _ = raw_exchange(port, b"HELLO 3\r\nGET raw:missing\r\nCONFIG GET maxclients\r\n")
            check(got.startswith(b"%7\r\n") and got.endswith(b"_\r\n%1\r\n$10\r\nmaxclients\r\n$5\r\n10000\r\n"),
                  "RESP3 replies: %r" % got)
        with step("pipelines through redis-py: replies in order, each read sees the writes before it"):
            r = redis.Redis(host="127.0.0.1", port=ports[follower.id])
            p = r.pipeline(transaction=False)
            for i in range(1000):
                p.set("pipe:%d" % i, str(i))
            for i in range(1000):
                p.get("pipe:%d" % i)
            res = p.execute()
            check(len(res) == 2000 and all(res[i] is True and res[1000 + i] == str(i).encode()
                                           for i in range(1000)), "pipelined replies out of order")
            p = r.pipeline(transaction=False)
            for i in range(100):
                p.get("alt:k")
                p.set("alt:k", str(i))
            res = p.execute()
            check(res[0] is None and all(res[2 * i] == str(i - 1).encode() for i in range(1, 100)),
                  "a pipelined GET sees exactly the SETs sent before it: %r" % res[:6])


class Failover(Scenario):
    """kill -9 the leader while a redis-py client writes through a follower."""

    def run(self):
        import redis
        c, ports, leader = start_cluster(self, "redis-failover")
        survivors = [n for n in c.nodes.values() if n.id != leader.id]
        via = survivors[0]
        acked = {}
        errors = []
        stop = threading.Event()

        def writer():
            r = redis.Redis(host="127.0.0.1", port=ports[via.id], socket_timeout=scaled(10))
            i = 0
            while not stop.is_set():
                key = "fo:%d" % i
                try:
                    if r.set(key, str(i)):
                        acked[key] = str(i).encode()
                except redis.exceptions.RedisError as e:
                    errors.append((time.monotonic(), str(e)))
                i += 1
        t = threading.Thread(target=writer)
        t.start()
        try:
            with step("writes flow, then the leader is killed"):
                wait_for("100 acknowledged writes", lambda: len(acked) >= 100, timeout=scaled(20))
                before = len(acked)
                killed_at = time.monotonic()
                leader.kill9()
            with step("a new leader is elected and writes flow again"):
                new = c.wait_leader(nodes=survivors)
                elected_at = time.monotonic()
                wait_for("100 more acknowledged writes", lambda: len(acked) >= before + 100 + 0,
                         timeout=scaled(30))
        finally:
            stop.set()
            t.join()
        with step("errors only around the election, every acknowledged write readable"):
            late = [e for e in errors if e[0] > elected_at + scaled(2)]
            log("  %d acknowledged writes, %d errors (%.2f s kill to leader), e.g. %r" % (
                len(acked), len(errors), elected_at - killed_at, errors[:2]))
            check(not late, "errors after the new leader served: %r" % late[:3])
            check(all(e[0] >= killed_at for e in errors), "errors before the kill: %r" % errors[:3])
            r = redis.Redis(host="127.0.0.1", port=ports[new.id])
            keys = sorted(acked)
            lost = []
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                for k, v in zip(chunk, r.mget(chunk)):
                    if v != acked[k]:
                        lost.append((k, v))
            check(not lost, "%d acknowledged writes lost, e.g. %r" % (len(lost), lost[:3]))
        with step("without a quorum, a node answers -TRYAGAIN once it knows no leader"):
            other = [n for n in survivors if n.id != new.id][0]
            new.kill9()
            r = redis.Redis(host="127.0.0.1", port=ports[other.id], socket_timeout=scaled(30))
            seen = []

            def refused():
                try:
                    r.set("noquorum", "x")
                    seen.append("OK")
                except redis.exceptions.ResponseError as e:
                    seen.append(str(e))
                    return str(e).startswith("TRYAGAIN no leader")
                return False
            wait_for("a TRYAGAIN answer", refused, timeout=scaled(30), interval=0.2)
            check("OK" not in seen, "a write was acknowledged without a quorum: %r" % seen)
            log("  answers: %r" % sorted(set(seen)))


class Hiredis(Scenario):
    """The C client hiredis pipelines 2100 commands through a follower
    (tests/redis/hiredis_pipeline.c, built when libhiredis-dev is there)."""

    def run(self):
        prog = os.environ.get("ST_HIREDIS_PIPELINE")
        if not prog or not os.access(prog, os.X_OK):
            log("SKIP: hiredis_pipeline not built (libhiredis-dev missing)")
            sys.exit(SKIP)
        c, ports, leader = start_cluster(self, "redis-hiredis")
        follower = [n for n in c.nodes.values() if n.id != leader.id][0]
        with step("hiredis pipelines through a follower"):
            p = subprocess.run([prog, str(ports[follower.id])], capture_output=True,
                               timeout=scaled(60))
            log("  " + (p.stdout + p.stderr).decode().strip())
            check(p.returncode == 0, "hiredis_pipeline failed")


class SlowReader(Scenario):
    """A client that sends without reading is disconnected once the output
    queued for clients passes --client-output-bytes-max; others go on."""

    def run(self):
        import redis
        c = self.cluster("redis-slow", ["--log-level", "info", "--max-value-bytes", "262144",
                                        "--client-output-bytes-max", "1048576",
                                        "--conn-output-bytes-max", "65536"])
        n = c.new_node(1)
        (port,) = reserve_ports(1)
        n.extra_args = ["--redis", "127.0.0.1:%d" % port]
        n.start(["--bootstrap"])
        c.wait_leader([n])
        r = redis.Redis(host="127.0.0.1", port=port)
        r.set("big", b"x" * 200000)
        with step("a client pipelines 2000 GETs of a 200 kB value and reads nothing"):
            s = socket.create_connection(("127.0.0.1", port))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.setblocking(False)
            req = b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n" * 2000
            sent = 0
            deadline = time.monotonic() + scaled(20)
            closed = False
            while time.monotonic() < deadline and not closed:
                try:
                    if sent < len(req):
                        sent += s.send(req[sent:sent + 65536])
                    else:
                        time.sleep(0.05)
                except BlockingIOError:
                    time.sleep(0.05)
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                info = r.info("stats")
                if info.get("client_output_buffer_limit_disconnections", 0) >= 1:
                    closed = True
            s.close()
            check(closed, "the slow reader was not disconnected")
        with step("a normal client is served meanwhile and afterwards"):
            check(len(r.get("big")) == 200000, "GET after the drop")
            check(r.info("clients")["connected_clients"] >= 1, "INFO clients")


class Tls(Scenario):
    """The Redis port with client TLS (--cert-file, --client-cert-auth):
    redis-cli --tls with a client certificate of the cluster CA is served,
    pipelined through redis-py over TLS too; without --tls, without a
    certificate, or with one of another CA it gets nothing."""

    def run(self):
        import redis
        c = self.cluster("redis-tls", tls=True, client_tls=True)
        ports, leader = start_redis_cluster(c)
        follower = next(n for n in c.running() if n.id != leader.id)
        ca = os.path.join(c.certs, "ca.crt")
        crt, key = c.client_cert("alice")

        def cli(p, *args, tls=("--tls", "--cacert", ca, "--cert", crt, "--key", key)):
            r = subprocess.run(["redis-cli", "-p", str(p)] + list(tls) + list(args),
                               capture_output=True, timeout=scaled(20))
            return (r.stdout + r.stderr).decode(errors="replace").strip()

        with step("redis-cli --tls with a client certificate: PING, SET via a follower, GET"):
            check(cli(ports[leader.id], "PING") == "PONG", "redis-cli --tls PING")
            check(cli(ports[follower.id], "SET", "tls:k", "over tls") == "OK", "SET via a follower")
            check(cli(ports[leader.id], "GET", "tls:k") == "over tls", "GET")
        with step("a pipeline of 2000 commands through redis-py over TLS, replies in order"):
            r = redis.Redis(host="127.0.0.1", port=ports[follower.id], ssl=True, ssl_ca_certs=ca, ssl_certfile=crt,
                            ssl_keyfile=key)
            p = r.pipeline(transaction=False)
            for i in range(1000):
                p.set("tpipe:%d" % i, "x" * (i % 700))
            for i in range(1000):
                p.get("tpipe:%d" % i)
            res = p.execute()
            check(len(res) == 2000 and all(res[1000 + i] == b"x" * (i % 700) for i in range(1000)),
                  "pipelined replies over TLS")
            check(len(r.get("tpipe:699")) == 699, "GET over TLS")
        with step("plaintext, no client certificate, another CA's certificate: refused"):
            out = cli(ports[leader.id], "PING", tls=())
            check("PONG" not in out, "plaintext PING answered: %r" % out)
            out = cli(ports[leader.id], "PING", tls=("--tls", "--cacert", ca))
            check("PONG" not in out, "PING without a client certificate answered: %r" % out)
            other = os.path.join(c.dir, "other-ca")
            harness.gen_certs(other, "ca")
            harness.gen_certs(other, "client", "mallory")
            out = cli(ports[leader.id], "PING", tls=(
                "--tls", "--cacert", ca, "--cert", os.path.join(other, "client-mallory.crt"),
                "--key", os.path.join(other, "client-mallory.key")))
            check("PONG" not in out, "PING with another CA's certificate answered: %r" % out)
            log("refused: %s" % out[:200])


KEY_NAMES = (["user:%d" % i for i in range(30)] + ["user:%d:name" % i for i in range(10)]
             + ["h%sllo" % c for c in "aebx"] + ["a*b", "a\\b", "ab", "x[y]", "-dash", "zz"]
             + ["num%03d" % i for i in range(50)])
PATTERNS = ["*", "user:*", "user:?", "user:??", "*[0-9]", "[^u]*", "user:1*", "a\\*b", "a*b",
            "h[ae]llo", "h[^e]llo", "h[a-c]llo", "h[c-a]llo", "missing*", "*:*:*", "?", "x\\[y]",
            "x[[]y]", "num0[1-3]?", "*llo", "zz", "-*", "[", "a[", "user:[12]*"]


class Scan(Scenario):
    """KEYS matches redis-server pattern by pattern; SCAN over 10k keys
    under concurrent writes returns every key present throughout; RANDOMKEY
    returns a key."""

    def run(self):
        import redis
        tmp = harness.tempfile.mkdtemp(prefix="stcache-redis-ref-")
        ref, ref_port = start_redis_server(tmp)
        try:
            c, ports, leader = start_cluster(self, "redis_scan")
            follower = [n for n in c.nodes.values() if n.id != leader.id][0]
            ref_client = redis.Redis(host="127.0.0.1", port=ref_port)
            st = redis.Redis(host="127.0.0.1", port=ports[follower.id], socket_timeout=scaled(10))
            with step("KEYS with %d patterns over %d keys: the same keys as redis-server"
                      % (len(PATTERNS), len(KEY_NAMES))):
                for k in KEY_NAMES:
                    ref_client.set(k, "v")
                    st.set(k, "v")
                bad = []
                for p in PATTERNS:
                    want = sorted(ref_client.keys(p))
                    got = st.keys(p)
                    check(got == sorted(got), "KEYS %r not in byte order" % p)
                    if got != want:
                        bad.append((p, want, got))
                for p, w, g in bad:
                    log("  KEYS %r: redis %r, stcache %r" % (p, w[:8], g[:8]))
                check(not bad, "%d of %d patterns differ" % (len(bad), len(PATTERNS)))
                rk = st.randomkey()
                check(rk is not None and rk.decode() in KEY_NAMES, "RANDOMKEY: %r" % rk)
            n = count(10000, 2000)
            with step("SCAN MATCH s:* COUNT 97 over %d keys while other keys churn" % n):
                pipe = st.pipeline(transaction=False)
                for i in range(n):
                    pipe.set("s:%05d" % i, "v")
                    if i % 500 == 499:
                        pipe.execute()
                pipe.execute()
                stop = threading.Event()
                errs = []

                def churn():
                    w = redis.Redis(host="127.0.0.1", port=ports[leader.id], socket_timeout=scaled(10))
                    i = 0
                    try:
                        while not stop.is_set():
                            w.set("s:%05d+%d" % (i % n, i), "x")  # between the fixed keys
                            if i >= 20:
                                w.delete("s:%05d+%d" % ((i - 20) % n, i - 20))
                            i += 1
                    except Exception as e:  # reported below
                        errs.append(e)
                t = threading.Thread(target=churn, daemon=True)
                t.start()
                seen, calls, cursor = [], 0, 0
                while True:
                    cursor, keys = st.scan(cursor=cursor, match="s:*", count=97)
                    seen.extend(k.decode() for k in keys)
                    calls += 1
                    if cursor == 0:
                        break
                stop.set()
                t.join()
                check(not errs, "churn failed: %r" % errs[:1])
                fixed = ["s:%05d" % i for i in range(n)]
                got = [k for k in seen if "+" not in k]
                missing = set(fixed) - set(got)
                check(not missing, "%d keys present throughout not returned (%s)"
                      % (len(missing), sorted(missing)[:3]))
                check(len(got) == len(set(got)), "a key returned twice")
                log("%d calls, %d fixed keys each once, %d churned keys seen"
                    % (calls, len(got), len(seen) - len(got)))
                check(outcome(lambda: st.execute_command("SCAN", "12345")) ==
                      ("error", "invalid cursor"), "an unknown cursor is refused")
                check(st.scan(0, _type="list") == (0, []), "TYPE list: nothing")
                for i in range(3):
                    st.hset("s:hash%d" % i, "f", "v")
                hashes = set(st.scan_iter(match="s:*", count=1000, _type="hash"))
                check(hashes == {b"s:hash0", b"s:hash1", b"s:hash2"}, "TYPE hash: %r" % hashes)
                strings = set(st.scan_iter(match="s:*", count=1000, _type="string"))
                check({k.encode() for k in fixed} <= strings and not (strings & hashes),
                      "TYPE string: the strings, no hash")
            with step("a hash of 300 fields (hashtable-encoded in Redis): HGETALL, HSCAN, HMGET as redis-server"):
                fields = {"f%03d" % i: "v%d" % (i * 7) for i in range(300)}
                for cl in (ref_client, st):
                    for i in range(0, 300, 100):
                        part = dict(list(fields.items())[i:i + 100])
                        cl.hset("big:h", mapping=part)
                    cl.hdel("big:h", "f007", "f100")
                    cl.hincrby("big:h", "cnt", 5)
                want = ref_client.hgetall("big:h")
                got = st.hgetall("big:h")
                check(got == want, "HGETALL as a dict: %d vs %d fields" % (len(got), len(want)))
                check(st.hlen("big:h") == ref_client.hlen("big:h") == 299, "HLEN")
                check(sorted(st.hkeys("big:h")) == sorted(ref_client.hkeys("big:h")), "HKEYS as a set")
                names = ["f%03d" % i for i in range(0, 310, 7)]
                check(st.hmget("big:h", names) == ref_client.hmget("big:h", names), "HMGET")
                seen, cur, calls = {}, 0, 0
                while True:
                    cur, page = st.hscan("big:h", cur, count=50)
                    calls += 1
                    for f, v in page.items():
                        check(f not in seen, "HSCAN returned %r twice" % f)
                        seen[f] = v
                    if cur == 0:
                        break
                check(seen == want and calls == 6, "HSCAN COUNT 50: %d fields in %d calls" % (len(seen), calls))
                m = set(st.hscan_iter("big:h", match="f2*", count=1000))
                check(m == {(f, v) for f, v in want.items() if f.startswith(b"f2")}, "HSCAN MATCH f2*")
        finally:
            stop_redis_server(ref)
            shutil.rmtree(tmp, ignore_errors=True)


class TxnFailover(Scenario):
    """Concurrent transactions move units between accounts (HTTP POST /txn
    with value compares, Redis MULTI/EXEC with DECRBY/INCRBY, Redis
    WATCH/MULTI/EXEC read-modify-write) while the leader is killed with
    kill -9: the total never changes, on any node, after the killed node
    recovers. A transaction whose outcome a client could not learn applied
    whole or not at all, so the sum holds whatever the clients saw."""

    ACCOUNTS = 8
    START = 100

    def run(self):
        import json
        import random
        import redis
        c, ports, leader = start_cluster(self, "redis-txn")
        accts = ["acct:%d" % i for i in range(self.ACCOUNTS)]
        total = self.ACCOUNTS * self.START
        r0 = redis.Redis(host="127.0.0.1", port=ports[leader.id], socket_timeout=scaled(10))
        r0.mset({a: str(self.START) for a in accts})
        done = {"http": 0, "multi": 0, "watch": 0}
        failed = {"http": 0, "multi": 0, "watch": 0}
        stop = threading.Event()
        alive = dict(c.nodes)
        lock = threading.Lock()

        def pick():
            a, b = random.sample(accts, 2)
            with lock:
                n = random.choice(list(alive.values()))
            return n, a, b

        def http_mover():
            while not stop.is_set():
                n, a, b = pick()
                try:
                    got = n.request("POST", "/txn", json.dumps(
                        {"success": [{"get": {"key": a}}, {"get": {"key": b}}]}).encode(),
                        {"Content-Type": "application/json"})
                    if got.status != 200:
                        raise harness.Unreachable(got.status)
                    va, vb = [int(x["value"]) for x in got.json()["results"]]
                    body = {"compare": [{"key": a, "target": "value", "value": str(va)},
                                        {"key": b, "target": "value", "value": str(vb)}],
                            "success": [{"put": {"key": a, "value": str(va - 1)}},
                                        {"put": {"key": b, "value": str(vb + 1)}}]}
                    got = n.request("POST", "/txn", json.dumps(body).encode(),
                                    {"Content-Type": "application/json"})
                    if got.status == 200 and got.json()["succeeded"]:
                        done["http"] += 1
                    else:
                        failed["http"] += 1
                except (harness.Unreachable, ValueError, KeyError, TypeError):
                    failed["http"] += 1

        def multi_mover():
            while not stop.is_set():
                n, a, b = pick()
                try:
                    p = redis.Redis(host="127.0.0.1", port=ports[n.id], socket_timeout=scaled(10)).pipeline()
                    p.decrby(a, 1)
                    p.incrby(b, 1)
                    p.execute()
                    done["multi"] += 1
                except redis.exceptions.RedisError:
                    failed["multi"] += 1

        def watch_mover():
            while not stop.is_set():
                n, a, b = pick()
                try:
                    with redis.Redis(host="127.0.0.1", port=ports[n.id], socket_timeout=scaled(10)).pipeline() as p:
                        p.watch(a, b)
                        va, vb = int(p.get(a)), int(p.get(b))
                        p.multi()
                        p.set(a, va - 1)
                        p.set(b, vb + 1)
                        p.execute()
                        done["watch"] += 1
                except redis.exceptions.RedisError:
                    failed["watch"] += 1

        def moved():
            return done["http"] + done["multi"] + done["watch"]

        want = 200 // harness.WORK_DIV
        threads = [threading.Thread(target=f) for f in (http_mover, http_mover, multi_mover,
                                                        multi_mover, watch_mover, watch_mover)]
        for t in threads:
            t.start()
        try:
            with step("transactions move units, then the leader is killed with kill -9"):
                wait_for("%d transactions" % want, lambda: moved() >= want, timeout=scaled(30))
                with lock:
                    del alive[leader.id]
                leader.kill9()
                before = moved()
            with step("a new leader is elected and transactions go on"):
                new = c.wait_leader(nodes=list(alive.values()))
                wait_for("%d more transactions" % want, lambda: moved() >= before + want,
                         timeout=scaled(30))
        finally:
            stop.set()
            for t in threads:
                t.join()
        log("  moved: %r, failed or aborted: %r" % (done, failed))
        check(min(done.values()) > 0, "every kind of transaction applied at least once: %r" % done)

        def values(node, stale):
            rr = redis.Redis(host="127.0.0.1", port=ports[node.id], socket_timeout=scaled(10),
                             single_connection_client=True)
            if stale:
                rr.execute_command("READONLY")
            return [int(v) for v in rr.mget(accts)]

        with step("the sum is unchanged, read linearizably from the new leader"):
            vals = values(new, False)
            check(sum(vals) == total, "sum %d != %d: %r" % (sum(vals), total, vals))
            log("  balances %r, sum %d" % (vals, sum(vals)))
        with step("the killed node recovers and holds the same balances"):
            leader.start([])
            wait_for("the restarted node's state equals the leader's",
                     lambda: leader.running() and _safe(lambda: values(leader, True)) == vals,
                     timeout=scaled(30))
            for n in c.nodes.values():
                check(sum(values(n, True)) == total, "sum on %r" % n)


def _safe(fn):
    """fn() or None when the node does not answer yet."""
    import redis
    try:
        return fn()
    except redis.exceptions.RedisError:
        return None


SCENARIOS = {"compare": Compare, "cli": Cli, "failover": Failover, "hiredis": Hiredis,
             "slow_reader": SlowReader, "tls": Tls, "scan": Scan, "txn_failover": TxnFailover}

import redis_auth  # noqa: E402

SCENARIOS.update(redis_auth.SCENARIOS)

import redis_pubsub  # noqa: E402

SCENARIOS.update(redis_pubsub.SCENARIOS)

if __name__ == "__main__":
    skip_unless_tools()
    harness.main(SCENARIOS)
