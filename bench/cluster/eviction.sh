#!/usr/bin/env bash
# Write throughput and memory per key with and without --max-memory eviction
# (issue 14): bench/cluster/eviction.sh [options of eviction.py]. Needs wrk
# and a built stcache (STCACHE_BIN, default build/stcache). Printed, never
# asserted; not part of CI.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
command -v wrk >/dev/null 2>&1 || {
  echo "eviction bench: 'wrk' not found; run scripts/deps.sh --bench" >&2; exit 1; }
exec python3 "$here/eviction.py" "$@"
