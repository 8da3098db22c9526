#!/usr/bin/env bash
# Makes the certificates of a TLS-secured stcache cluster with the openssl
# command (docs/SECURITY.md walks through it). Keys are ECDSA P-256, written
# with mode 600; certificates are signed by the cluster CA in DIR.
#
#   scripts/gen-certs.sh DIR ca                      DIR/ca.crt, DIR/ca.key
#   scripts/gen-certs.sh DIR node ID [NAME|IP ...]   DIR/node-ID.crt/.key
#   scripts/gen-certs.sh DIR client USER             DIR/client-USER.crt/.key
#
# A node certificate's Common Name is stcache-node-ID (the peer transport
# checks it against the id the node claims) and its subjectAltNames are the
# given host names and IP addresses (default: localhost 127.0.0.1), so the
# same certificate serves the client port. It is usable as a server and as a
# client certificate (peers dial each other, and a follower forwards requests
# to the leader with it). A client certificate's Common Name is the user.
# Options (before DIR): --days N (default 825).
set -euo pipefail
days=825
while [ $# -gt 0 ]; do
  case "$1" in
    --days) days=$2; shift 2;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0;;
    *) break;;
  esac
done
[ $# -ge 2 ] || { echo "usage: $0 [--days N] DIR ca|node ID [NAME|IP...]|client USER" >&2; exit 2; }
dir=$1 kind=$2
shift 2
mkdir -p "$dir"
umask 077
ca_crt=$dir/ca.crt ca_key=$dir/ca.key
need_ca() {
  [ -f "$ca_crt" ] && [ -f "$ca_key" ] ||
    { echo "gen-certs: no CA in $dir: run '$0 $dir ca' first" >&2; exit 1; }
}
sign() { # name cn ext
  local name=$1 cn=$2 ext=$3 tmp
  tmp=$(mktemp -d)
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=$cn" -keyout "$dir/$name.key" -out "$tmp/req.csr" 2>/dev/null
  printf '%s\n' "$ext" > "$tmp/ext.cnf"
  openssl x509 -req -in "$tmp/req.csr" -CA "$ca_crt" -CAkey "$ca_key" -set_serial "0x$(openssl rand -hex 16)" \
    -days "$days" -sha256 -extfile "$tmp/ext.cnf" -out "$dir/$name.crt" 2>/dev/null
  rm -rf "$tmp"
  chmod 600 "$dir/$name.key"
  chmod 644 "$dir/$name.crt"
  echo "$dir/$name.crt $dir/$name.key (CN=$cn)"
}
case "$kind" in
  ca)
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -subj "/CN=stcache-ca" -days "$days" -sha256 \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout "$ca_key" -out "$ca_crt" 2>/dev/null
    chmod 600 "$ca_key"; chmod 644 "$ca_crt"
    echo "$ca_crt $ca_key"
    ;;
  node)
    [ $# -ge 1 ] || { echo "gen-certs: node needs an id" >&2; exit 2; }
    id=$1; shift
    case "$id" in ''|*[!0-9]*|0) echo "gen-certs: node id must be a positive integer" >&2; exit 2;; esac
    need_ca
    [ $# -gt 0 ] || set -- localhost 127.0.0.1
    san=""
    for n in "$@"; do
      if [[ "$n" =~ ^[0-9.]+$ || "$n" == *:* ]]; then san+=",IP:$n"; else san+=",DNS:$n"; fi
    done
    sign "node-$id" "stcache-node-$id" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:stcache-node-$id$san"
    ;;
  client)
    [ $# -ge 1 ] || { echo "gen-certs: client needs a user name" >&2; exit 2; }
    user=$1
    [[ "$user" =~ ^[A-Za-z0-9._@-]+$ ]] || { echo "gen-certs: user name: letters, digits, . _ @ -" >&2; exit 2; }
    need_ca
    sign "client-$user" "$user" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
    ;;
  *) echo "gen-certs: unknown kind $kind (ca, node, client)" >&2; exit 2;;
esac
