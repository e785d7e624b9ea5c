#!/usr/bin/env bash
# The Connect protocol's unary calls with curl as the client: the life of
# a chat user in JSON (register, log in, create and join a room, send,
# read history), the same in application/proto (protoc encodes and
# decodes), keep-alive, and every kind of bad input with its HTTP status,
# Connect code and message.
source "$(dirname "$0")/http_lib.sh"

start_parleyd
wait_http

# --- health -------------------------------------------------------------------
curl -s -D "$work/headers" -o "$work/body" "$http_url/healthz"
[[ $(jq -r .status "$work/body") == ok ]] || fail "healthz: $(body)"
jq -e '.version | length > 0' "$work/body" >/dev/null || fail "healthz has no version: $(body)"
ok "GET /healthz"

# --- a user's life in JSON ------------------------------------------------------
register_login alice
alice=$token
# the original proto field names are accepted too
post Auth/Register '{"user_id":"bob","password":"pw-bob-secret","display_name":"Bob"}'
want_ok
[[ $(jq -r .user.userId "$work/body") == bob ]] || fail "lowerCamelCase on output: $(body)"
post Auth/Login '{"userId":"bob","password":"pw-bob-secret"}'
bob=$(jq -r .token "$work/body")

post Rooms/CreateRoom '{"roomId":"lobby","name":"The Lobby"}' "$alice"
want_ok
[[ $(jq -r .room.memberCount "$work/body") == 1 ]] || fail "create: $(body)"
post Rooms/JoinRoom '{"roomId":"lobby"}' "$bob"
want_ok
post Messaging/Send '{"roomId":"lobby","text":"hello over http","clientMsgId":"a1"}' "$alice"
want_ok
seq=$(jq -r .seq "$work/body")
[[ $seq =~ ^[0-9]+$ ]] || fail "seq is not a 64-bit integer as a string: $(body)"
post Messaging/Send '{"roomId":"lobby","text":"hello over http","clientMsgId":"a1"}' "$alice"
[[ $(jq -r .seq "$work/body") == "$seq" ]] || fail "a retried send got another seq: $(body)"
post Messaging/Send '{"roomId":"lobby","text":"héllo ✓ bob here","clientMsgId":"b1"}' "$bob"
want_ok
post History/GetHistory '{"roomId":"lobby","limit":10}' "$bob"
want_ok
jq -e '[.events[] | select(.message) | .message.text] == ["hello over http", "héllo ✓ bob here"]' \
  "$work/body" >/dev/null || fail "history: $(body)"
jq -e '[.events[] | select(.membership) | .membership.kind] == ["JOINED", "JOINED"]' \
  "$work/body" >/dev/null || fail "enums by name: $(body)"
jq -e '.events | map(.seq | tonumber) | . == (. | sort)' "$work/body" >/dev/null || fail "order: $(body)"
ok "register, log in, create, join, send (idempotent), history in JSON"
post Messaging/SendBatch '{"messages":[{"roomId":"lobby","text":"batch one","clientMsgId":"sb1"},{"roomId":"lobby","text":"batch two","clientMsgId":"sb2"}]}' "$bob"
want_ok
jq -e '(.results | length) == 2 and (.results[1].seq | tonumber) == (.results[0].seq | tonumber) + 1' \
  "$work/body" >/dev/null || fail "SendBatch: $(body)"
post Messaging/SendBatch '{"messages":[{"roomId":"lobby","text":"fine"},{"roomId":"lobby","text":""}]}' "$bob"
want_error 400 invalid_argument "messages\[1\]: text must be"
ok "SendBatch in JSON: consecutive seqs; a refusal names the message"

# --- application/proto ----------------------------------------------------------
encode() { protoc -I "$PROTO_DIR" --encode="parley.v1.$1" "parley/v1/$2"; }
decode() { protoc -I "$PROTO_DIR" --decode="parley.v1.$1" "parley/v1/$2" <"$work/body"; }
printf 'room_id: "lobby" text: "binary hello" client_msg_id: "p1"' |
  encode SendRequest messaging.proto >"$work/req.bin"
post Messaging/Send "@$work/req.bin" "$bob" application/proto
want_ok
grep -qi '^content-type: application/proto' "$work/headers" || fail "proto reply type"
decode SendResponse messaging.proto | grep -q '^seq: ' || fail "proto reply: $(decode SendResponse messaging.proto)"
printf 'room_id: "lobby" limit: 1' | encode GetHistoryRequest history.proto >"$work/req.bin"
post History/GetHistory "@$work/req.bin" "$bob" application/proto
want_ok
decode GetHistoryResponse history.proto | grep -q 'text: "binary hello"' ||
  fail "proto history: $(decode GetHistoryResponse history.proto)"
printf 'room_id: "nowhere" text: "x"' | encode SendRequest messaging.proto >"$work/req.bin"
post Messaging/Send "@$work/req.bin" "$bob" application/proto
want_error 404 not_found "nowhere"
ok "application/proto unary calls; errors stay Connect JSON"

# --- keep-alive: one connection for several calls ----------------------------------
n=$(curl -s -o /dev/null -w '%{num_connects} ' "$http_url/healthz" \
  --next -s -o /dev/null -w '%{num_connects} ' -H 'Content-Type: application/json' \
  -H "Authorization: Bearer $bob" --data-raw '{"roomId":"lobby","limit":1}' \
  "$http_url/parley.v1.History/GetHistory" \
  --next -s -o /dev/null -w '%{num_connects}' "$http_url/healthz")
[[ $n == "1 0 0" ]] || fail "connections opened per call: $n (want 1 0 0: one, reused)"
ok "keep-alive: three calls on one connection"

