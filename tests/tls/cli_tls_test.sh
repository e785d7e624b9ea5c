#!/usr/bin/env bash
# The parley CLI over tls+tcp:// against real parleyd processes, with
# certificates made now (make_certs.sh): a chat works with --tls-ca; a
# server signed by another CA, an expired certificate, a certificate for
# another name and a plaintext client on a TLS port all fail fast with a
# message saying which; parleyd refuses to start on a TLS address without
# a certificate, and names a certificate file it cannot use.
source "$(dirname "$0")/../e2e/lib.sh"
certs=$work/certs
bash "$(dirname "$0")/make_certs.sh" "$certs"

# parleyd_refuses WANT ARGS...: parleyd must exit 1 at start, saying WANT.
parleyd_refuses() {
  local want=$1 rc=0
  shift
  timeout 30 "$PARLEYD" --data-dir "$work/refused" --services auth \
    --auth-listen "tls+tcp://127.0.0.1:$(free_port)" "$@" >"$work/err" 2>&1 || rc=$?
  [[ $rc == 1 ]] || fail "parleyd $*: exit $rc, want 1: $(cat "$work/err")"
  grep -qF -- "$want" "$work/err" || fail "parleyd $*: no '$want' in: $(cat "$work/err")"
}
parleyd_refuses "a TLS address needs a certificate and its key (--tls-cert FILE --tls-key FILE)"
parleyd_refuses "TLS certificate file '$certs/missing.pem': No such file or directory" \
  --tls-cert "$certs/missing.pem" --tls-key "$certs/server.key"
parleyd_refuses "TLS certificate file '$certs/server.key' holds no certificate mbedTLS accepts" \
  --tls-cert "$certs/server.key" --tls-key "$certs/server.key"
parleyd_refuses "TLS key file '$certs/server.pem' holds no private key" \
  --tls-cert "$certs/server.pem" --tls-key "$certs/server.pem"
parleyd_refuses "TLS CA file '$certs/ca.srl' is not PEM" \
  --tls-cert "$certs/server.pem" --tls-key "$certs/server.key" --tls-ca "$certs/ca.srl"
parleyd_refuses "a certificate needs its key" --tls-cert "$certs/server.pem"
ok "parleyd refuses TLS addresses without a usable certificate, naming the file"

# Every public endpoint on tls+tcp; the internal ones stay on loopback tcp.
pick_ports
export PARLEY_AUTH="tls+tcp://127.0.0.1:$port_auth"
export PARLEY_ROOMS="tls+tcp://127.0.0.1:$port_rooms"
export PARLEY_HISTORY="tls+tcp://127.0.0.1:$port_history"
export PARLEY_MESSAGING="tls+tcp://127.0.0.1:$port_messaging"
# parleyd reads PARLEY_TLS_CA too (and would then want client
# certificates): the CA is the CLI's only.
env -u PARLEY_TLS_CA "$PARLEYD" --data-dir "$work/data" \
  --auth-listen "$PARLEY_AUTH" --rooms-listen "$PARLEY_ROOMS" \
  --history-listen "$PARLEY_HISTORY" --messaging-listen "$PARLEY_MESSAGING" \
  --events-listen "tcp://127.0.0.1:$port_events" \
  --room-events-listen "tcp://127.0.0.1:$port_room_events" \
  --rooms-internal-listen "tcp://127.0.0.1:$port_rooms_internal" \
  --http-listen "http://127.0.0.1:$(free_port)" \
  --tls-cert "$certs/server.pem" --tls-key "$certs/server.key" 2>>"$work/parleyd.log" >&2 &
daemon_pid=$!
export PARLEY_TLS_CA=$certs/ca.pem
wait_for "parleyd serving" 15 "$PARLEY" health --timeout 300

expect 0 nobody health
for s in auth rooms history messaging; do out_has "^$s +tls\+tcp://.* SERVING$"; done
signup alice
expect 0 alice create lobby
expect 0 alice join lobby
expect 0 alice send lobby "over TLS"
expect 0 alice history lobby
out_has "alice: over TLS$"
expect 0 alice --auth "tls+tcp://localhost:$port_auth" health auth
ok "a chat over tls+tcp:// with --tls-ca (by address and by name)"

# expect_tls_err STATUS MESSAGE ARGS...: parley ARGS must fail with
# "error: STATUS: ...MESSAGE..." well within its --timeout (no hang).
expect_tls_err() {
  local status=$1 msg=$2 rc=0
  shift 2
  mkdir -p "$work/home-nobody"
  XDG_CONFIG_HOME="$work/home-nobody" timeout 30 "$PARLEY" --timeout 5000 "$@" \
    >"$work/out" 2>"$work/err" || rc=$?
  [[ $rc == 1 ]] || fail "parley $*: exit $rc, want 1: $(cat "$work/err")"
  grep -q "^error: $status: " "$work/err" || fail "parley $*: not $status: $(cat "$work/err")"
  grep -qF -- "$msg" "$work/err" || fail "parley $*: no '$msg' in: $(cat "$work/err")"
}

expect_tls_err FAILED_PRECONDITION "TLS: the server's certificate is not trusted (check --tls-ca)" \
  --tls-ca "$certs/other-ca.pem" health auth
PARLEY_TLS_CA="" expect_tls_err FAILED_PRECONDITION \
  "TLS: the server's certificate is not trusted (check --tls-ca)" health auth
ok "a server signed by another CA (or by none the system trusts) is refused"

expect_tls_err FAILED_PRECONDITION "the server speaks TLS (use tls+tcp://)" \
  --auth "tcp://127.0.0.1:$port_auth" health auth
ok "plaintext to a TLS port fails at once, saying so"

expect_tls_err FAILED_PRECONDITION "the server does not speak TLS" \
  --auth "tls+tcp://127.0.0.1:$port_rooms_internal" health auth
ok "TLS to a plaintext port fails at once, saying so"

expect 3 nobody --tls-ca "$certs/nothing-here.pem" health auth
grep -qF "TLS CA file '$certs/nothing-here.pem': No such file or directory" "$work/err" ||
  fail "--tls-ca of a missing file: $(cat "$work/err")"
ok "--tls-ca of a missing file is named"

# Daemons whose certificate is wrong: only auth, on a TLS port each.
# side_daemon NAME CERT: starts it; its port is left in $side_port.
side_daemon() {
  side_port=$(free_port)
  env -u PARLEY_TLS_CA "$PARLEYD" --data-dir "$work/$1" --services auth \
    --auth-listen "tls+tcp://127.0.0.1:$side_port" \
    --tls-cert "$certs/$2.pem" --tls-key "$certs/$2.key" 2>"$work/$1.log" &
  bg_pids+=("$!")
  wait_for "$1 parleyd" 15 grep -q "auth serving on" "$work/$1.log"
}
side_daemon expired expired
expect_tls_err FAILED_PRECONDITION "expired" --auth "tls+tcp://127.0.0.1:$side_port" health auth
grep -qF "the server's certificate is not trusted" "$work/err" || fail "expired: $(cat "$work/err")"
ok "an expired server certificate is refused"

side_daemon wrongname wrongname
expect_tls_err FAILED_PRECONDITION "TLS: the server's certificate does not name '127.0.0.1'" \
  --auth "tls+tcp://127.0.0.1:$side_port" health auth
ok "a certificate for another name is refused"

stop_parleyd
ok "all TLS CLI checks"
