#!/usr/bin/env bash
# clang-format over every C file of the project (src/ include/ tests/ examples/
# bench/), with the checked-in .clang-format.
#   scripts/check_format.sh         check: list the files that deviate, exit 1
#   scripts/check_format.sh --fix   rewrite them in place (`make format`)
# CLANG_FORMAT names the binary (default clang-format, Debian's).
set -euo pipefail
cd "$(dirname "$0")/.."
cf=${CLANG_FORMAT:-clang-format}
command -v "$cf" >/dev/null || { echo "format: $cf not found (scripts/deps.sh installs it)"; exit 1; }
dirs=(src include tests examples bench)
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files --cached --others --exclude-standard -- \
                         "${dirs[@]/%//*.c}" "${dirs[@]/%//*.h}")
else
  mapfile -t files < <(find "${dirs[@]}" -name '*.[ch]' 2>/dev/null | sort)
fi
[ ${#files[@]} -gt 0 ] || { echo "format: no files found"; exit 1; }
if [ "${1:-}" = "--fix" ]; then
  printf '%s\0' "${files[@]}" | xargs -0 "$cf" -i
  echo "format: rewrote ${#files[@]} files in place"
  exit 0
fi
bad=()
for f in "${files[@]}"; do
  "$cf" --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if [ ${#bad[@]} -gt 0 ]; then
  printf 'format: %s deviates from .clang-format\n' "${bad[@]}"
  echo "format: ${#bad[@]} of ${#files[@]} files deviate; run \`make format\` (or" \
       "\`$cf --dry-run FILE\` to see its diff)"
  exit 1
fi
echo "format: ok (${#files[@]} files)"
