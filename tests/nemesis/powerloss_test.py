#!/usr/bin/env python3
"""Self-test of tests/nemesis/powerloss.c (ctest nemesis/powerloss): in a child
process with the shim preloaded, WAL writes that were not fsynced are gone
after kill -9, synced ones stay, reads see pending writes, and files outside
the WAL pass through. Usage: powerloss_test.py LIBSTCACHE_POWERLOSS.so"""
import os
import signal
import sys
import tempfile

CHILD = r'''
import os, sys
d = sys.argv[1]
fd = os.open(os.path.join(d, "wal", "0000000000000001.wal"), os.O_RDWR | os.O_CREAT, 0o644)
os.pwrite(fd, b"durable!", 0)
os.fsync(fd)
os.pwrite(fd, b"volatile", 8)
assert os.pread(fd, 16, 0) == b"durable!volatile", os.pread(fd, 16, 0)
os.pwrite(fd, b"VO", 8)  # overwrites part of a pending write
assert os.pread(fd, 16, 0) == b"durable!VOlatile"
other = os.open(os.path.join(d, "wal", "notes.txt"), os.O_RDWR | os.O_CREAT, 0o644)
os.pwrite(other, b"passes through", 0)
print("ready", flush=True)
os.kill(os.getpid(), 9)
'''


def main():
    shim = os.path.abspath(sys.argv[1])
    with tempfile.TemporaryDirectory() as d:
        os.mkdir(os.path.join(d, "wal"))
        pid = os.fork()
        if pid == 0:
            os.environ["LD_PRELOAD"] = shim
            os.execv(sys.executable, [sys.executable, "-c", CHILD, d])
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
        with open(os.path.join(d, "wal", "0000000000000001.wal"), "rb") as f:
            data = f.read()
        assert data == b"durable!", "after kill -9 the WAL holds %r" % data
        with open(os.path.join(d, "wal", "notes.txt"), "rb") as f:
            assert f.read() == b"passes through"
    print("powerloss: ok (unsynced WAL writes lost at kill -9, synced ones kept)")


if __name__ == "__main__":
    main()
