#!/usr/bin/env bash
# A client with no Parley code: protobuf messages encoded and decoded by
# protoc from proto/, carried by nngcat on a plain REQ socket. Registers,
# logs in, logs out, and sees the revoked token refused.
# python3 is used only to escape/unescape raw bytes for protobuf text format.
set -euo pipefail

: "${PARLEYD:?path of parleyd}" "${PROTO_DIR:?path of proto/}"
for tool in protoc nngcat python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (bash .ci/deps installs it)"; exit 1; }
done

work=$(mktemp -d)
pid=""
cleanup() {
  [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'echo "wire_test: failed at line $LINENO (exit $?)"; cat "$work/parleyd.log" 2>/dev/null' ERR

port=$(python3 "$(dirname "$0")/../free_ports.py" 1)
addr="tcp://127.0.0.1:$port"
"$PARLEYD" --services auth --data-dir "$work/data" --auth-listen "$addr" 2>"$work/parleyd.log" &
pid=$!

encode() { protoc -I "$PROTO_DIR" --encode="$1" "$2"; }
decode() { protoc -I "$PROTO_DIR" --decode="$1" "$2"; }
# bytes on stdin -> a protobuf text-format string literal (without quotes)
escape() { python3 -c 'import sys; sys.stdout.write("".join("\\x%02x" % b for b in sys.stdin.buffer.read()))'; }
# protobuf text-format string literal on stdin -> bytes
unescape() { python3 -c 'import sys,ast; s=sys.stdin.read().strip(); sys.stdout.buffer.write(ast.literal_eval("b\"" + s + "\"") if s else b"")'; }

# call METHOD REQUEST_TYPE REQUEST_TEXT [TOKEN] -> RpcResponse text in $work/resp.txt,
# the reply body bytes in $work/body.bin
call() {
  local method=$1 type=$2 text=$3 token=${4:-} body meta=""
  body=$(printf '%s' "$text" | encode "$type" parley/v1/"$(file_of "$type")" | escape)
  [[ -n $token ]] && meta="metadata { key: \"authorization\" value: \"Bearer $token\" }"
  printf 'method: "%s" body: "%s" timeout_ms: 10000 request_id: 77 %s' "$method" "$body" "$meta" |
    encode parley.v1.RpcRequest parley/v1/rpc.proto >"$work/req.bin"
  nngcat --req --dial "$addr" --file "$work/req.bin" --raw --recv-timeout 15 >"$work/resp.bin"
  decode parley.v1.RpcResponse parley/v1/rpc.proto <"$work/resp.bin" >"$work/resp.txt"
  # return, not exit: the wait below calls this before the daemon listens
  # (nngcat's dial is then refused, and there is no reply at all).
  grep -q 'request_id: 77' "$work/resp.txt" || { echo "request id not echoed"; cat "$work/resp.txt"; return 1; }
  sed -n 's/^body: "\(.*\)"$/\1/p' "$work/resp.txt" | unescape >"$work/body.bin"
}
file_of() { case $1 in parley.v1.Health*) echo health.proto ;; *) echo auth.proto ;; esac; }
code_of() { sed -n 's/^  code: \([A-Z_]*\)$/\1/p' "$work/resp.txt"; }

# Wait for the daemon: Health/Check until SERVING.
for _ in $(seq 100); do
  if call /parley.v1.Health/Check parley.v1.HealthCheckRequest '' >/dev/null 2>&1 &&
     decode parley.v1.HealthCheckResponse parley/v1/health.proto <"$work/body.bin" | grep -q SERVING; then
    break
  fi
  sleep 0.1
done

call /parley.v1.Auth/Register parley.v1.RegisterRequest \
  'user_id: "wire" password: "wire-password" display_name: "Wire Client" email: "wire@example.org"'
[[ -z $(code_of) ]] || { echo "register failed:"; cat "$work/resp.txt"; exit 1; }
decode parley.v1.RegisterResponse parley/v1/auth.proto <"$work/body.bin" | grep -q 'user_id: "wire"'
echo "ok register over protoc + nngcat"

call /parley.v1.Auth/Register parley.v1.RegisterRequest \
  'user_id: "wire" password: "wire-password" display_name: "Wire Client"'
[[ $(code_of) == ALREADY_EXISTS ]] || { echo "duplicate not refused"; cat "$work/resp.txt"; exit 1; }

call /parley.v1.Auth/Login parley.v1.LoginRequest 'user_id: "wire" password: "wire-password"'
[[ -z $(code_of) ]] || { echo "login failed:"; cat "$work/resp.txt"; exit 1; }
token=$(decode parley.v1.LoginResponse parley/v1/auth.proto <"$work/body.bin" | sed -n 's/^token: "\(.*\)"$/\1/p')
[[ ${#token} -eq 43 ]] || { echo "bad token '$token'"; exit 1; }
echo "ok login over protoc + nngcat"

call /parley.v1.Auth/Validate parley.v1.ValidateRequest "token: \"$token\""
decode parley.v1.ValidateResponse parley/v1/auth.proto <"$work/body.bin" | grep -q 'user_id: "wire"'

call /parley.v1.Auth/Logout parley.v1.LogoutRequest '' "$token"
[[ -z $(code_of) ]] || { echo "logout failed:"; cat "$work/resp.txt"; exit 1; }
call /parley.v1.Auth/Validate parley.v1.ValidateRequest "token: \"$token\""
[[ $(code_of) == UNAUTHENTICATED ]] || { echo "revoked token accepted"; cat "$work/resp.txt"; exit 1; }
echo "ok logout revokes the token"

call /parley.v1.Auth/Login parley.v1.LoginRequest 'user_id: "wire" password: "wrong-password"'
[[ $(code_of) == UNAUTHENTICATED ]] || { echo "wrong password accepted"; exit 1; }
echo "ok wire test"
