#!/usr/bin/env bash
# Per-address limits behind a gateway (issue 14, item 4): a gateway on its
# own (`--services gateway`) reaches auth over tls+tcp with mutual TLS
# (the cluster's CA); auth trusts the end client's address the gateway
# passes ("peer" metadata) because the gateway proved itself with a
# certificate of that CA. Two HTTP clients from different addresses
# (127.0.0.2, 127.0.0.3) through the one gateway: the first runs into the
# Register limit of its address; the second, through the same gateway, is
# not limited by it. (Over a plain socket the same metadata is ignored:
# rpc_peer_test.)
source "$(dirname "$0")/http_lib.sh"
command -v openssl >/dev/null || fail "missing openssl (bash .ci/deps installs it)"

certs=$work/certs
bash "$(dirname "$0")/../tls/make_certs.sh" "$certs"

pick_ports
auth_tls="tls+tcp://127.0.0.1:$port_auth"
"$PARLEYD" --data-dir "$work/data" --http-listen none \
  --auth-listen "$auth_tls" --rooms-listen "$PARLEY_ROOMS" \
  --history-listen "$PARLEY_HISTORY" --messaging-listen "$PARLEY_MESSAGING" \
  --tls-cert "$certs/server.pem" --tls-key "$certs/server.key" --tls-ca "$certs/ca.pem" \
  2>>"$work/parleyd.log" &
daemon_pid=$!
gw_port=$(free_port)
http_url=http://127.0.0.1:$gw_port
"$PARLEYD" --services gateway --data-dir "$work/gateway-data" --http-listen "$http_url" \
  --auth "$auth_tls" --rooms "$PARLEY_ROOMS" --history "$PARLEY_HISTORY" \
  --messaging "$PARLEY_MESSAGING" \
  --tls-cert "$certs/client.pem" --tls-key "$certs/client.key" --tls-ca "$certs/ca.pem" \
  2>>"$work/gateway.log" &
gw_pid=$!
bg_pids+=("$gw_pid")
wait_http

# from ADDRESS METHOD BODY: post() from that source address.
from() {
  local src=$1 method=$2 data=$3
  status=$(curl -s --interface "$src" -o "$work/body" -D "$work/headers" -w '%{http_code}' \
    -X POST -H 'Content-Type: application/json' --max-time 60 --data-raw "$data" \
    "$http_url/parley.v1.$method") || status=000
}
register_from() { # ADDRESS USER
  from "$1" Auth/Register "{\"userId\":\"$2\",\"password\":\"pw-$2-secret\",\"displayName\":\"$2\"}"
}
registered() { register_from 127.0.0.4 "$1" && [[ $status == 200 ]]; }
wait_for "auth through the gateway over mutual TLS" 20 registered taken

# Each address asks for the taken id 9 times: under the limit of 10 for
# each, over it for both together (the gateway's one address, before).
for src in 127.0.0.2 127.0.0.3; do
  for i in $(seq 1 9); do
    register_from $src taken
    want_error 409 already_exists "already exists"
  done
done
ok "9 taken ids from each of two addresses through one gateway, none limited"
register_from 127.0.0.3 bob
want_ok
from 127.0.0.3 Auth/Login '{"userId":"bob","password":"pw-bob-secret"}'
want_ok

# 127.0.0.2 goes on until its address is limited; 127.0.0.3 is not.
limited=0
for i in 1 2 3; do
  register_from 127.0.0.2 taken
  if [[ $status == 429 ]]; then limited=$i; break; fi
  want_error 409 already_exists "already exists"
done
((limited > 0)) || fail "127.0.0.2 was never limited after 12 taken ids"
want_error 429 resource_exhausted "taken user ids asked for from your address"
register_from 127.0.0.3 dave
want_ok
ok "127.0.0.2 limited after $((9 + limited - 1)) taken ids; 127.0.0.3, through the same gateway, is not"

kill -TERM "$gw_pid"
wait "$gw_pid" || fail "the gateway did not exit cleanly on SIGTERM"
kill -TERM "$daemon_pid"
wait "$daemon_pid" || fail "parleyd did not exit cleanly on SIGTERM"
daemon_pid=""
ok "both stop cleanly"
