#!/usr/bin/env bash
# Enforces the module dependency rule of docs/ARCHITECTURE.md (DESIGN.md §1) in
# the sources (#include "module/...") and in the CMake link graph
# (st_module(...) lines and the stcache executable in CMakeLists.txt).
#
#   module      may use (besides itself and the public stcache/ headers)
#   util        -
#   raft        util                 (pure core: no libuv, threads, syscalls)
#   wire        util
#   storage     wire util
#   kv          wire util
#   tls         util                 (OpenSSL over memory BIOs)
#   transport   tls wire util
#   http        tls util             (generic HTTP server and client)
#   node        raft storage transport kv wire http tls util
#   api         node http util       (the HTTP API routes)
#   resp        node tls util        (the Redis protocol front end)
#   cli         api resp http node tls util (the stcache executable)
#
# Public headers (include/stcache/*.h) include only other public headers.
# Widening a row is a design decision: change it here and in ARCHITECTURE.md.
# Exit status 0 when clean, 1 with one "layering: ..." line per finding.
set -u
cd "$(dirname "$0")/.."
declare -A allowed=(
  [util]=""
  [raft]="util"
  [wire]="util"
  [storage]="wire util"
  [kv]="wire util"
  [tls]="util"
  [transport]="tls wire util"
  [http]="tls util"
  [node]="raft storage transport kv wire http tls util"
  [api]="node http util"
  [resp]="node tls util"
  [cli]="api resp http node tls util"
)
fail=0
finding() { echo "layering: $*"; fail=1; }
is_allowed() { # module dep
  [ "$2" = "$1" ] && return 0
  case " ${allowed[$1]} " in *" $2 "*) return 0;; esac
  return 1
}

# 1. Every module under src/ has a row above.
for d in src/*/; do
  mod=$(basename "$d")
  [ -n "${allowed[$mod]+x}" ] ||
    finding "src/$mod/ is not in the module table of scripts/check_layers.sh: add its row"
done

# 2. Includes of project headers.
for mod in "${!allowed[@]}"; do
  [ -d "src/$mod" ] || continue
  while IFS=: read -r file line inc; do
    dir=$(sed -E 's/.*#[[:space:]]*include[[:space:]]*[<"]([a-z_]+)\/.*/\1/' <<<"$inc")
    [ "$dir" = "$inc" ] && continue          # no directory part
    [ "$dir" = "stcache" ] && continue       # public headers
    [ -n "${allowed[$dir]+x}" ] || continue  # a system header such as <sys/stat.h>
    is_allowed "$mod" "$dir" ||
      finding "$file:$line includes $dir/ but $mod/ may only use: ${allowed[$mod]:-nothing}"
  done < <(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"][a-z_]+/' \
             src/"$mod"/*.[ch] 2>/dev/null)
done

# 3. The core does no IO of its own (DESIGN.md §1: no syscalls, clock or threads).
while IFS=: read -r file line inc; do
  finding "$file:$line: the raft core must not include $(sed -E 's/.*include[[:space:]]*//' <<<"$inc") (no IO, clock or threads)"
done < <(grep -nE '#[[:space:]]*include[[:space:]]*<(uv|pthread|unistd|fcntl|time|threads)\.h>|#[[:space:]]*include[[:space:]]*<sys/' \
           src/raft/*.[ch] 2>/dev/null)

# 4. Public headers drag no internals in.
while IFS=: read -r file line inc; do
  finding "$file:$line: public header includes a private header $(sed -E 's/.*include[[:space:]]*//' <<<"$inc")"
done < <(grep -nE '#[[:space:]]*include[[:space:]]*"' include/stcache/*.h 2>/dev/null |
           grep -vE '#[[:space:]]*include[[:space:]]*"stcache/')

# 5. The CMake link graph: st_module(name deps...) and the stcache executable.
# Calls may span lines; comments are dropped first.
calls=$(sed -e 's/#.*//' CMakeLists.txt | tr '\n' ' ' |
        grep -oE '(st_module|target_link_libraries)[[:space:]]*\([^)]*\)')
while read -r call; do
  [ -n "$call" ] || continue
  args=$(sed -E 's/^[a-z_]+[[:space:]]*\((.*)\)$/\1/' <<<"$call")
  read -r -a words <<<"$args"
  case "$call" in
    st_module*) mod=${words[0]}; target=st_$mod;;
    target_link_libraries*)
      [ "${words[0]}" = stcache ] || continue
      mod=cli; target=stcache;;
  esac
  if [ -z "${allowed[$mod]+x}" ]; then
    finding "CMakeLists.txt: st_module($mod ...) is not in the module table: add its row"
    continue
  fi
  for w in "${words[@]:1}"; do
    case "$w" in PUBLIC|PRIVATE|INTERFACE) continue;; esac
    if [[ "$w" == st_* ]]; then
      dep=${w#st_}
      is_allowed "$mod" "$dep" ||
        finding "CMakeLists.txt: $target links $w but $mod may only use: ${allowed[$mod]:-nothing}"
    elif [ "$mod" = raft ]; then
      finding "CMakeLists.txt: st_raft links $w but the core links nothing but st_util"
    fi
  done
done <<<"$calls"

[ $fail -eq 0 ] && echo "layering: ok"
exit $fail
