#!/usr/bin/env python3
"""Three kvexample processes (examples/kvexample): write through the leader,
read through a follower, add a fourth member and read through it, remove it,
write and read again; restart all three from their WALs and read and write.

Usage: kvexample_test.py PATH_TO_KVEXAMPLE WORKDIR

Every wait is on an answer from the service (WAITLEADER answers once a leader
is known; PUT once applied; GET after a ReadIndex round), bounded by a socket
timeout: no sleeps."""
import os
import socket
import subprocess
import sys

TIMEOUT_S = 20


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def ask(api, line):
    host, port = api.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=TIMEOUT_S) as s:
        s.sendall(line.encode() + b"\n")
        f = s.makefile("r")
        answer = f.readline().strip()
    print(f"  {api} <- {line!r} -> {answer!r}")
    return answer


def main():
    binary, work = sys.argv[1], sys.argv[2]
    n = 4
    peer = {i: f"127.0.0.1:{free_port()}" for i in range(1, n + 1)}
    api = {i: f"127.0.0.1:{free_port()}" for i in range(1, n + 1)}
    procs = {}

    def start(i, join=False):
        members = range(1, n + 1) if join else range(1, 4)
        peers = ",".join(f"{j}={peer[j]}" for j in members)
        args = [binary, "--id", str(i), "--peers", peers, "--api", api[i],
                "--data", os.path.join(work, f"kv{i}")]
        if join:
            args.append("--join")
        log = open(os.path.join(work, f"kv{i}.log"), "a")
        procs[i] = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True)
        # It prints "clients on ..." once it listens (or exits on a failure).
        for line in procs[i].stdout:
            print(f"  kv{i}: {line.rstrip()}")
            if "clients on" in line:
                return
        raise SystemExit(f"kv{i} exited before listening (see {log.name})")

    try:
        for i in (1, 2, 3):
            start(i)
        leader = int(ask(api[1], "WAITLEADER").split()[1])
        assert leader in (1, 2, 3), leader
        follower = 1 if leader != 1 else 2
        assert ask(api[leader], "PUT colour blue").startswith("OK ")
        assert ask(api[follower], "GET colour") == "VALUE blue"
        assert ask(api[follower], "PUT colour red").startswith("ERR notleader")

        # Membership: a fourth member joins, learns the log, serves reads.
        start(4, join=True)
        assert ask(api[leader], f"ADD 4 {peer[4]}").startswith("OK ")
        assert int(ask(api[4], "WAITLEADER").split()[1]) == leader
        assert ask(api[4], "GET colour") == "VALUE blue"
        assert ask(api[leader], "PUT shape round").startswith("OK ")
        assert ask(api[4], "GET shape") == "VALUE round"
        # ... and leaves again; the three go on.
        assert ask(api[leader], "REMOVE 4").startswith("OK ")
        assert ask(api[leader], "PUT colour green").startswith("OK ")
        other = ({1, 2, 3} - {leader, follower}).pop()
        assert ask(api[other], "GET colour") == "VALUE green"
        assert ask(api[follower], "GET shape") == "VALUE round"
        # Every member restarts from its WAL: the data and the membership
        # come back, a leader is elected again, writes go on.
        for i in (1, 2, 3):
            procs[i].kill()
            procs[i].wait()
        for i in (1, 2, 3):
            start(i)
        leader = int(ask(api[1], "WAITLEADER").split()[1])
        for i in (1, 2, 3):
            assert ask(api[i], "GET colour") == "VALUE green"
        assert ask(api[leader], "PUT colour black").startswith("OK ")
        assert ask(api[follower], "GET colour") == "VALUE black"
        print("kvexample: 3 processes, write/read across members, add/remove member, "
              "restart from the WAL: ok")
    finally:
        for i, p in procs.items():
            p.kill()
            out = p.communicate()[0]
            path = os.path.join(work, f"kv{i}.log")
            print(f"---- kv{i}: stdout\n{out}---- kv{i}: stderr\n" + open(path).read())


if __name__ == "__main__":
    main()
