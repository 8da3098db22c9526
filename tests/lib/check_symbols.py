#!/usr/bin/env python3
"""lib/symbols: the shared library exports exactly the documented API.

Usage: check_symbols.py LIBSTCACHE_RAFT_SO INCLUDE_STCACHE_DIR

Every dynamic symbol the library defines must be a function declared with
ST_API in include/stcache/*.h, and every such declaration must be exported
(a declaration without a definition would break embedders at link time).
Exported names must carry a module prefix (raft_, st_). Fails listing
the offenders."""
import glob
import os
import re
import subprocess
import sys

PREFIXES = ("raft_", "st_")


def declared(include_dir):
    names = {}
    for path in sorted(glob.glob(os.path.join(include_dir, "*.h"))):
        text = open(path, encoding="utf-8").read()
        text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
        text = re.sub(r"^\s*#.*$", " ", text, flags=re.M)  # the macro's definition
        for m in re.finditer(r"\bST_API\b([^;{]*?)\b([A-Za-z_]\w*)\s*\(", text):
            names[m.group(2)] = os.path.basename(path)
    return names


def exported(lib):
    out = subprocess.run(["nm", "-D", "--defined-only", lib], check=True,
                         capture_output=True, text=True).stdout
    syms = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3:
            syms.add(parts[2].split("@")[0])
    return syms


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    lib, inc = sys.argv[1], sys.argv[2]
    decl = declared(inc)
    exp = exported(lib)
    fail = False
    for s in sorted(exp - set(decl)):
        print(f"exported but not declared with ST_API in include/stcache/: {s}")
        fail = True
    for s in sorted(set(decl) - exp):
        print(f"declared with ST_API in {decl[s]} but not exported: {s}")
        fail = True
    for s in sorted(exp):
        if not s.startswith(PREFIXES):
            print(f"exported without a module prefix {PREFIXES}: {s}")
            fail = True
    if not decl:
        print("no ST_API declarations found in", inc)
        fail = True
    print(f"symbols: {len(exp)} exported, {len(decl)} declared with ST_API")
    sys.exit(1 if fail else 0)


if __name__ == "__main__":
    main()
