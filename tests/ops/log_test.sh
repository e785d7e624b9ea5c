#!/usr/bin/env bash
# The daemon's log as an operator reads it, in both formats: every failed
# call is one line with method, status, request id, peer and duration; a
# method name from the network cannot forge a line; and after a whole
# session (register, login, send, a wrong password, logout, a call with the
# revoked token) neither the password nor the token appears anywhere.
source "$(dirname "$0")/../e2e/lib.sh"
need_services auth rooms history messaging

password='Zq8-unique-Passw0rd-4417'
# A frame with a forged line in its method name, encoded once with protoc.
printf 'method: "/parley.v1.Auth/Nope\\n2001-01-01T00:00:00.000Z info auth: FORGED" timeout_ms: 5000 request_id: 4242' |
  protoc -I "$PROTO_DIR" --encode=parley.v1.RpcRequest parley/v1/rpc.proto >"$work/forged.bin"

session() { # a whole session as alice; leaves her token in $token
  local fmt=$1
  echo "$password" | expect 0 "alice-$fmt" register alice --password-stdin
  echo "$password" | expect 0 "alice-$fmt" login alice --password-stdin
  token=$(sed -n 's/^token=//p' "$work/home-alice-$fmt/parley/session")
  [[ ${#token} -ge 32 ]] || fail "no token in the session file"
  cp "$work/home-alice-$fmt/parley/session" "$work/saved-session"
  expect 0 "alice-$fmt" join general
  expect 0 "alice-$fmt" send general "hello from the log test"
  echo "not-the-$password" | expect_err 1 UNAUTHENTICATED "alice-$fmt" login alice --password-stdin
  cp "$work/saved-session" "$work/home-alice-$fmt/parley/session"
  expect 0 "alice-$fmt" logout
  # The revoked token, presented again.
  cp "$work/saved-session" "$work/home-alice-$fmt/parley/session"
  expect_err 1 UNAUTHENTICATED "alice-$fmt" send general "after logout"
  nngcat --req --dial "$PARLEY_AUTH" --file "$work/forged.bin" --raw --recv-timeout 5 >/dev/null
}

no_secrets() {
  local log=$1
  ! grep -qF -- "$password" "$log" || fail "the password is in the log"
  ! grep -qF -- "${password:4:12}" "$log" || fail "part of the password is in the log"
  ! grep -qF -- "$token" "$log" || fail "the token is in the log"
  ! grep -qF -- "${token:0:12}" "$log" || fail "the start of the token is in the log"
  ! grep -qiF -- "bearer" "$log" || fail "an authorization header is in the log"
}

# --- text ----------------------------------------------------------------------
start_parleyd --log-format text
session text
stop_parleyd
log=$work/parleyd.log
no_secrets "$log"
ts='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{12}Z '
line=$(grep 'method="/parley.v1.Auth/Login"' "$log") || fail "no line for the failed login"
(( $(wc -l <<<"$line") == 1 )) || fail "the failed login was logged $(wc -l <<<"$line") times: $line"
[[ $line =~ ${ts}warn\ auth:\ call\ failed\ method=\"/parley.v1.Auth/Login\"\ status=UNAUTHENTICATED\ code=16\ request_id=[1-9][0-9]*\ peer=\"127.0.0.1\"\ duration_ms=[0-9.]+\ message=\"invalid\ user\ id\ or\ password\"$ ]] ||
  fail "failed login line: $line"
line=$(grep 'method="/parley.v1.Messaging/Send"' "$log") || fail "no line for the send with a revoked token"
(( $(wc -l <<<"$line") == 1 )) || fail "the failed send was logged $(wc -l <<<"$line") times"
[[ $line == *"status=UNAUTHENTICATED"* && $line == *'peer="127.0.0.1"'* ]] || fail "failed send line: $line"
grep -q 'status=OK\|method="/parley.v1.Messaging/Open"' "$log" && fail "successful calls are logged as failures"
forged=$(grep -c 'FORGED' "$log")
((forged == 1)) || fail "the forged method shows on $forged lines"
grep 'FORGED' "$log" | grep -Eq "${ts}warn auth: call failed method=\"/parley.v1.Auth/Nope\\\\x0a2001-01-01T00:00:00.000Z info auth: FORGED\" status=UNIMPLEMENTED code=12 request_id=4242 " ||
  fail "forged method line: $(grep FORGED "$log")"
bad=$(grep -Ev "$ts(info|warn|error) [a-z]+: " "$log" || true)
[[ -z $bad ]] || fail "lines not in the text format: $bad"
ok "text log: one line per failed call with method, status, request id, peer and duration; no password, token or header; no forged line"

# --- json ----------------------------------------------------------------------
mv "$log" "$work/text.log"
rm -rf "$work/data"
PARLEY_LOG_FORMAT=json start_parleyd
session json
stop_parleyd
no_secrets "$log"
python3 - "$log" <<'PY' || fail "json log"
import json, re, sys
lines = [json.loads(l) for l in open(sys.argv[1])]   # every line is one JSON object
for o in lines:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", o["ts"]), o
    assert o["level"] in ("info", "warn", "error") and o["component"] and "msg" in o, o
failed = [o for o in lines if o["msg"] == "call failed"]
logins = [o for o in failed if o["method"] == "/parley.v1.Auth/Login"]
assert len(logins) == 1, logins
l = logins[0]
assert l["status"] == "UNAUTHENTICATED" and l["code"] == 16 and l["level"] == "warn", l
assert l["message"] == "invalid user id or password", l
assert int(l["request_id"]) > 0 and isinstance(l["duration_ms"], float) and l["duration_ms"] >= 0, l
assert l["peer"] == "127.0.0.1", l
sends = [o for o in failed if o["method"] == "/parley.v1.Messaging/Send"]
assert len(sends) == 1 and sends[0]["status"] == "UNAUTHENTICATED", sends
forged = [o for o in failed if "FORGED" in o["method"]]
assert len(forged) == 1 and forged[0]["method"].startswith("/parley.v1.Auth/Nope\n"), forged
assert forged[0]["request_id"] == "4242" and forged[0]["status"] == "UNIMPLEMENTED", forged
print(f"ok json log: {len(lines)} lines, {len(failed)} failed calls, each with method, status, request id, peer, duration")
PY
ok "json log: no password, token or header"
