#!/usr/bin/env bash
# https: certificates made here with openssl; curl checks the server's
# certificate against the test CA; plaintext to the TLS port fails; an
# https address without certificate and key, or another bad address, is
# refused at start with a clear message; --tls-ca requires client
# certificates signed by that CA (mutual TLS).
source "$(dirname "$0")/http_lib.sh"
command -v openssl >/dev/null || fail "missing openssl (bash .ci/deps installs it)"

pki=$work/pki
mkdir -p "$pki"
ossl() { openssl "$@" 2>>"$pki/openssl.log" >/dev/null || fail "openssl $1 failed: $(tail -3 "$pki/openssl.log")"; }
# make_ca NAME; make_cert NAME CA SUBJECT-ALT-NAMES
make_ca() {
  ossl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$1" \
    -keyout "$pki/$1.key" -out "$pki/$1.pem"
}
make_cert() {
  local name=$1 ca=$2 san=$3
  ossl req -newkey rsa:2048 -nodes -subj "/CN=$name" -keyout "$pki/$name.key" -out "$pki/$name.csr"
  printf 'subjectAltName=%s\n' "$san" >"$pki/$name.ext"
  ossl x509 -req -in "$pki/$name.csr" -CA "$pki/$ca.pem" -CAkey "$pki/$ca.key" \
    -CAcreateserial -days 2 -extfile "$pki/$name.ext" -out "$pki/$name.pem"
}
make_ca ca
make_ca rogue-ca
make_cert server ca "IP:127.0.0.1,DNS:localhost"
make_cert client ca "DNS:client"
make_cert rogue rogue-ca "DNS:rogue"

# --- bad addresses and missing TLS files are refused at start ------------------------------
refuse() { # WANT-REGEX PARLEYD-ARGS...
  local want=$1 rc=0
  shift
  "$PARLEYD" --data-dir "$work/refused" --services auth --auth-listen "tcp://127.0.0.1:$(free_port)" \
    "$@" >"$work/out" 2>&1 || rc=$?
  ((rc != 0)) || fail "parleyd started with $*"
  grep -qE -- "$want" "$work/out" || fail "parleyd $*: unclear error: $(cat "$work/out")"
}
p=$(free_port)
refuse "https://127.0.0.1:$p is https: give a certificate and a key" --http-listen "https://127.0.0.1:$p"
refuse "give both --tls-cert and --tls-key" --http-listen "https://127.0.0.1:$p" --tls-cert "$pki/server.pem"
refuse "TLS certificate file '$pki/nope.pem': No such file" --http-listen "https://127.0.0.1:$p" \
  --tls-cert "$pki/nope.pem" --tls-key "$pki/server.key"
refuse "not an HTTP address" --http-listen "ftp://127.0.0.1:$p"
refuse "not an HTTP address" --http-listen "127.0.0.1:$p"
ok "bad HTTP addresses and missing TLS files refused at start, with the reason"

# --- https --------------------------------------------------------------------------------------
pick_ports
start_parleyd --http-listen "https://127.0.0.1:$port_http" --tls-cert "$pki/server.pem" \
  --tls-key "$pki/server.key"
http_url=https://127.0.0.1:$port_http
wait_for "https" 15 curl -sf --cacert "$pki/ca.pem" "$http_url/healthz"
post() {
  local method=$1 json=$2 token=${3:-}
  local args=(-s --cacert "$pki/ca.pem" -o "$work/body" -D "$work/headers" -w '%{http_code}'
    -X POST -H "Content-Type: application/json" --data-raw "$json")
  [[ -n $token ]] && args+=(-H "Authorization: Bearer $token")
  status=$(curl "${args[@]}" "$http_url/parley.v1.$method") || status=000
}
register_login carol
post Rooms/CreateRoom '{"roomId":"secret","name":"Secret"}' "$token"
want_ok
ok "register, log in, create a room over https"

rc=0
curl -s -o /dev/null "$http_url/healthz" || rc=$?
((rc == 60)) || fail "curl without the CA: exit $rc, want 60 (certificate not trusted)"
rc=0
curl -s -o /dev/null --max-time 10 "http://127.0.0.1:$port_http/healthz" || rc=$?
((rc != 0)) || fail "plaintext HTTP to the https port was answered"
ok "an untrusted certificate is refused by the client; plaintext to the TLS port fails (curl exit $rc)"
stop_parleyd

# --- mutual TLS -------------------------------------------------------------------------------
start_parleyd --http-listen "https://127.0.0.1:$port_http" --tls-cert "$pki/server.pem" \
  --tls-key "$pki/server.key" --tls-ca "$pki/ca.pem"
wait_for "https with client certificates" 15 curl -sf --cacert "$pki/ca.pem" \
  --cert "$pki/client.pem" --key "$pki/client.key" "$http_url/healthz"
get() { # EXTRA-CURL-ARGS...
  status=$(curl -s --cacert "$pki/ca.pem" -o "$work/body" -D "$work/headers" -w '%{http_code}' \
    "$@" "$http_url/healthz") || status=000
}
get
want_error 403 permission_denied "client certificate signed by its CA"
get --cert "$pki/rogue.pem" --key "$pki/rogue.key"
rogue=$status
[[ $rogue == 403 ]] && want_error 403 permission_denied "client certificate"
[[ $rogue == 403 || $rogue == 000 ]] || fail "a certificate of another CA got $rogue: $(body)"
get --cert "$pki/client.pem" --key "$pki/client.key"
want_ok
ok "--tls-ca: no client certificate 403, another CA's refused ($rogue), ours served"
