#!/usr/bin/env bash
# Every scripted subcommand of parley against a real parleyd with all
# services: what it prints (text and --json), and its exit status and
# "error: STATUS: ..." line when the server says no. Also: a hostile
# message cannot put escape sequences on a terminal.
source "$(dirname "$0")/lib.sh"
start_parleyd

expect 0 nobody health
for s in auth rooms history messaging; do out_has "^$s +tcp://.* SERVING$"; done
ok "health of all four services"

signup alice
signup bob
signup carol

# whoami: the saved user, checked with the server.
expect 0 alice whoami
out_has "^alice$"
expect 0 alice whoami --json
out_has '^\{"user_id":"alice","expires_at_ms":[0-9]+,"rooms":0,"auth":"tcp://127.0.0.1:'
mkdir -p "$work/home-carol2/parley" && chmod 700 "$work/home-carol2/parley"
cp -p "$work/home-carol/parley/session" "$work/home-carol2/parley/session"
expect 0 carol2 logout
expect_err 1 UNAUTHENTICATED carol whoami
grep -q "has ended; run 'parley login USER'" "$work/err" || fail "whoami after the end: $(cat "$work/err")"
echo "pw-carol-secret" | as carol login carol --password-stdin >/dev/null
ok "whoami"

# rooms / create -------------------------------------------------------------
expect 0 alice rooms
expect 0 alice create lobby "The Lobby" --topic "say hi"
out_has "^created room lobby$"
expect_err 1 ALREADY_EXISTS bob create lobby
expect_err 1 INVALID_ARGUMENT alice create "Bad Room!"
expect_err 2 usage alice create r2 "Name" --name "Other"
expect 0 alice create quiet
expect 0 alice rooms
out_has "^\* lobby +1 member +The Lobby  - say hi$"
expect 0 alice rooms --json
python3 - "$work/out" <<'PY' || fail "rooms --json"
import json, sys
rooms = [json.loads(l) for l in open(sys.argv[1])]
lobby = [r for r in rooms if r["room_id"] == "lobby"][0]
assert lobby["name"] == "The Lobby" and lobby["topic"] == "say hi", lobby
assert lobby["created_by"] == "alice" and isinstance(lobby["member_count"], int), lobby
assert {r["room_id"] for r in rooms} >= {"lobby", "quiet"}, rooms
PY
ok "rooms and create"

# join / leave / who ---------------------------------------------------------
expect 0 alice join lobby
expect 0 alice join lobby          # joining twice is fine
expect 0 bob join lobby
out_has "^joined lobby$"
expect_err 1 NOT_FOUND bob join no-such-room
expect 0 alice who lobby
out_has "^alice$"
out_has "^bob$"
expect 0 alice who lobby --json
python3 -c 'import json,sys; w=json.load(open(sys.argv[1])); assert w["room_id"]=="lobby" and {"alice","bob"} <= set(w["members"]) and w["member_count"] >= 2, w' "$work/out" ||
  fail "who --json"
expect 0 bob rooms --mine
out_has "^\* lobby "
expect 0 bob rooms --json --mine
grep -q '"room_id":"quiet"' "$work/out" && fail "--mine lists a room bob is not in"
ok "join and who"

# send / history -------------------------------------------------------------
expect 0 alice send lobby hello bob
[[ ! -s $work/out ]] || fail "send printed something: $(cat "$work/out")"
expect 0 bob send lobby --json "hi alice"
python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); assert s["room_id"]=="lobby" and s["seq"]>0 and len(s["client_msg_id"])==32, s' "$work/out" ||
  fail "send --json"
printf 'from stdin\n' | expect 0 alice send lobby -
expect_err 1 PERMISSION_DENIED carol send lobby "let me in"
expect_err 1 PERMISSION_DENIED carol history lobby
expect_err 2 usage alice send lobby ""
head -c 5000 /dev/zero | tr '\0' x >"$work/long"
expect_err 2 usage alice send lobby - <"$work/long"

