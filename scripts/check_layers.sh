#!/usr/bin/env bash
# Enforces the module dependency rules of docs/ARCHITECTURE.md (DESIGN.md §1):
#   raft/      includes only util/ (and the public stcache/ headers)
#   wire/      includes only util/ (+ public headers)
#   storage/   includes only wire/, util/ (+ public headers)
#   kv/        includes only wire/, util/ (+ public headers)
#   transport/ includes only wire/, util/ (+ public headers)
#   only node/ (and the faces above it: http/, cli/) may include raft/, storage/, transport/ and kv/ together.
set -u
cd "$(dirname "$0")/.."
fail=0
check() { # module allowed-project-dirs...
  local mod=$1; shift
  local allowed="$*"
  [ -d "src/$mod" ] || return 0
  while IFS=: read -r file _ inc; do
    dir=$(sed -E 's/.*#include "([a-z_]+)\/.*/\1/' <<<"$inc")
    [ "$dir" = "$inc" ] && continue          # not a project-relative include
    [ "$dir" = "$mod" ] && continue
    [ "$dir" = "stcache" ] && continue       # public headers
    case " $allowed " in *" $dir "*) ;; *)
      echo "layering: $file includes $dir/ ($inc) but $mod/ may only use: $allowed"; fail=1;;
    esac
  done < <(grep -n '#include "[a-z_]*/' src/"$mod"/*.[ch] 2>/dev/null)
}
check util
check raft util
check wire util
check storage wire util
check kv wire util
check transport wire util
# Public API headers must not drag internals in.
if grep -n '#include "\(raft\|storage\|transport\|kv\|node\|http\|wire\)/' include/stcache/*.h 2>/dev/null; then
  echo "layering: public headers include private module headers"; fail=1
fi
[ $fail -eq 0 ] && echo "layering: ok"
exit $fail
