#!/usr/bin/env bash
# Messaging/Subscribe as a Connect server stream, read with curl --no-buffer
# while others send: the heads first, then every message once and in
# order, presence of the others, the session closed as soon as a reader
# goes away (its peers see it go offline), resuming from a cursor, the
# application/connect+proto form, and errors as end-of-stream messages.
source "$(dirname "$0")/http_lib.sh"

start_parleyd
wait_http
register_login alice
alice=$token
register_login bob
bob=$token
post Rooms/CreateRoom '{"roomId":"lobby","name":"Lobby"}' "$alice"
want_ok
post Rooms/JoinRoom '{"roomId":"lobby"}' "$bob"
want_ok
post Messaging/Send '{"roomId":"lobby","text":"before anyone listens","clientMsgId":"a0"}' "$alice"
want_ok
head=$(jq -r .seq "$work/body")

# subscribe NAME TOKEN REQUEST-JSON [CODEC]: a stream read by curl in the
# background into $work/NAME.out; its pid in $sub_pid.
subscribe() {
  local name=$1 tok=$2 req=$3 codec=${4:-json}
  if [[ $codec == json ]]; then
    printf '%s' "$req" | frame >"$work/$name.req"
  else
    printf '%s' "$req" | protoc -I "$PROTO_DIR" --encode=parley.v1.SubscribeRequest \
      parley/v1/messaging.proto | frame >"$work/$name.req"
  fi
  curl -s --no-buffer -X POST -H "Content-Type: application/connect+$codec" \
    -H "Authorization: Bearer $tok" --data-binary "@$work/$name.req" \
    -D "$work/$name.headers" "$http_url/parley.v1.Messaging/Subscribe" >"$work/$name.out" &
  sub_pid=$!
  bg_pids+=("$sub_pid")
}
# messages NAME: the stream's messages so far, one per line (FLAGS JSON).
messages() { unframe <"$work/$1.out"; }
has() { messages "$1" | grep -q -- "$2"; }

# --- heads first, then everything in order, once --------------------------------------
subscribe bob "$bob" '{"rooms":[{"roomId":"lobby","sinceSeq":"0"}]}'
bob_pid=$sub_pid
wait_for "bob's first message" 15 has bob heads
first=$(messages bob | sed -n 1p)
[[ $first == "0 {\"heads\":[{\"roomId\":\"lobby\",\"sinceSeq\":\"$head\"}]}" ]] ||
  fail "first message is not the heads: $first"
grep -qi '^content-type: application/connect+json' "$work/bob.headers" ||
  fail "stream content type: $(cat "$work/bob.headers")"

subscribe alice "$alice" "{\"rooms\":[{\"roomId\":\"lobby\",\"sinceSeq\":\"$head\"}]}"
alice_pid=$sub_pid
wait_for "alice online in bob's stream" 15 has bob '"sender":"alice","presence":{"state":"ONLINE"}'

for i in $(seq 1 30); do
  who=alice tok=$alice
  ((i % 3 == 0)) && who=bob tok=$bob
  post Messaging/Send "{\"roomId\":\"lobby\",\"text\":\"m$i from $who\",\"clientMsgId\":\"c$i\"}" "$tok"
  want_ok
done
wait_for "the last message in bob's stream" 20 has bob '"text":"m30 from bob"'
wait_for "the last message in alice's stream" 20 has alice '"text":"m30 from bob"'

want=$(for i in $(seq 1 30); do w=alice; ((i % 3 == 0)) && w=bob; echo "m$i from $w"; done | paste -sd,)
for who in bob alice; do
  messages "$who" | awk '$1 == 0' | cut -d' ' -f2- |
    jq -c '.events[]? | select(.seq != null) | [(.seq|tonumber), (.message.text // .membership.kind)]' \
      >"$work/$who.events"
  # every persisted event once, in seq order, gap-free from since_seq on
  jq -s -e 'map(.[0]) as $s | ($s == ($s | sort | unique)) and
            ($s | . == [range(.[0]; .[0] + length)])' "$work/$who.events" >/dev/null ||
    fail "$who's events are not once and in order: $(cat "$work/$who.events")"
  got=$(jq -r '.[1]' "$work/$who.events" | grep '^m[0-9]' | paste -sd,)
  [[ $got == "$want" ]] || fail "$who's messages: $got (want $want)"
done
jq -e -s '.[0][0] == 1 and (map(select(.[1] | test("^m|^before"))) | .[0][1] == "before anyone listens")' \
  "$work/bob.events" >/dev/null || fail "bob (since 0) did not get it all: $(head -3 "$work/bob.events")"
jq -e -s --argjson head "$head" '.[0][0] == $head + 1 and .[0][1] == "m1 from alice"' \
  "$work/alice.events" >/dev/null ||
  fail "alice (since $head) did not start after her cursor: $(head -3 "$work/alice.events")"
ok "two streams: heads first, then 30 messages once and in order, from each cursor"