expect 0 bob history lobby
out_has "^\[[0-9]{2}:[0-9]{2}\] alice: hello bob$"
out_has "^\[[0-9]{2}:[0-9]{2}\] bob: hi alice$"
out_has "alice: from stdin$"
out_has "^\* bob joined$"
expect 0 bob history lobby --json
python3 - "$work/out" <<'PY' || fail "history --json"
import json, sys
evs = [json.loads(l) for l in open(sys.argv[1])]
seqs = [e["seq"] for e in evs]
assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
texts = [e.get("text") for e in evs if e["type"] == "message"]
assert texts[-3:] == ["hello bob", "hi alice", "from stdin"], texts
assert any(e["type"] == "joined" and e["sender"] == "bob" for e in evs), evs
PY
last=$(python3 -c 'import json,sys; print([json.loads(l) for l in open(sys.argv[1])][-1]["seq"])' "$work/out")
expect 0 bob history lobby -n 2 --json
[[ $(wc -l <"$work/out") == 2 ]] || fail "-n 2 gave $(wc -l <"$work/out") lines"
grep -q '"text":"from stdin"' "$work/out" || fail "-n 2 lacks the latest"
expect 0 bob history lobby --before "$last" -n 1 --json
grep -q '"text":"hi alice"' "$work/out" || fail "--before: $(cat "$work/out")"
expect 0 bob history lobby --after $((last - 1)) --json
grep -q '"text":"from stdin"' "$work/out" || fail "--after: $(cat "$work/out")"
[[ $(wc -l <"$work/out") == 1 ]] || fail "--after gave more than the last"
expect_err 2 usage bob history lobby --before 3 --after 1
expect_err 2 usage bob history lobby -n 0
expect_err 2 usage alice send lobby "   "
grep -q "only spaces" "$work/err" || fail "spaces-only send: $(cat "$work/err")"
expect_err 2 usage alice send lobby $'\u00a0\u3000'
grep -q "only spaces" "$work/err" || fail "unicode-spaces-only send: $(cat "$work/err")"
expect_err 2 usage bob history lobby --after 0
expect_err 1 NOT_FOUND bob history no-such-room
ok "send and history"

# send --each-line: a message a line, in order, up to 100 a call -------------
python3 -c 'import sys; sys.stdout.write("".join("line %d of the paste\n" % i for i in range(1, 251)) + "\n   \r\nlast line without a newline")' >"$work/lines"
expect 0 alice send lobby --each-line --json - <"$work/lines"
python3 - "$work/out" <<'PY' || fail "send --each-line --json"
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
assert len(r) == 251, len(r)
seqs = [x["seq"] for x in r]
assert seqs == list(range(seqs[0], seqs[0] + 251)), seqs
assert len({x["client_msg_id"] for x in r}) == 251 and all(x["room_id"] == "lobby" for x in r)
PY
expect 0 bob history lobby -n 3 --json
python3 - "$work/out" <<'PY' || fail "history after send --each-line"
import json, sys
texts = [json.loads(l).get("text") for l in open(sys.argv[1])]
assert texts == ["line 249 of the paste", "line 250 of the paste", "last line without a newline"], texts
PY
printf 'good one\nbad \xff line\nnever sent\n' >"$work/badlines"
expect_err 1 INVALID_ARGUMENT alice send lobby --each-line - <"$work/badlines"
grep -q "line 2: field 'messages\[1\].text' is not valid UTF-8" "$work/err" || fail "each-line refusal: $(cat "$work/err")"
expect 0 bob history lobby -n 1 --json
grep -q '"text":"last line without a newline"' "$work/out" || fail "a refused batch wrote: $(cat "$work/out")"
expect_err 2 usage alice send lobby --each-line hello
expect_err 2 usage alice send lobby --each-line - <"$work/long"
# An endless line is refused once it cannot fit, not read whole.
expect_err 2 usage alice send lobby --each-line - < <(yes x | tr -d '\n')
grep -q "line 1 is longer than 4096 bytes" "$work/err" || fail "endless line: $(cat "$work/err")"
ok "send --each-line"

