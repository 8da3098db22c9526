#!/usr/bin/env bash
# Mutation check for the simulator (docs/TESTING.md, "Simulator"): breaks one
# Raft rule at a time in a SCRATCH COPY of src/raft (src/raft is never
# touched), builds raft_sim against it and runs seeds until the simulator
# fails. A mutation the simulator does not catch within the budget is a hole
# in the simulator.
#
#   tests/sim/mutation_check.sh                 every mutation
#   tests/sim/mutation_check.sh NAME...         some of them
#   SEEDS=20000 STEPS=2000 tests/sim/mutation_check.sh
#   SAFETY_ONLY=1 ...   only the end-to-end safety properties (no direct
#                       ready-contract checks): how fast the consequences show
#   NO_INVARIANTS=1 ... do not call raft_check_invariants(): what the
#                       simulator's own checks catch
#   KEEP=1 ...          keep the scratch directories (/tmp/mut-NAME-PID)
#   DRY=1 ...           only apply the mutations and show their diffs
#
# Prints one line per mutation: caught or NOT caught, by which seed, after how
# many seeds and steps, and the failure. Exit status 1 if a mutation was not
# caught or no longer applies to src/raft (then update the table below).
# Not part of CI (it builds one binary per mutation); run it after changing
# the core or the simulator. The simulator-side mutations (the runtime half
# of the ready contract) need no build:
#   build/tests/sim/raft_sim --mutation send-before-persist --seeds 1000
#   build/tests/sim/raft_sim --mutation persisted-before-disk --seeds 1000
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SEEDS="${SEEDS:-20000}"
STEPS="${STEPS:-2000}"
CC="${CC:-cc}"
EXTRA=()
if [ "${SAFETY_ONLY:-0}" = 1 ]; then EXTRA+=(--safety-only); fi
if [ "${NO_INVARIANTS:-0}" = 1 ]; then EXTRA+=(--no-invariants); fi

# The mutations: name -> (what it breaks, [(file, old text, new text), ...]).
# Each old text must occur exactly once in src/raft/<file> (whitespace is
# matched loosely).
read -r -d '' MUTATIONS_PY <<'PYEOF' || true
M = {
 "commit-old-term": ("a leader commits entries of older terms by counting replicas (Figure 3.2, Figure 8)", [
   ("replication.c", "if (idx <= r->log.commit || log_term_or0(&r->log, idx) != r->term)",
                     "if (idx <= r->log.commit)")]),
 "leader-counts-unstable": ("the leader counts its own entries before its disk write completes", [
   ("replication.c", "m[n++] = p->id == r->cfg.id ? ST_MIN(p->match, r->log.stable) : p->match;",
                     "m[n++] = p->match;"),
   ("replication.c", "self->next = e.index + 1;", "self->next = e.index + 1, self->match = e.index;")]),
 "double-vote": ("a node grants a second vote in a term it already voted in", [
   ("election.c", "bool can_vote = r->vote == m->from || (r->vote == RAFT_NONE && r->leader == RAFT_NONE) ||",
                  "bool can_vote = r->vote == m->from || (r->leader == RAFT_NONE) ||")]),
 "vote-before-persist": ("the vote response is sent before the vote is durable", [
   ("election.c", "raft_send(r, &resp, grant);", "raft_send(r, &resp, false);")]),
 "skip-up-to-date": ("voting skips the candidate-log-up-to-date check (5.4.1)", [
   ("election.c", "bool grant = can_vote && log_is_up_to_date(&r->log, m->index, m->log_term);",
                  "bool grant = can_vote;")]),
 "apply-beyond-durable": ("committed entries are applied beyond the locally durable index", [
   ("ready.c", "return ST_MIN(r->log.commit, r->log.stable);", "return r->log.commit;")]),
 "ack-before-persist": ("a follower acknowledges entries before they are durable", [
   ("replication.c", "    /* Acknowledging entries: only once they (and our term) are durable. */\n    raft_send(r, &resp, true);",
                     "    raft_send(r, &resp, false);")]),
 "no-conf-revert": ("a truncated conf entry stays in effect (DESIGN 3.3)", [
   ("replication.c", "if (r->conf_index >= from) membership_rebuild(r);", "")]),
 "follower-commit-unverified": ("a follower commits past what an append verified (a stale suffix)", [
   ("replication.c", "replication_commit_to(r, ST_MIN(m->commit, last_new));",
                     "replication_commit_to(r, ST_MIN(m->commit, log_last(l)));")]),
 "heartbeat-commit-unmatched": ("heartbeats carry the leader's commit beyond what the follower matched", [
   ("replication.c", ".commit = ST_MIN(p->match, r->log.commit),", ".commit = r->log.commit,")]),
 "read-no-round": ("ReadIndex answered without a quorum confirming leadership", [
   ("read_index.c", "if (rd->index != 0 && rd->round != 0 && rd->round <= q)", "if (rd->index != 0)")]),
 "learners-count-in-quorum": ("a leader counts its learners' logs toward the commit quorum", [
   ("replication.c",
    "        if (!raft_is_voter(r, p->id)) continue;\n        /* The leader's own log counts",
    "        if (false) continue;\n        /* The leader's own log counts")]),
 "read-before-term-commit": ("ReadIndex used before the new leader committed an entry of its term", [
   ("read_index.c", "    if (!replication_committed_in_term(r)) {\n        read_push(r, &rd);",
                    "    if (0) {\n        read_push(r, &rd);")]),
}
PYEOF

