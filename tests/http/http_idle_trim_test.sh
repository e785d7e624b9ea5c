#!/usr/bin/env bash
# A quiet session gives back its worker's deeper stack pages, and goes on
# working afterwards (services/messaging/session.c, stack_trim): bob's
# session answers a Poll with events (its worker's stack goes deep), stays
# quiet, parks its next Poll, and the trim is counted on /metrics; then a
# Send reaches that very Poll. Three rounds, each one trimmed and answered.
# A trim that discarded a live frame would crash the worker here.
source "$(dirname "$0")/http_lib.sh"

start_parleyd

register_login alice
alice=$token
register_login bob
bob=$token
post Rooms/CreateRoom '{"roomId":"quiet","name":"Quiet"}' "$alice"
want_ok
post Rooms/JoinRoom '{"roomId":"quiet"}' "$bob"
want_ok
post Messaging/Open '{"rooms":[{"roomId":"quiet"}]}' "$bob"
want_ok
sid=$(jq -r .sessionId "$work/body")
[[ ${#sid} -eq 32 ]] || fail "no session id: $(body)"

trims() {
  curl -fsS "$http_url/metrics" |
    awk '$1 == "parley_messaging_stack_trims_total" { n = $2 } END { print n + 0 }'
}
trimmed_since() { (($(trims) > $1)); }

# poll WAIT_MS OUT: bob's Poll; the reply in OUT.
poll() {
  curl -fsS -o "$2" -X POST -H 'Content-Type: application/json' -H "Authorization: Bearer $bob" \
    --max-time 40 --data-raw "{\"sessionId\":\"$sid\",\"waitMs\":$1}" \
    "$http_url/parley.v1.Messaging/Poll"
}

# What the session holds from the join on: taken now, so that later Polls
# wait.
while poll 0 "$work/drain.json" && [[ $(jq '.events // [] | length' "$work/drain.json") -gt 0 ]]; do :; done

for round in 1 2 3; do
  # Events go out: the worker answers, its stack deep.
  post Messaging/Send "{\"roomId\":\"quiet\",\"text\":\"before $round\",\"clientMsgId\":\"b$round\"}" "$alice"
  want_ok
  poll 5000 "$work/got.json" || fail "round $round: Poll failed"
  jq -e --arg t "before $round" '[.events[]?.message.text] | index($t) != null' "$work/got.json" >/dev/null ||
    fail "round $round: the Send did not come: $(cat "$work/got.json")"

  # Quiet for longer than SESSION_TRIM_QUIET_MS, then a Poll that waits.
  sleep 0.5
  before=$(trims)
  poll 20000 "$work/parked.json" &
  parked=$!
  wait_for "round $round: a trim counted" 10 trimmed_since "$before"

  # The trimmed worker answers that Poll.
  post Messaging/Send "{\"roomId\":\"quiet\",\"text\":\"after $round\",\"clientMsgId\":\"a$round\"}" "$alice"
  want_ok
  wait "$parked" || fail "round $round: the parked Poll failed"
  jq -e --arg t "after $round" '[.events[]?.message.text] | index($t) != null' "$work/parked.json" >/dev/null ||
    fail "round $round: the parked Poll did not bring the Send: $(cat "$work/parked.json")"
  ok "round $round: trimmed while quiet ($before -> $(trims)), then answered"
done
