#!/usr/bin/env bash
# Installs the Debian packages stcache needs to build and test, if missing.
# Idempotent; run as root (or with sudo available).
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config clang libuv1-dev libhttp-parser-dev
      libclang-rt-14-dev clang-format clang-tidy cppcheck python3 curl iproute2 iptables procps
      faketime libssl-dev openssl
      redis-server redis-tools python3-redis libhiredis-dev  # tests/redis, bench/redis
      libsystemd-dev python3-yaml)  # sd_notify readiness (optional); k8s manifest checks
if [ "${1:-}" = "--bench" ]; then pkgs+=(wrk etcd-server etcd-client); fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
