#!/usr/bin/env bash
# clang-tidy with the checked-in .clang-tidy (the check set and why each
# exclusion) over the project's translation units in BUILD/compile_commands.json.
# Suppress a finding only in place: `// NOLINT(check-name): why`.
# The tests' translation units (half of them, and the biggest) run without the
# clang-analyzer-* checks, which cost most of the time; the sources, benches
# and examples get the whole set.
# usage: scripts/lint_clang_tidy.sh BUILD_DIR [FILE_REGEX]   exit 1 on any finding
#   FILE_REGEX given: the whole set over the files it matches, and nothing else
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:?usage: $0 BUILD_DIR [FILE_REGEX]}" && pwd)
regex=${2:-"^$root/(src|bench|examples)/"}
tests_regex=$([ $# -ge 2 ] || echo "^$root/tests/")
rct=$(command -v run-clang-tidy || command -v run-clang-tidy-14 || true)
[ -n "$rct" ] || { echo "clang-tidy: run-clang-tidy not found (scripts/deps.sh installs clang-tidy)"; exit 1; }
[ -f "$build/compile_commands.json" ] || { echo "clang-tidy: no $build/compile_commands.json"; exit 1; }
cd "$root"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
rc=0
"$rct" -j "${LINT_JOBS:-2}" -p "$build" -quiet "$regex" >"$out" 2>&1 || rc=$?
if [ -n "$tests_regex" ]; then
  "$rct" -j "${LINT_JOBS:-2}" -p "$build" -quiet -checks='-clang-analyzer-*' "$tests_regex" \
    >>"$out" 2>&1 || rc=$?
fi
# Keep the diagnostics, drop the per-file command lines and colour codes.
sed -e 's/\x1b\[[0-9;]*m//g' "$out" | grep -vE '^(clang-tidy(-[0-9]+)? |[0-9]+ warnings? (and [0-9]+ errors? )?generated|Suppressed [0-9]+ warnings|Use -header-filter|Running clang-tidy|Enabled checks|$)' || true
n=$(sed -e 's/\x1b\[[0-9;]*m//g' "$out" | grep -cE '^/.*: (warning|error): ' || true)
if [ "$rc" -ne 0 ] || [ "$n" -ne 0 ]; then
  echo "clang-tidy: $n findings (exit status $rc)"
  exit 1
fi
echo "clang-tidy: ok"