# A message full of escape sequences is shown inert.
expect 0 bob send lobby $'\e[2J\e]0;pwned\a\e[31mred\u202e'
expect 0 alice history lobby -n 1
grep -q $'\e' "$work/out" && fail "an escape sequence reached the terminal"
grep -q $'\a' "$work/out" && fail "a bell reached the terminal"
out_has 'bob: \?\[2J\?\]0;pwned\?\?\[31mred$'
expect 0 alice history lobby -n 1 --json
grep -q '\\u001b\[2J' "$work/out" || fail "JSON does not escape ESC: $(cat "$work/out")"
python3 -c 'import json,sys; e=json.load(open(sys.argv[1])); assert e["text"]=="\x1b[2J\x1b]0;pwned\x07\x1b[31mred\u202e", e' "$work/out" ||
  fail "JSON does not round-trip the text"
ok "hostile text is inert"

# tail -----------------------------------------------------------------------
spawn bob tail lobby -n 1 --json >"$work/tail.out" 2>"$work/tail.err"
tail_pid=$spawned
wait_for "tail's first line" 10 grep -q '"seq"' "$work/tail.out"
expect 0 alice send lobby "live one"
wait_for "tail to show live one" 10 grep -q '"text":"live one"' "$work/tail.out"
expect 0 alice send lobby "live two"
wait_for "tail to show live two" 10 grep -q '"text":"live two"' "$work/tail.out"
kill -TERM "$tail_pid"
wait "$tail_pid" || fail "tail ended by SIGTERM exits $?"
python3 - "$work/tail.out" <<'PY' || fail "tail --json: $(cat "$work/tail.out")"
import json, sys
evs = [json.loads(l) for l in open(sys.argv[1])]
texts = [e["text"] for e in evs if e["type"] == "message"]
assert texts[-2:] == ["live one", "live two"] and texts.count("live two") == 1, texts
seqs = [e["seq"] for e in evs if e["seq"]]
assert seqs == sorted(seqs) and len(seqs) == len(set(seqs)), seqs
PY
# Several rooms at once: text lines say which room.
expect 0 bob join quiet
spawn bob tail lobby quiet -n 1 >"$work/tail.out" 2>"$work/tail.err"
tail_pid=$spawned
lines2() { [[ $(wc -l <"$work/tail.out") -ge 2 ]]; }
wait_for "tail's first lines" 10 lines2
expect 0 alice send quiet "in quiet"
expect 0 alice send lobby "in lobby"
wait_for "tail of two rooms" 10 grep -q '^#lobby .* alice: in lobby$' "$work/tail.out"
wait_for "tail of two rooms" 10 grep -q '^#quiet .* alice: in quiet$' "$work/tail.out"
kill -TERM "$tail_pid"
wait "$tail_pid" || fail "tail exit $?"
# --since replays everything after a seq, then follows.
spawn bob tail lobby --since "$last" >"$work/tail.out" 2>"$work/tail.err"
tail_pid=$spawned
wait_for "tail --since to replay" 10 grep -q 'in lobby' "$work/tail.out"
grep -q "alice: from stdin" "$work/tail.out" && fail "--since replayed seq $last itself"
kill -TERM "$tail_pid"
wait "$tail_pid" || fail "tail exit $?"
grep -qE "^\[[0-9]{2}:[0-9]{2}\] alice: in lobby$" "$work/tail.out" || fail "tail text: $(cat "$work/tail.out")"
expect_err 2 usage bob tail lobby -n 3 --since 2
expect_err 1 NOT_FOUND bob tail no-such-room
expect_err 1 PERMISSION_DENIED carol tail lobby
ok "tail"

# leave ------------------------------------------------------------------------
expect 0 bob leave lobby
out_has "^left lobby$"
expect_err 1 PERMISSION_DENIED bob send lobby "still here?"
expect_err 1 PERMISSION_DENIED bob history lobby
expect 0 bob leave lobby          # leaving a room one is not in succeeds
expect_err 1 NOT_FOUND bob leave no-such-room
expect 0 alice history lobby -n 1
out_has "^\* bob left$"
ok "leave"

# logout -----------------------------------------------------------------------
expect 0 bob logout
expect_err 1 UNAUTHENTICATED bob rooms
expect 0 alice rooms
ok "cli scripted test"
