#!/usr/bin/env bash
# make_certs.sh DIR — the certificates the TLS tests need, made fresh with
# openssl (EC P-256: quick to make):
#   ca            the cluster's CA
#   server        signed by ca, names localhost and 127.0.0.1 (as a DNS
#                 name too: mbedTLS 2.28 matches DNS names only)
#   client        signed by ca, a service's client certificate
#   expired       like server, but its validity ended in 2020
#   wrongname     signed by ca, names only other.example
#   other-ca      another CA; stranger is a server/client cert it signed
set -euo pipefail
dir=${1:?usage: make_certs.sh DIR}
mkdir -p "$dir"
cd "$dir"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }
ca() {
  key "$1"
  openssl req -x509 -new -key "$1.key" -out "$1.pem" -days 2 -subj "/CN=$2" 2>/dev/null
}
# cert NAME CA SAN: a leaf signed by CA, valid now for two days.
cert() {
  key "$1"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$1" 2>/dev/null
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial \
    -out "$1.pem" -days 2 -extfile <(printf 'subjectAltName=%s\n' "$3") 2>/dev/null
}

ca ca "Parley Test CA"
ca other-ca "Someone Else's CA"
san_local="DNS:localhost,DNS:127.0.0.1,IP:127.0.0.1"
cert server ca "$san_local"
cert client ca "DNS:parley-service"
cert wrongname ca "DNS:other.example"
cert stranger other-ca "$san_local"

# An expired certificate needs chosen dates, which only `openssl ca` sets.
key expired
openssl req -new -key expired.key -out expired.csr -subj "/CN=expired" 2>/dev/null
mkdir -p ca.db
: >ca.db/index.txt
echo 1000 >ca.db/serial
cat >ca.db/openssl.cnf <<CNF
[ca]
default_ca = test
[test]
database = ca.db/index.txt
serial = ca.db/serial
new_certs_dir = ca.db
certificate = ca.pem
private_key = ca.key
default_md = sha256
policy = any
copy_extensions = none
x509_extensions = leaf
[any]
commonName = supplied
[leaf]
subjectAltName = $san_local
CNF
openssl ca -batch -notext -config ca.db/openssl.cnf -in expired.csr -out expired.pem \
  -startdate 20200101000000Z -enddate 20200102000000Z 2>/dev/null
rm -f ./*.csr
