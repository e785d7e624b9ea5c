#!/usr/bin/env bash
# The gateway role: a second parleyd (`--services gateway`, no data of its
# own) serves HTTP for the services of the first one, over nng by method
# name: unary calls and a Subscribe stream pass through it; when the
# services are gone, calls through it say so (unavailable).
source "$(dirname "$0")/http_lib.sh"

start_parleyd --http-listen none
gw_port=$(free_port)
http_url=http://127.0.0.1:$gw_port
"$PARLEYD" --services gateway --data-dir "$work/gateway-data" --http-listen "$http_url" \
  --auth "$PARLEY_AUTH" --rooms "$PARLEY_ROOMS" --history "$PARLEY_HISTORY" \
  --messaging "$PARLEY_MESSAGING" 2>>"$work/gateway.log" &
gw_pid=$!
bg_pids+=("$gw_pid")
wait_http
[[ ! -e $work/gateway-data ]] || fail "the gateway opened a data directory"
grep -q "gateway serving on $http_url" "$work/gateway.log" || fail "gateway log: $(cat "$work/gateway.log")"

register_login dave
dave=$token
register_login erin
erin=$token
post Rooms/CreateRoom '{"roomId":"hall","name":"Hall"}' "$dave"
want_ok
post Rooms/JoinRoom '{"roomId":"hall"}' "$erin"
want_ok

printf '{"rooms":[{"roomId":"hall","sinceSeq":"0"}]}' | frame >"$work/sub.req"
curl -s --no-buffer -X POST -H 'Content-Type: application/connect+json' \
  -H "Authorization: Bearer $erin" --data-binary "@$work/sub.req" \
  "$http_url/parley.v1.Messaging/Subscribe" >"$work/sub.out" &
sub_pid=$!
bg_pids+=("$sub_pid")
wait_for "the heads through the gateway" 15 stream_has "$work/sub.out" heads
for i in 1 2 3; do
  post Messaging/Send "{\"roomId\":\"hall\",\"text\":\"via gateway $i\",\"clientMsgId\":\"g$i\"}" "$dave"
  want_ok
done
post History/GetHistory '{"roomId":"hall"}' "$erin"
want_ok
jq -e '[.events[] | select(.message) | .message.text] == ["via gateway 1","via gateway 2","via gateway 3"]' \
  "$work/body" >/dev/null || fail "history through the gateway: $(body)"
wait_for "the stream through the gateway" 15 grep -q "via gateway 3" "$work/sub.out"
got=$(unframe <"$work/sub.out" | grep -o 'via gateway [0-9]' | paste -sd,)
[[ $got == "via gateway 1,via gateway 2,via gateway 3" ]] || fail "stream through the gateway: $got"
kill "$sub_pid"
ok "unary calls and a Subscribe stream through the gateway"

post Auth/Login '{"userId":"dave","password":"wrong-password"}'
want_error 401 unauthenticated "."
ok "service errors pass through the gateway unchanged"

kill9_parleyd
post Rooms/ListRooms '{}' "$dave"
want_error 503 unavailable "cannot reach"
ok "services down: 503 unavailable through the gateway"

kill -TERM "$gw_pid"
wait "$gw_pid" || fail "the gateway did not exit cleanly on SIGTERM"
ok "the gateway stops cleanly"