# --- auth ---------------------------------------------------------------------------
post Messaging/Send '{"roomId":"lobby","text":"x"}'
want_error 401 unauthenticated "missing bearer token"
post Messaging/Send '{"roomId":"lobby","text":"x"}' "not-a-valid-token-at-all"
want_error 401 unauthenticated "."
status=$(curl -s -o "$work/body" -D "$work/headers" -w '%{http_code}' -X POST \
  -H 'Content-Type: application/json' -H 'Authorization: Basic YWxpY2U6cHc=' \
  --data-raw '{}' "$http_url/parley.v1.Rooms/ListMyRooms")
want_error 401 unauthenticated "Bearer <token>"
post Rooms/CreateRoom '{"roomId":"lobby","name":"again"}' "$bob"
want_error 409 already_exists "lobby"
ok "bad and missing tokens: 401 unauthenticated; 409 already_exists"

# --- bad input ------------------------------------------------------------------------
post Messaging/Send '{"roomId":"lobby","text":' "$bob"
want_error 400 invalid_argument "."
post Messaging/Send '{"roomId":"lobby","text":42}' "$bob"
want_error 400 invalid_argument "text"
post Messaging/Send '{"roomId":"lobby","txet":"typo"}' "$bob"
want_error 400 invalid_argument "txet"
post History/GetHistory '{"roomId":"lobby","limit":"many"}' "$bob"
want_error 400 invalid_argument "limit"
printf '{"roomId":"lobby","text":"bad \xff\xfe utf-8"}' >"$work/req.json"
post Messaging/Send "@$work/req.json" "$bob"
want_error 400 invalid_argument "byte 0xff|UTF-8"
printf '\x0a\x05lo\xffby\x12\x01x' >"$work/req.bin"
post Messaging/Send "@$work/req.bin" "$bob" application/proto
want_error 400 invalid_argument "room_id"
post Messaging/Send '{"roomId":"lobby","text":""}' "$bob"
want_error 400 invalid_argument "text must be"
ok "malformed JSON, wrong types, unknown fields, invalid UTF-8 (JSON and proto): 400 naming the field"

# a body over the limit is refused before it is read: 413
head -c 70000 /dev/zero | tr '\0' 'a' >"$work/big"
post Messaging/Send "@$work/big" "$bob"
want_error 413 resource_exhausted "exceeds the limit of 65536 bytes"
# ... and a chunked one as soon as it passes the limit
status=$(curl -s -o "$work/body" -D "$work/headers" -w '%{http_code}' -X POST \
  -H 'Content-Type: application/json' -H 'Transfer-Encoding: chunked' \
  --data-binary "@$work/big" "$http_url/parley.v1.Messaging/Send")
want_error 413 resource_exhausted "exceeds the limit"
ok "413 for bodies over 64 KiB, by Content-Length and chunked"

post Auth/NoSuchMethod '{}'
want_error 404 unimplemented "no method at '/parley.v1.Auth/NoSuchMethod'"
status=$(curl -s -o "$work/body" -D "$work/headers" -w '%{http_code}' "$http_url/nothing/here")
want_error 404 not_found "nothing at|no method"
status=$(curl -s -o "$work/body" -D "$work/headers" -w '%{http_code}' \
  "$http_url/parley.v1.Auth/Login")
want_error 405 unimplemented "GET is not allowed on /parley.v1.Auth/Login: use POST"
grep -qi '^allow: POST' "$work/headers" || fail "405 without Allow: $(cat "$work/headers")"
post Auth/Login 'user_id=alice' "" application/x-www-form-urlencoded
want_error 415 invalid_argument "application/json or application/proto"
post Messaging/Subscribe '{"rooms":[]}' "$bob"
want_error 415 invalid_argument "application/connect\+json"
status=$(curl -s -o "$work/body" -D "$work/headers" -w '%{http_code}' -X POST \
  -H 'Content-Type: application/json' -H 'Content-Encoding: gzip' --data-raw '{}' \
  "$http_url/parley.v1.Rooms/ListRooms")
want_error 501 unimplemented "content encoding 'gzip' is not supported"
status=$(curl -s -o "$work/body" -D "$work/headers" -w '%{http_code}' -X POST \
  -H 'Content-Type: application/json' -H 'Connect-Timeout-Ms: soon' --data-raw '{}' \
  "$http_url/parley.v1.Rooms/ListRooms")
want_error 400 invalid_argument "Connect-Timeout-Ms"
ok "404 unknown method or path, 405 wrong verb with Allow, 415 content type, 501 encoding, bad timeout"

# --- rate limit: RESOURCE_EXHAUSTED as 429 with Retry-After ---------------------------------
for _ in 1 2 3 4 5; do
  post Auth/Login '{"userId":"alice","password":"wrong-password"}'
  want_error 401 unauthenticated "."
done
# From the sixth failure on, each one waits twice as long as the one before
# (1 s, 2 s, 4 s, ...): however slowly this machine checks a password, a try
# soon lands inside the wait and is refused.
for _ in $(seq 12); do
  post Auth/Login '{"userId":"alice","password":"wrong-password"}'
  [[ $status == 401 ]] || break
done
want_error 429 resource_exhausted "."
retry=$(sed -n 's/^[Rr]etry-[Aa]fter: *\([0-9]*\).*/\1/p' "$work/headers")
[[ $retry =~ ^[0-9]+$ ]] && ((retry >= 1 && retry <= 60)) ||
  fail "Retry-After missing or off: '$retry' in $(cat "$work/headers")"
ok "login rate limit: 429 resource_exhausted with Retry-After $retry"
