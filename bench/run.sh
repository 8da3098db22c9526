#!/usr/bin/env bash
# Side-by-side cluster benchmark of stcache and etcd 3.4 on loopback.
#
#   bench/run.sh [--quick] [driver options...]      (make bench: full run)
#
# Needs wrk, etcd-server (3.4) and a built stcache: `make bench` installs the
# first two (scripts/deps.sh --bench) and builds the third. Options are passed
# to bench/cluster/driver.py (--rounds N, --duration S, --only REGEX,
# --systems etcd, --skip-big, --big-keys N, --data-root DIR, ...); see
# docs/BENCHMARKS.md. Environment: STCACHE_BIN (default build/stcache).
#
# Never part of CI: benchmarks measure, they do not test.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
stcache_bin="${STCACHE_BIN:-$repo/${BUILD:-build}/stcache}"
data_root="${BENCH_DATA_ROOT:-/var/tmp}"

for tool in wrk etcd python3 cc; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "bench: '$tool' not found; run scripts/deps.sh --bench (or make bench)" >&2; exit 1; }
done
case "$(etcd --version 2>/dev/null | head -1)" in
  "etcd Version: 3.4."*) ;;
  *) echo "bench: warning: expected etcd 3.4, found: $(etcd --version 2>/dev/null | head -1)" >&2 ;;
esac

systems="stcache,etcd"
for a in "$@"; do
  case "$a" in --systems=*) systems="${a#--systems=}" ;; esac
done
prev=""
for a in "$@"; do
  [ "$prev" = "--systems" ] && systems="$a"
  prev="$a"
done
if [[ "$systems" == *stcache* ]] && [ ! -x "$stcache_bin" ]; then
  echo "bench: $stcache_bin not built (make build, or STCACHE_BIN=..., or --systems etcd)" >&2
  exit 1
fi

work="$(mktemp -d "$data_root/stbench-XXXXXX")"
cleanup() {
  local rc=$?
  # The driver kills what it started; this catches leftovers if the driver
  # itself was killed. Only pids the driver recorded are touched.
  if [ -f "$work/pids" ]; then
    while read -r pid; do
      [ -n "$pid" ] && kill -TERM -- "-$pid" 2>/dev/null || true
    done < "$work/pids"
    sleep 1
    while read -r pid; do
      [ -n "$pid" ] && kill -KILL -- "-$pid" 2>/dev/null || true
    done < "$work/pids"
  fi
  if [ "$rc" -ne 0 ] || [ "${BENCH_KEEP:-0}" = 1 ]; then
    # keep the node logs for a post-mortem, drop the (large) data directories
    [ "${BENCH_KEEP:-0}" = 1 ] || find "$work" -type d -name data -prune -exec rm -rf {} + 2>/dev/null
    echo "bench: work dir (logs) kept: $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

cc -O2 -std=c17 -Wall -Wextra -Werror -Wshadow -Wformat=2 \
   -o "$work/floor" "$here/cluster/floor.c"

python3 "$here/cluster/driver.py" --floor "$work/floor" --stcache "$stcache_bin" \
  --tmp "$work/run" --out "$here/results" "$@"
