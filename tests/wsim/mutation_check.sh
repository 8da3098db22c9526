#!/usr/bin/env bash
# Mutation check for the whole-server simulator (docs/TESTING.md): breaks one
# rule of node/ at a time in a SCRATCH COPY of the tree (the tree is never
# touched), builds that copy's wsim, and runs seeds until one fails. A
# mutation that survives SEEDS seeds is a hole in the simulator. Not part of
# CI (one build per mutation).
#
#   tests/wsim/mutation_check.sh                 every mutation
#   tests/wsim/mutation_check.sh NAME...         some of them
#   SEEDS=500 SEED=1 tests/wsim/mutation_check.sh
#   WSIM_FLAGS=--more-faults tests/wsim/mutation_check.sh reuse-request-ids
#
# Prints one line per mutation: caught (seed, first failure) or NOT caught.
# Exit status 1 if one was not caught or no longer applies.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SEEDS="${SEEDS:-500}"
SEED="${SEED:-1}"
WSIM_FLAGS="${WSIM_FLAGS:-}"

read -r -d '' MUTATIONS_PY <<'PYEOF' || true
M = {
 "stale-linearizable-reads": ("linearizable reads are served from local state, without ReadIndex", [
   ("src/node/requests.c", "    if (c == NODE_READ_STALE) {\n        n->m.reads_stale++;\n        struct node_read_result res;",
                           "    if (true) {\n        n->m.reads_stale++;\n        struct node_read_result res;")]),
 "acks-before-durable": ("votes and a follower's acknowledgements are sent before the WAL write "
                         "that they vouch for is durable", [
   ("src/node/node_ready.c",
    "                rc = node_persist_copy_msg(p, &rd.msgs_after_persist[i]);",
    "                node_send_msg(n, &rd.msgs_after_persist[i]);")]),
 "reuse-request-ids": ("a restarted node numbers its requests from 1 again, reusing request ids", [
   ("src/node/node.c", "n->next_seq = (random_u64() >> 2) | 1;", "n->next_seq = 1;")]),
 "orphans-failed-at-once": ("a write forwarded to a leader that fell is declared lost at the next "
                            "applied entry, before the new leader's term applied", [
   ("src/node/requests.c", "w->orphan_term && w->orphan_term <= e->term)",
                           "w->orphan_term)")]),
 "snapshot-hides-outcome": ("a write whose entry a leader's snapshot covered is declared lost "
                            "(leadership_lost) instead of unknown: the bug the simulator found", [
   ("src/node/requests.c", "fail_write(n, w, w->outcome_hidden ? ST_ETIMEDOUT : ST_ECANCELED);",
                           "fail_write(n, w, ST_ECANCELED);")]),
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
  if ! scratch=$(mutation_prepare "$ROOT" "$name" "wsim-mut-$name"); then
    echo "$name: does not apply"
    status=1
    continue
  fi
  mutation_build "$scratch" wsim
  # shellcheck disable=SC2086
  out=$("$scratch/build/tests/wsim/wsim" --seed "$SEED" --seeds "$SEEDS" --stop-at-first $WSIM_FLAGS 2>&1 |
        grep -v '^[0-9:.]* [EWID] ' || true)
  if grep -q "failed" <<<"$(tail -1 <<<"$out")" && ! grep -q ", 0 failed" <<<"$out"; then
    echo "$name: caught: $(grep -m1 '^wsim: seed' <<<"$out")"
    echo "  $(grep -m1 'replay:' <<<"$out")"
  else
    echo "$name: NOT caught in $SEEDS seeds from $SEED"
    status=1
  fi
  rm -rf "$scratch"
done
exit $status