# --- a reader that goes away is closed at once: the other sees it offline ----------------
kill "$alice_pid"
wait "$alice_pid" 2>/dev/null || true
# Without the cancellation the session would close only when its Poll
# (15 s) returns; the stream notices the closed socket at once.
wait_for "alice offline in bob's stream" 10 has bob '"sender":"alice","presence":{"state":"OFFLINE"}'
ok "a reader gone: its session is closed at once (presence OFFLINE)"

# --- resume from a cursor ---------------------------------------------------------------
last=$(tail -1 "$work/bob.events" | jq -r '.[0]')
kill "$bob_pid"
wait "$bob_pid" 2>/dev/null || true
post Messaging/Send '{"roomId":"lobby","text":"while bob was away","clientMsgId":"away"}' "$alice"
subscribe bob2 "$bob" "{\"rooms\":[{\"roomId\":\"lobby\",\"sinceSeq\":\"$last\"}]}"
wait_for "the missed message" 15 has bob2 '"text":"while bob was away"'
n=$(messages bob2 | grep -c '"message"')
[[ $n == 1 ]] || fail "resumed from $last, got $n messages: $(messages bob2)"
kill "$sub_pid"
ok "resume from the last seq seen: only what was missed"

# --- application/connect+proto -----------------------------------------------------------
subscribe bobp "$bob" "rooms { room_id: \"lobby\" since_seq: $last }" proto
wait_for "a proto message" 15 test -s "$work/bobp.out"
post Messaging/Send '{"roomId":"lobby","text":"in binary","clientMsgId":"bin"}' "$alice"
wait_for "the proto event" 15 bash -c "python3 -c 'import sys; sys.exit(b\"in binary\" not in open(\"$work/bobp.out\",\"rb\").read())'"
kill "$sub_pid"
wait "$sub_pid" 2>/dev/null || true
grep -qi '^content-type: application/connect+proto' "$work/bobp.headers" || fail "proto stream type"
unframe --hex <"$work/bobp.out" | sed -n 1p | cut -d' ' -f2 | xxd -r -p |
  protoc -I "$PROTO_DIR" --decode=parley.v1.SubscribeResponse parley/v1/messaging.proto \
    >"$work/heads.txt"
grep -q 'room_id: "lobby"' "$work/heads.txt" || fail "proto heads: $(cat "$work/heads.txt")"
found=""
while read -r flags hex; do
  [[ $flags == 0 ]] || continue
  xxd -r -p <<<"$hex" | protoc -I "$PROTO_DIR" --decode=parley.v1.SubscribeResponse \
    parley/v1/messaging.proto | grep -q 'text: "in binary"' && found=1
done < <(unframe --hex <"$work/bobp.out")
[[ -n $found ]] || fail "no proto event with the message"
ok "application/connect+proto: heads and events decode with protoc"

# --- errors end the stream with Connect's end-of-stream message ----------------------------
printf '{"rooms":[{"roomId":"lobby"}]}' | frame >"$work/noauth.req"
curl -s -D "$work/headers" -o "$work/noauth.out" -X POST -H 'Content-Type: application/connect+json' \
  --data-binary "@$work/noauth.req" "$http_url/parley.v1.Messaging/Subscribe"
grep -q '^HTTP/1.1 200' "$work/headers" || fail "stream errors come with 200: $(cat "$work/headers")"
end=$(unframe <"$work/noauth.out" | tail -1)
[[ $end == 2\ * ]] || fail "no end-of-stream message: $end"
jq -e '.error.code == "unauthenticated"' <<<"${end#2 }" >/dev/null || fail "end message: $end"

post Rooms/LeaveRoom '{"roomId":"lobby"}' "$bob"
want_ok
subscribe left "$bob" '{"rooms":[{"roomId":"lobby"}]}'
wait "$sub_pid" || true
end=$(messages left | tail -1)
jq -e '.error.code == "permission_denied" and (.error.message | test("lobby"))' <<<"${end#2 }" \
  >/dev/null || fail "subscribing to a room left: $end"

printf 'garbage' >"$work/bad.req"
curl -s -o "$work/bad.out" -X POST -H 'Content-Type: application/connect+json' \
  --data-binary "@$work/bad.req" "$http_url/parley.v1.Messaging/Subscribe"
end=$(unframe <"$work/bad.out" | tail -1)
jq -e '.error.code == "invalid_argument" and (.error.message | test("envelope"))' \
  <<<"${end#2 }" >/dev/null || fail "a bad envelope: $end"
ok "errors as end-of-stream messages: unauthenticated, a room left, a bad envelope"

# --- shutdown: open streams end with unavailable, so clients come back later ------------------
post Rooms/CreateRoom '{"roomId":"den","name":"Den"}' "$bob"
want_ok
subscribe last "$bob" '{"rooms":[{"roomId":"den"}]}'
wait_for "the stream before shutdown" 15 has last heads
stop_parleyd
wait "$sub_pid" || true
end=$(messages last | tail -1)
jq -e '.error.code == "unavailable" and (.error.message | test("shutting down"))' \
  <<<"${end#2 }" >/dev/null || fail "a stream at shutdown ended with: $end"
ok "at shutdown an open stream ends with unavailable"
