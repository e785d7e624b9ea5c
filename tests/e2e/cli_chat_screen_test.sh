#!/usr/bin/env bash
# What people see in the interactive chat, at 80x24 and 40x12, with
# messages arriving while they type (issue 11, defects 1 and 8):
#  - after a wrapped line is sent, incoming lines each get their own line
#    (they used to overwrite each other), also after Ctrl-L;
#  - what is being typed stays on the prompt while lines arrive;
#  - a pasted block comes out in the order pasted (a /who after a message
#    prints after that message);
#  - a spaces-only line is not sent; Ctrl-D ends without "^D";
#  - /register refuses a bad id before asking for passwords;
#  - errors are words, not status names; a piped session that met an
#    error exits 1.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/tmux_lib.sh"
start_parleyd

signup alice
expect 0 alice create lobby
expect 0 alice join lobby

person carol 80 24
person dave 40 12
login_person carol
login_person dave
enter carol lobby
enter dave lobby

# 1. An 86-character line at 80 columns (54 at 40) wraps; then three lines arrive.
long=$(printf 'wrapped-%.0s' {1..10} | cut -c1-86)
keys carol "$long"
sees carol "^\[[0-9:]+\] carol: $long"
short=$(printf 'w%.0s' {1..54})
keys dave "$short"
sees dave "^\[[0-9:]+\] dave: $short"
for w in three four five; do as alice send lobby "$w"; done
for who in carol dave; do
  sees "$who" "alice: five$"
  in_order "$who" "$who: " "alice: three$" "alice: four$" "alice: five$"
done
ok "lines after a wrapped line each keep their own line (80x24 and 40x12)"

# Typing while lines arrive: the draft stays on the prompt, no line lost.
type_text carol "half a thou"
type_text dave "draft"
for i in 1 2 3 4 5 6; do as alice send lobby "busy $i"; done
for who in carol dave; do
  sees "$who" "alice: busy 6$"
  in_order "$who" "alice: busy 1$" "alice: busy 2$" "alice: busy 3$" "alice: busy 4$" \
    "alice: busy 5$" "alice: busy 6$"
done
prompted carol "^carol@lobby> half a thou$"
prompted dave "draft$"
type_text carol "ght"
press carol Enter
sees carol "^\[[0-9:]+\] carol: half a thought$"
press dave C-u
ok "typing while lines arrive"

# Ctrl-L clears the screen; what arrives afterwards still shows, each line.
press carol C-l
for w in six seven eight; do as alice send lobby "$w"; done
sees carol "alice: eight$"
in_order carol "alice: six$" "alice: seven$" "alice: eight$"
ok "Ctrl-L"

# 8. A pasted block: a message, a command, a message, in that order.
tmx send-keys -t carol -l $'pasted first\n/who\npasted second\n'
sees carol "^\[[0-9:]+\] carol: pasted second$"
in_order carol "^\[[0-9:]+\] carol: pasted first$" "^\* in lobby:$" "^\* 3 members, 2 online$" "^\[[0-9:]+\] carol: pasted second$"
ok "a pasted /who prints in its place"

# Spaces only: nothing is sent.
keys carol "     "
keys carol $'\u00a0 \u3000'
keys carol "after the spaces"
sees carol "^\[[0-9:]+\] carol: after the spaces$"
expect 0 alice history lobby -n 2 --json
python3 - "$work/out" <<'PY' || fail "a blank message was sent: $(cat "$work/out")"
import json, sys
texts = [json.loads(l).get("text") for l in open(sys.argv[1])]
assert texts == ["pasted second", "after the spaces"], texts
PY
ok "spaces-only line not sent"

# Errors in words.
keys carol "/join no-such-room"
sees carol "^error: .*no-such-room"
keys carol "/history 0"
sees carol "^error: usage: /history \[N\]: N is a number from 1 to 500$"
never carol "NOT_FOUND|INVALID_ARGUMENT|user_id|room_id"
ok "errors in words"

# /register with a bad id: refused before any password prompt.
person erin 80 24
prompted erin "^parley> ?$"
keys erin "/register Bad!"
sees erin "^error: a user id is 3 to 32 characters"
prompted erin "^parley> ?$"
never erin "password"
ok "/register checks the id first"

# Ctrl-D on an empty line ends parley, with no ^D on the screen.
press erin C-d
sees erin "^\[parley exited\]$"
never erin '\^D'
ok "Ctrl-D"

# A piped session exits 1 after an error, 0 without.
printf '/login alice\npw-alice-secret\n/join lobby\npiped hello\n' |
  as alice2 --server "127.0.0.1:$port_auth" >"$work/out" 2>&1 || fail "a clean piped session failed: $(cat "$work/out")"
out_has "alice: piped hello$"
sees carol "alice: piped hello$"
set +e
printf '/login alice\npw-alice-secret\n/join no-such-room\n' |
  as alice3 --server "127.0.0.1:$port_auth" >"$work/out" 2>&1
rc=$?
set -e
[[ $rc == 1 ]] || fail "piped session with an error exited $rc: $(cat "$work/out")"
ok "piped exit status"

check_no_sanitizer_reports
ok "cli chat screen test"
