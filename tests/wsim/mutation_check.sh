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
#   WSIM_FLAGS="--membership --clock-faults" tests/wsim/mutation_check.sh \
#       learners-count-in-quorum reads-expire-by-wall-clock joiner-forgets-members
# Without WSIM_FLAGS, a mutation only the new faults reach runs with the
# flags FLAGS names for it (--membership, --clock-faults).
#
# Prints one line per mutation: caught (seed, first failure) or NOT caught.
# Exit status 1 if one was not caught or no longer applies.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SEEDS="${SEEDS:-500}"
SEED="${SEED:-1}"
# WSIM_FLAGS unset: each mutation's own flags (FLAGS below; none for most).
WSIM_FLAGS_SET="${WSIM_FLAGS+set}"
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
 "learners-count-in-quorum": ("a leader counts its learners' logs toward the commit quorum "
                              "(needs WSIM_FLAGS=--membership: learners exist only then)", [
   ("src/raft/replication.c",
    "        if (!raft_is_voter(r, p->id)) continue;\n        /* The leader's own log counts",
    "        if (false) continue;\n        /* The leader's own log counts")]),
 "reads-expire-by-wall-clock": ("a linearizable read judges expiry by the node's wall clock, not "
                                "the log clock (needs WSIM_FLAGS=--clock-faults: TTL keys and "
                                "skewed clocks exist only then)", [
   ("src/node/requests.c",
    "int rc = kv_get(n->kv, w->key, w->key_len, kv_clock_ms(n->kv), &view);",
    "int rc = kv_get(n->kv, w->key, w->key_len, node_wall_ms(), &view);")]),
 "joiner-forgets-members": ("a joiner does not keep the members of its join answer "
                            "(DATA/join-peers): killed before the configuration reached it, it "
                            "restarts knowing no peer (issue 17's joiner bug; needs "
                            "WSIM_FLAGS=--membership)", [
   ("src/node/node_join.c", "NODE_JOIN_PEERS_FILE, buf, off);",
                            "NODE_JOIN_PEERS_FILE, buf, 0);")]),
 "snapshot-hides-outcome": ("a write whose entry a leader's snapshot covered is declared lost "
                            "(leadership_lost) instead of unknown: the bug the simulator found", [
   ("src/node/requests.c", "fail_write(n, w, w->outcome_hidden ? ST_ETIMEDOUT : ST_ECANCELED);",
                           "fail_write(n, w, ST_ECANCELED);")]),
}
# The wsim flags a mutation needs to be reachable at all.
FLAGS = {"reuse-request-ids": "--more-faults",
         "learners-count-in-quorum": "--membership",
         "reads-expire-by-wall-clock": "--membership --clock-faults",
         "joiner-forgets-members": "--membership"}
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
  flags="$WSIM_FLAGS"
  [ -n "$WSIM_FLAGS_SET" ] ||
    flags=$(python3 -c "$MUTATIONS_PY"$'\nimport sys\nprint(FLAGS.get(sys.argv[1], ""))' "$name")
  # shellcheck disable=SC2086
  out=$("$scratch/build/tests/wsim/wsim" --seed "$SEED" --seeds "$SEEDS" --stop-at-first $flags 2>&1 |
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
