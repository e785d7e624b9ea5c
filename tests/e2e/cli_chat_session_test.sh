#!/usr/bin/env bash
# Changes made elsewhere reach the interactive chat and `parley tail`
# (issue 11, defects 2 and 4):
#  - bob leaves the room from another shell: his chat says so at once, his
#    next line is refused without being sent, and tail says so on stderr;
#    he joins again from another shell: both pick the room up again and
#    show what is said from then on, his own lines included;
#  - alice kicks bob with a reason: his chat and his tail say at once who
#    removed him and why (only his KICKED event carries the reason), and
#    both pick the room up again when he joins from another shell;
#  - bob's session ends (logged out elsewhere): his chat says the session
#    ended and offers to log in again in place; after the password he is
#    back in his room; a script gets a hint to run `parley login`.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/tmux_lib.sh"
start_parleyd

signup alice
expect 0 alice create lobby
expect 0 alice join lobby

person bob 80 24
login_person bob
enter bob lobby
# bob's other shell: the same config home, so the same session.
other() { as bob --server "127.0.0.1:$port_auth" "$@"; }
spawn bob tail lobby -n 1 >"$work/tail.out" 2>"$work/tail.err"
tail_pid=$spawned
show_on_fail "$work/tail.out" "$work/tail.err"
# Its session is open once it has shown the room's last event (-n 1).
wait_for "tail to start" 10 test -s "$work/tail.out"
as alice send lobby "hello all"
sees bob "alice: hello all$"
wait_for "tail" 10 grep -q "hello all" "$work/tail.out"

# Leaving from elsewhere.
other leave lobby >/dev/null
sees bob "^\* you left lobby elsewhere; it comes back here if you join it again$" 10
prompted bob "^bob@lobby \(not a member\)> ?$"
wait_for "tail to say it" 10 grep -q "^parley: you left lobby elsewhere; waiting" "$work/tail.err"
keys bob "are you there?"
sees bob "^error: you are no longer a member of this room; /join it to return$"
as alice send lobby "bob has gone"
ok "leaving elsewhere is told at once; nothing is sent"

# Joining again from elsewhere.
other join lobby >/dev/null
sees bob "^\* you are a member of lobby again$" 10
prompted bob "^bob@lobby> ?$"
wait_for "tail to resume" 10 grep -q "a member of lobby again" "$work/tail.err"
as alice send lobby "welcome back"
sees bob "alice: welcome back$"
keys bob "glad to be back"
sees bob "^\[[0-9:]+\] bob: glad to be back$"
wait_for "tail to show both" 10 grep -q "bob: glad to be back" "$work/tail.out"
grep -q "alice: welcome back" "$work/tail.out" || fail "tail missed a line: $(cat "$work/tail.out")"
in_order bob "alice: hello all$" "you left lobby elsewhere" "you are a member of lobby again" \
  "alice: welcome back$" "bob: glad to be back$"
[[ $(grep -c "welcome back" "$work/tail.out") == 1 ]] || fail "tail repeated a line"
ok "joining again elsewhere: the room is picked up again"

# Kicked with a reason: who and why, at once, in the chat and in tail.
person alice 80 24
sees alice "^\* logged in as alice \(saved session\)"
keys alice "/join lobby"
sees alice "^\* you are in lobby;"
keys alice "/kick bob spamming"
sees alice "was removed by alice: spamming$"
sees bob "^\* you were removed from lobby by alice: spamming; it comes back here if you join it again$" 10
prompted bob "^bob@lobby \(not a member\)> ?$"
wait_for "tail to say who and why" 10 \
  grep -q "^parley: you were removed from lobby by alice: spamming; waiting until" "$work/tail.err"
other join lobby >/dev/null
# A function: wait_for runs it anew each time (a "$(grep -c ...)" argument
# would be counted once, before the wait, and never change).
resumed_twice() { [[ $(grep -c "you are a member of lobby again; resuming" "$work/tail.err") == 2 ]]; }
wait_for "tail to resume after the kick" 10 resumed_twice
prompted bob "^bob@lobby> ?$"
as alice send lobby "welcome back again"
sees bob "alice: welcome back again$"
wait_for "tail to show it" 10 grep -q "alice: welcome back again" "$work/tail.out"
[[ $(count bob "^\* you are a member of lobby again$") == 2 ]] || fail "bob was not told he is back"
ok "a kick with a reason is said at once; joining again picks the room up"

# The session ends elsewhere (a copy of it logged out).
mkdir -p "$work/home-bob2/parley" && chmod 700 "$work/home-bob2/parley"
cp -p "$work/home-bob/parley/session" "$work/home-bob2/parley/session"
cp -rp "$work/home-bob2" "$work/home-bob3"
kill -TERM "$tail_pid"
wait "$tail_pid" || fail "tail exited $?"
expect 0 bob2 logout
sees bob "^\* your session as bob has ended" 10
prompted bob "^password to log in again \(Enter: not now\): ?$"
keys bob "pw-bob-secret"
sees bob "^\* logged in again as bob$"
sees bob "^\* you are in lobby; "
prompted bob "^bob@lobby> ?$"
as alice send lobby "still here?"
sees bob "alice: still here\?$"
keys bob "yes"
sees bob "^\[[0-9:]+\] bob: yes$"
never bob "already logged in"
ok "an ended session is said, and logging in again in place puts bob back"

# A script with an ended session gets the hint.
expect_err 1 UNAUTHENTICATED bob3 rooms
grep -q "the saved session has ended; run 'parley login USER'" "$work/err" || fail "no login hint: $(cat "$work/err")"
expect_err 1 UNAUTHENTICATED bob3 tail lobby
grep -q "run 'parley login USER'" "$work/err" || fail "no login hint for tail: $(cat "$work/err")"
ok "scripts are told to log in again"

check_no_sanitizer_reports
ok "cli chat session test"
