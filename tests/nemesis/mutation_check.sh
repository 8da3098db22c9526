#!/usr/bin/env bash
# Mutation check for the nemesis suite (docs/TESTING.md, "Nemesis"): breaks
# one rule of the server at a time in a SCRATCH COPY of the tree (the tree is
# never touched), builds that stcache, and runs nemesis runs against it until
# one fails. A mutation the suite does not catch within RUNS runs is a hole
# in the suite. Needs root (as the suite does); not part of CI (one build
# and up to RUNS runs per mutation).
#
#   tests/nemesis/mutation_check.sh               every mutation
#   tests/nemesis/mutation_check.sh NAME...       some of them
#   RUNS=5 DURATION=30 SEED=1 tests/nemesis/mutation_check.sh
#
# Prints one line per mutation: caught (by which seed, the failure) or NOT
# caught. Exit status 1 if one was not caught or no longer applies.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
RUNS="${RUNS:-5}"
DURATION="${DURATION:-30}"
SEED="${SEED:-1}"
SHIM="${SHIM:-$ROOT/build/tests/nemesis/libstcache_powerloss.so}"
[ -f "$SHIM" ] || { echo "build the power-loss shim first (cmake --build build)"; exit 2; }

# name -> (what it breaks, nemesis options, [(file, old, new), ...])
read -r -d '' MUTATIONS_PY <<'PYEOF' || true
M = {
 "ack-before-fsync": ("WAL syncs do nothing: writes are acknowledged before (without) their fsync",
   "--mix crash --power-loss {shim}", [
   ("src/storage/fs_posix.c", "return fdatasync(fd) == 0 ? 0 : px_err();", "return 0;"),
   ("src/storage/fs_posix.c", "(off_t)(off + done), RWF_DSYNC);", "(off_t)(off + done), 0);")]),
 "stale-linearizable-reads": ("linearizable reads are served from local state, without ReadIndex",
   "--mix partition,stop", [
   ("src/node/requests.c", "    if (c == NODE_READ_STALE) {\n        n->m.reads_stale++;\n        struct node_read_result res;",
                           "    if (true) {\n        n->m.reads_stale++;\n        struct node_read_result res;")]),
}
PYEOF

# Reading the table and applying a row to a scratch copy of the tree
# (shared with the other mutation checks).
# shellcheck source=tests/mutation_lib.sh
. "$ROOT/tests/mutation_lib.sh"

names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  mapfile -t names < <(mutation_names)
fi
status=0
for name in "${names[@]}"; do
  if ! scratch=$(mutation_prepare "$ROOT" "$name" "nem-mut-$name"); then
    echo "$name: does not apply"
    status=1
    continue
  fi
  opts=$(mutation_field "$name" 1)
  opts=${opts//\{shim\}/$SHIM}
  mutation_build "$scratch" stcache
  caught=""
  for r in $(seq 0 $((RUNS - 1))); do
    s=$((SEED + r))
    # shellcheck disable=SC2086
    if ! out=$(python3 "$ROOT/tests/nemesis/nemesis.py" "$scratch/build/stcache" --seed "$s" \
                 --runs 1 --duration "$DURATION" --quiet 5 --clients 4 $opts 2>&1); then
      caught="seed $s: $(grep -m1 'FAILED' <<<"$out" | cut -c1-300)"
      break
    fi
  done
  if [ -n "$caught" ]; then
    echo "$name: caught, $caught"
    rm -rf "$scratch"
  else
    echo "$name: NOT caught in $RUNS runs of ${DURATION}s (kept $scratch)"
    status=1
  fi
done
exit $status
