#!/usr/bin/env bash
# The whole-server simulator's soak on every core: SEEDS seeds from SEED in
# chunks of WSIM_CHUNK (default 1000), JOBS wsim processes taking chunks in
# turn (job k runs chunks k, k+JOBS, ...), so that a soak stopped early has
# run about a prefix of the seeds. Each chunk's verdict is printed as it
# ends; a failing seed's replay command is in its chunk's log under
# $WSIM_OUT (default /tmp/stcache-wsim). Exit 1 if any seed failed.
#   scripts/wsim_soak.sh WSIM JOBS SEED SEEDS [wsim flags...]
#   (make wsim-soak WSIM_JOBS=2 WSIM_SEEDS=100000 WSIM_FLAGS=--more-faults)
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: $0 WSIM JOBS SEED SEEDS [wsim flags...]" >&2
  exit 2
fi
WSIM=$1 JOBS=$2 FIRST=$3 COUNT=$4
shift 4
CHUNK=${WSIM_CHUNK:-1000}
OUT=${WSIM_OUT:-/tmp/stcache-wsim}
mkdir -p "$OUT"
chunks=$(( (COUNT + CHUNK - 1) / CHUNK ))

job() {
  local k=$1 failed=0 c s n
  shift
  for ((c = k; c < chunks; c += JOBS)); do
    s=$((FIRST + c * CHUNK))
    n=$CHUNK
    if (( (c + 1) * CHUNK > COUNT )); then n=$((COUNT - c * CHUNK)); fi
    log=$OUT/seeds-$s.log
    if "$WSIM" --seed "$s" --seeds "$n" "$@" >"$log" 2>&1; then
      echo "wsim-soak: seeds $s..$((s + n - 1)): $(tail -1 "$log")"
    else
      failed=1
      echo "wsim-soak: seeds $s..$((s + n - 1)) FAILED: $log"
      grep 'wsim: replay:' "$log" || true
    fi
  done
  return $failed
}

pids=()
for ((k = 0; k < JOBS; k++)); do
  job "$k" "$@" &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
echo "wsim-soak: $COUNT seeds from $FIRST in $chunks chunks on $JOBS jobs: $([ $status = 0 ] && echo 'none failed' || echo 'FAILURES above')"
exit $status
