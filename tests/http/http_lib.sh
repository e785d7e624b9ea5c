# http_lib.sh — for the tests of the HTTP face: a real parleyd (e2e/lib.sh
# starts it on free ports, the HTTP face on $http_url) and curl as the
# client, with nothing of Parley's code on the client side.
#
# post METHOD BODY [TOKEN] [CONTENT-TYPE]: POSTs BODY (a file when it starts
# with @) to /parley.v1.METHOD; the status is left in $status, the body in
# $work/body, the headers in $work/headers.

source "$(dirname "${BASH_SOURCE[0]}")/../e2e/lib.sh"
for tool in curl jq protoc python3; do
  command -v "$tool" >/dev/null || fail "missing $tool (bash .ci/deps installs it)"
done
: "${PROTO_DIR:?path of proto/}"

post() {
  local method=$1 body=$2 token=${3:-} ctype=${4:-application/json}
  local args=(-s -o "$work/body" -D "$work/headers" -w '%{http_code}' -X POST
    -H "Content-Type: $ctype" --max-time 60)
  [[ -n $token ]] && args+=(-H "Authorization: Bearer $token")
  if [[ $body == @* ]]; then args+=(--data-binary "$body"); else args+=(--data-raw "$body"); fi
  status=$(curl "${args[@]}" "$http_url/parley.v1.$method") || status=000
}

body() { cat "$work/body"; }

# want_ok: the last call answered 200.
want_ok() {
  [[ $status == 200 ]] || fail "want 200, got $status: $(body)"
}

# want_error HTTP_STATUS CONNECT_CODE MESSAGE_REGEX: the last call failed so,
# with a Connect error body (application/json) whose message matches.
want_error() {
  local http=$1 code=$2 re=$3
  [[ $status == "$http" ]] || fail "want HTTP $http ($code), got $status: $(body)"
  grep -qi '^content-type: application/json' "$work/headers" ||
    fail "error body is not application/json: $(cat "$work/headers")"
  [[ $(jq -r .code "$work/body") == "$code" ]] || fail "want code $code, got $(body)"
  jq -r .message "$work/body" | grep -qE -- "$re" || fail "message does not match /$re/: $(body)"
}

wait_http() {
  wait_for "the HTTP face on $http_url" 15 curl -sf "$http_url/healthz"
}

# login NAME: logs NAME (password pw-NAME-secret) in over HTTP and sets
# $token; the reply stays in $work/body.
login() {
  post Auth/Login "{\"userId\":\"$1\",\"password\":\"pw-$1-secret\"}"
  want_ok
  token=$(jq -r .token "$work/body")
  [[ ${#token} -eq 43 ]] || fail "bad token from login: $(body)"
}

# register_login NAME: registers NAME over HTTP and sets $token.
register_login() {
  post Auth/Register "{\"userId\":\"$1\",\"password\":\"pw-$1-secret\",\"displayName\":\"$1\"}"
  want_ok
  login "$1"
}

# frame: wraps stdin (one message) in a Connect envelope.
frame() {
  python3 -c 'import sys,struct; b=sys.stdin.buffer.read(); sys.stdout.buffer.write(b"\0"+struct.pack(">I",len(b))+b)'
}

# unframe: a Connect stream on stdin -> one line per message: FLAGS PAYLOAD
# (payload as JSON text for +json, as hex for +proto with --hex).
unframe() {
  python3 -c '
import sys
hexed = "--hex" in sys.argv
d = sys.stdin.buffer.read()
i = 0
while i + 5 <= len(d):
    f = d[i]; n = int.from_bytes(d[i+1:i+5], "big")
    p = d[i+5:i+5+n]
    if len(p) < n:
        break
    try:
        print(f, p.hex() if hexed and not f & 2 else p.decode(), flush=True)
    except BrokenPipeError:
        sys.exit(0)  # the reader has what it wanted
    i += 5 + n
' "$@" 2>/dev/null
}

# stream_has FILE REGEX: a message of the Connect stream in FILE matches.
stream_has() { unframe <"$1" | grep -q -- "$2"; }
