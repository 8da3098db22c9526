#!/usr/bin/env bash
# cppcheck over the project's translation units in BUILD/compile_commands.json
# (every build exports it). No cache directory: each run starts clean.
# Suppress a finding only in place, with the reason on the line above:
#   // cppcheck-suppress nullPointer ; why the pointer cannot be NULL here
# usage: scripts/lint_cppcheck.sh BUILD_DIR      exit 1 on any finding
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
command -v cppcheck >/dev/null || { echo "cppcheck: not found (scripts/deps.sh installs it)"; exit 1; }
[ -f "$build/compile_commands.json" ] || { echo "cppcheck: no $build/compile_commands.json"; exit 1; }
jobs=${LINT_JOBS:-2}
cd "$root"
# --project reads the flags and defines of each file; -i drops the build tree.
cppcheck --project="$build/compile_commands.json" -i"$build" \
  --enable=warning,performance,portability --std=c11 \
  --inline-suppr --suppress=missingIncludeSystem \
  --error-exitcode=1 --quiet -j "$jobs" \
  --template='{file}:{line}: {severity}: {id}: {message}' 2>&1
echo "cppcheck: ok"
