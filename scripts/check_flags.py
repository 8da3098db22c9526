#!/usr/bin/env python3
"""Every flag `stcache server` parses is listed by `stcache server --help` and
documented in docs/OPERATIONS.md; every flag --help lists is parsed.

The parsed flags are read from the source, so a new flag cannot be added
without its help line and its operations entry:
  - src/node/config.c, node_config_set(): the {"name", ...} rows of its
    numeric table and its strcmp(name, "...") branches;
  - src/cli/server.c, cli_server_parse(): strcmp(a, "--...") and
    strcmp(name, "...") (flags handled before node_config_set).

usage: scripts/check_flags.py PATH/TO/stcache
Exit status 0 when everything matches, 1 with one line per finding otherwise.
"""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def function_body(path, name):
    """The text of C function `name` in `path`: from its definition to the
    first closing brace in column 0."""
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"^[a-z].*\b%s\([^;]*?\)\s*\n\{" % re.escape(name), text, re.M)
    if not m:
        sys.exit("check_flags: cannot find %s() in %s" % (name, path))
    end = text.find("\n}", m.end())
    return text[m.start():end]


def parsed_flags():
    flags = {}
    body = function_body("src/node/config.c", "node_config_set")
    for n in re.findall(r'^\s*\{"([a-z][a-z0-9-]*)",', body, re.M):
        flags[n] = "src/node/config.c"
    for n in re.findall(r'strcmp\(name, "([a-z][a-z0-9-]*)"\)', body):
        flags[n] = "src/node/config.c"
    body = function_body("src/cli/server.c", "cli_server_parse")
    for n in re.findall(r'strn?cmp\(a, "--([a-z][a-z0-9-]*)=?"', body):
        flags[n] = "src/cli/server.c"
    for n in re.findall(r'strcmp\(name, "([a-z][a-z0-9-]*)"\)', body):
        flags[n] = "src/cli/server.c"
    return flags


def mentions(text, flag):
    return re.search(r"--%s(?![a-z0-9-])" % re.escape(flag), text) is not None


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    exe = sys.argv[1]
    help_run = subprocess.run([exe, "server", "--help"], capture_output=True, text=True,
                              timeout=30, check=False)
    help_text = help_run.stdout + help_run.stderr
    with open(os.path.join(ROOT, "docs/OPERATIONS.md"), encoding="utf-8") as f:
        ops = f.read()

    flags = parsed_flags()
    if len(flags) < 10:
        sys.exit("check_flags: found only %d parsed flags; has the parser moved?" % len(flags))
    findings = []
    for flag, src in sorted(flags.items()):
        if not mentions(help_text, flag):
            findings.append("flags: --%s is parsed (%s) but missing from `stcache server --help`"
                            % (flag, src))
        if not mentions(ops, flag):
            findings.append("flags: --%s is parsed (%s) but missing from docs/OPERATIONS.md"
                            % (flag, src))
    for flag in sorted(set(re.findall(r"^\s+--([a-z][a-z0-9-]*)", help_text, re.M))):
        if flag not in flags:
            findings.append("flags: --%s is listed by `stcache server --help` but not parsed"
                            % flag)
    for line in findings:
        print(line)
    if findings:
        return 1
    print("flags: ok (%d server flags in --help and docs/OPERATIONS.md)" % len(flags))
    return 0


if __name__ == "__main__":
    sys.exit(main())
