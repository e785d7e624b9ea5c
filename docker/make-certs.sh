#!/bin/sh
# make-certs.sh DIR [HOST...]: a private CA and one certificate per Parley
# host, for mutual TLS between the services on the backend network.
#
#   DIR/ca/ca.pem, ca.key        the CA (its key stays here: mount DIR/ca
#                                into nothing but this script)
#   DIR/HOST/cert.pem, key.pem   HOST's certificate (names HOST and
#                                HOST.backend; server and client use)
#   DIR/HOST/ca.pem              the CA certificate, to check the others
#
# Keeps whatever exists, so it can run at every `docker compose up`; delete
# a host's files (or the volume) to renew them. Keys are P-256, mode 0600.
set -eu
[ $# -ge 1 ] || { echo "usage: make-certs.sh DIR [HOST...]" >&2; exit 2; }
dir=$1
shift
[ $# -gt 0 ] || set -- rooms store gateway
umask 077
mkdir -p "$dir/ca"

if [ ! -s "$dir/ca/ca.pem" ]; then
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
    -keyout "$dir/ca/ca.key" -out "$dir/ca/ca.pem" -days 3650 -subj "/CN=Parley cluster CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
  echo "make-certs: new CA in $dir/ca"
fi

for host in "$@"; do
  out=$dir/$host
  mkdir -p "$out"
  if [ -s "$out/cert.pem" ] && [ -s "$out/key.pem" ]; then
    continue
  fi
  ext=$(mktemp)
  printf '%s\n' "subjectAltName=DNS:$host,DNS:$host.backend" \
    "extendedKeyUsage=serverAuth,clientAuth" "keyUsage=critical,digitalSignature" \
    "basicConstraints=critical,CA:FALSE" >"$ext"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
    -keyout "$out/key.pem" -out "$out/req.csr" -subj "/CN=$host" 2>/dev/null
  openssl x509 -req -sha256 -in "$out/req.csr" -CA "$dir/ca/ca.pem" -CAkey "$dir/ca/ca.key" \
    -CAcreateserial -out "$out/cert.pem" -days 825 -extfile "$ext" 2>/dev/null
  cp "$dir/ca/ca.pem" "$out/ca.pem"
  rm -f "$out/req.csr" "$ext"
  echo "make-certs: certificate for $host in $out"
done
