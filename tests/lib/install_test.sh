#!/usr/bin/env bash
# lib/install: the library as an outside program sees it.
#   1. cmake --install into a temporary prefix;
#   2. copy examples/ OUTSIDE the source tree and build both examples there
#      with their own Makefiles, through pkg-config only (PKG_CONFIG_PATH =
#      the prefix; no -I into the source tree: a leaked internal header fails
#      the build);
#   3. run examples/inmem (shared, and linked statically via pkg-config
#      --static) and the three-process kvexample scenario.
# Usage: install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
work=$(mktemp -d /tmp/stcache-lib-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

cmake --install "$build" --prefix "$prefix" >/dev/null
for f in include/stcache/raft.h include/stcache/storage.h include/stcache/transport.h \
         lib/libstcache-raft.a lib/pkgconfig/stcache-raft.pc; do
  [ -e "$prefix/$f" ] || { echo "install: $f missing"; exit 1; }
done
so=$(readlink -f "$prefix/lib/libstcache-raft.so")
soname=$(readelf -d "$so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = libstcache-raft.so.0 ] || { echo "install: soname '$soname'"; exit 1; }
[ -e "$prefix/lib/$soname" ] || { echo "install: $soname link missing"; exit 1; }

# DESTDIR stages the tree under it, as `make install DESTDIR=...` does.
DESTDIR=$work/stage cmake --install "$build" --prefix /usr/local >/dev/null
for f in include/stcache/raft.h lib/libstcache-raft.a lib/pkgconfig/stcache-raft.pc; do
  [ -e "$work/stage/usr/local/$f" ] || { echo "install: DESTDIR: $f missing"; exit 1; }
done

cp -r "$src/examples" "$work/examples"
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
flags=$(pkg-config --cflags --libs stcache-raft)
case "$flags" in *"$src"*) echo "pkg-config points into the source tree: $flags"; exit 1;; esac
make -s -C "$work/examples/inmem" inmem inmem-static
make -s -C "$work/examples/kvexample"

# The headers also serve C++ (extern "C"): include them all, link, call.
if command -v c++ >/dev/null; then
  cat >"$work/cxx.cc" <<'CXX'
#include <stcache/assert.h>
#include <stcache/raft.h>
#include <stcache/storage.h>
#include <stcache/transport.h>
#include <cstring>
int main()
{
    struct raft_config cfg;
    raft_config_default(&cfg, 1);
    return cfg.id == 1 && std::strcmp(st_strerror(ST_ENOTLEADER), "not the leader") == 0 ? 0 : 1;
}
CXX
  c++ -o "$work/cxx" "$work/cxx.cc" $(pkg-config --cflags --libs stcache-raft)
  LD_LIBRARY_PATH=$prefix/lib "$work/cxx"
fi

if readelf -d "$work/examples/inmem/inmem-static" | grep -q 'libstcache-raft'; then
  echo "inmem-static needs the shared library"; exit 1
fi
"$work/examples/inmem/inmem-static"
LD_LIBRARY_PATH=$prefix/lib "$work/examples/inmem/inmem"
mkdir "$work/kv"
LD_LIBRARY_PATH=$prefix/lib python3 "$src/tests/lib/kvexample_test.py" \
  "$work/examples/kvexample/kvexample" "$work/kv"
echo "lib/install: ok"