# Reading the table and applying a row to a scratch copy (shared with the
# other mutation checks).
# shellcheck source=tests/mutation_lib.sh
. "$ROOT/tests/mutation_lib.sh"

want=("$@")
selected() {
    [ ${#want[@]} -eq 0 ] && return 0
    for w in "${want[@]}"; do [ "$w" = "$1" ] && return 0; done
    return 1
}

status=0
results=()
for name in $(mutation_names); do
    selected "$name" || continue
    dir="/tmp/mut-$name-$$"
    rm -rf "$dir"
    mkdir -p "$dir/raft"
    cp "$ROOT"/src/raft/*.c "$ROOT"/src/raft/*.h "$dir/raft/"
    if ! what=$(mutation_apply "$dir/raft" "$name" loose); then
        results+=("$name: DOES NOT APPLY to src/raft/$what any more (update $0)")
        status=1
        continue
    fi
    what=$(mutation_field "$name" 0)
    if [ "${DRY:-0}" = 1 ]; then
        echo "== $name: $what"
        diff -r "$ROOT/src/raft" "$dir/raft" | sed 's/^/   /' || true
        rm -rf "$dir"
        continue
    fi
    # The scratch dir comes first on the include path so "raft/raft_int.h"
    # resolves to the copy; util, headers and the simulator are the real ones.
    if ! "$CC" -std=c17 -O2 -g -D_GNU_SOURCE -DST_DEBUG_CHECKS=1 -w \
        -I "$dir" -I "$ROOT/include" -I "$ROOT/src" -I "$ROOT/tests" -I "$ROOT/tests/sim" \
        "$dir"/raft/*.c "$ROOT"/src/util/*.c \
        "$ROOT"/tests/sim/raft_sim.c "$ROOT"/tests/sim/sim.c "$ROOT"/tests/sim/sim_check.c \
        -lm -o "$dir/raft_sim" 2>"$dir/build.log"; then
        results+=("$name: BUILD FAILED (see $dir/build.log)")
        status=1
        continue
    fi
    echo "== $name: $what"
    out=$("$dir/raft_sim" --mutation "$name" --seeds "$SEEDS" --steps "$STEPS" \
        ${EXTRA[@]+"${EXTRA[@]}"} 2>&1 || true)
    caught=$(printf '%s\n' "$out" | grep -E "^mutation $name: " | tail -1 || true)
    fail=$(printf '%s\n' "$out" | grep -E "^FAIL seed|assertion failed" | head -1 || true)
    [ -z "$caught" ] && caught="mutation $name: no verdict (see $dir)" && KEEP=1
    echo "   $caught"
    [ -n "$fail" ] && echo "   $fail"
    case "$caught" in *CAUGHT*) ;; *) status=1 ;; esac
    results+=("$caught")
    [ "${KEEP:-0}" = 1 ] || rm -rf "$dir"
done

echo
echo "summary (SEEDS=$SEEDS STEPS=$STEPS ${EXTRA[*]+${EXTRA[*]}}):"
for r in "${results[@]}"; do echo "  $r"; done
exit $status
