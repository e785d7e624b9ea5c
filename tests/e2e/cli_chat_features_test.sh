#!/usr/bin/env bash
# The chat features of the interactive client (issue 11, "Features to
# add"), at 80x24 (alice) and 40x12 (bob), with a scripted carol sending
# while they type: display names on every line, /nick, typing shown on one
# status line that leaves the draft alone, /me, /topic, /who with roles and
# presence, /msg and /query for direct messages, unread counts in the
# prompt and /rooms, @mentions, /edit and /delete, moderation and its
# refusals in words, /passwd, and `parley delete-account`.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/tmux_lib.sh"
start_parleyd

signup carol
expect 0 carol create lobby
expect 0 carol join lobby
expect 0 carol create side
expect 0 carol join side

person alice 80 24
person bob 40 12
login_person alice
login_person bob
enter alice lobby
enter bob lobby

# Display names: bob names himself; every line of his shows it with his id.
keys bob "/nick Bobby B"
sees bob "^\* your display name is now Bobby B$"
keys bob "hello from bob"
sees alice "^\[[0-9:]+\] Bobby B \(bob\): hello from bob$"
sees bob "^\[[0-9:]+\] Bobby B \(bob\): hello from bob$"
ok "display names"

# Typing: alice's draft makes one status line on bob's screen; carol's
# lines arrive meanwhile; nothing disturbs either draft.
type_text bob "bob's draft"
sees_now alice "^Bobby B \(bob\) is typing\.\.\.$"
type_text alice "alice is writ"
sees_now bob "^alice is typing\.\.\.$"
for i in 1 2 3; do as carol send lobby "while typing $i"; done
for who in alice bob; do
  sees "$who" "carol: while typing 3$"
  in_order "$who" "carol: while typing 1$" "carol: while typing 2$" "carol: while typing 3$"
done
prompted alice "^alice@lobby> alice is writ$"
prompted bob "draft$"
type_text alice "ing"
press alice Enter
sees bob "^\[[0-9:]+\] alice: alice is writing$"
# The typing line goes once her message is there.
deadline=$((SECONDS + 10))
while visible bob | grep -q "is typing"; do
  ((SECONDS < deadline)) || { show_screen bob; fail "the typing line stays after the message"; }
  sleep 0.05
done
press bob C-u
ok "typing line while lines arrive (80x24 and 40x12)"

# /me, /topic
keys alice "/me waves"
sees bob "^\[[0-9:]+\] \* alice waves$"
keys bob "/topic"
sees bob "^\* no topic yet; /topic TEXT sets one"
keys bob "/topic Bob's topic"
sees bob "^error: .*needs the moderator role"
keys alice "/topic"
sees alice "^\* no topic yet"
ok "/me"

# Roles: carol (admin) makes alice a moderator; /who shows roles and presence.
printf '/login carol\npw-carol-secret\n/join lobby\n/op alice\n' |
  as carol2 --server "127.0.0.1:$port_auth" >"$work/out" 2>&1 || fail "carol's /op: $(cat "$work/out")"
out_has "^\* alice is now a moderator of this room$"
keys alice "/topic Weekly planning"
sees bob "^\* alice set the topic: Weekly planning$"
keys bob "/topic"
sees bob "^\* topic: Weekly planning$"
keys alice "/who"
sees alice "^\* 3 members, 2 online$"
in_order alice "^\* in lobby:$" "^  alice -- moderator, online$" "^  Bobby B \(bob\) -- online$" \
  "^  carol -- admin, offline$" "^\* 3 members, 2 online$"
ok "/op, /topic, /who"

# @mentions: highlighted (bold reverse) and a bell; the text is intact.
# tmux flags a window that rang (nothing rang on bob's before).
bell() { tmx display -p -t "$1" '#{window_bell_flag}'; }
[[ $(bell bob) == 0 ]] || fail "bob's terminal rang before any mention"
as carol send lobby "about @bobcat, not bob"
sees bob "carol: about @bobcat, not bob$"
as carol send lobby "look here @bob, please"
sees bob "carol: look here @bob, please$"
tmx capture-pane -p -e -t bob | grep -q $'\033\\[1;7m@bob' || { show_screen bob; fail "@bob not highlighted"; }
tmx capture-pane -p -e -t bob | grep -q $'\033\\[1;7m@bobcat' && fail "@bobcat highlighted for bob"
[[ $(bell bob) == 1 ]] || fail "no bell for the mention"
ok "@mention highlighted, with a bell"

# Bad input of each command: a clear message, in words.
keys bob "/kick"
sees bob "^error: usage: /kick USER \[REASON\]$"
keys bob "/msg alice"
sees bob "^error: usage: /msg USER TEXT \(nothing to send\)$"
keys bob "/query bob"
sees bob "^error: a direct conversation is with someone else$"
keys bob "/nick"
sees bob "^error: usage: /nick NAME"
keys bob "/edit"
sees bob "^error: usage: /edit \[#SEQ\] TEXT"
keys bob "/me"
sees bob "^error: usage: /me ACTION$"
keys bob "/invite"
sees bob "^error: usage: /invite USER$"
ok "usage errors"

# Direct messages: /msg from alice to bob shows on bob's screen while he is
# in lobby; /query enters the conversation; the prompt says with whom.
keys alice "/msg bob psst, are you there?"
sees alice "^-> Bobby B \(bob\): psst, are you there\?$"
sees bob "^\* Bobby B|^\* alice \(direct\): psst, are you there\?"
sees bob "/query alice to answer$"
keys bob "/query alice"
prompted bob "^bob to alice> ?$"
sees bob "^\[[0-9:]+\] alice: psst, are you there\?$"
keys bob "yes, here"
keys alice "/query bob"
sees alice "^\[[0-9:]+\] Bobby B \(bob\): yes, here$"
keys alice "/msg nobody-here hi"
sees alice "^error: .*nobody-here"
keys alice "/msg Bad! hi"
sees alice "^error: no user 'Bad!': a user id is 3 to 32"
ok "/msg and /query"

# Unread: lines in lobby while bob is in the direct room count in his prompt
# and in /rooms; entering lobby reads them (MarkRead), and the count goes.
for i in 1 2; do as carol send lobby "unread $i"; done
prompted bob "^bob to alice \[2\]> ?$"
keys bob "/rooms"
sees bob "^\* lobby .*\(2 unread\)$"
sees bob "^> direct with alice$"
enter bob lobby
sees bob "carol: unread 2$"
keys bob "/rooms"
sees bob "^> lobby"
never bob "^> lobby.*unread"
enter alice lobby
ok "unread counts, read when shown"

# /edit and /delete: one's own last message, or by number.
keys bob "a typo hree"
sees alice "Bobby B \(bob\): a typo hree$"
keys bob "/edit a typo here"
sees alice "^\* Bobby B \(bob\) edited a message: a typo here$"
keys bob "/delete"
sees alice "^\* Bobby B \(bob\) deleted a message$"
keys alice "/history 3"
sees alice "^#[0-9]+ \[[0-9:]+\] Bobby B \(bob\): \(deleted\)$"
keys bob "/edit #99999 nope"
sees bob "^error: "
keys bob "/delete x"
sees bob "^error: usage: /delete \[SEQ\]"
ok "/edit and /delete"

# Moderation: a member cannot; a moderator can, with a reason; words only.
keys bob "/kick alice"
sees bob "^error: .*kick.*needs the moderator role"
keys alice "/kick nobody-at-all"
sees alice "^error: .*nobody-at-all"
keys alice "/kick bob too loud"
sees alice "^\* Bobby B \(bob\) was removed by alice: too loud$"
sees bob "^\* you were removed from lobby by alice: too loud; it comes back here if"
keys alice "/ban bob"
sees alice "^\* Bobby B \(bob\) was banned by alice$"
keys bob "/join lobby"
sees bob "^error: .*banned"
keys alice "/unban bob"
sees alice "was unbanned by alice$"
keys alice "/invite bob"
sees alice "was invited by alice$"
enter bob lobby
keys alice "/op bob emperor"
sees alice "^error: usage: /op USER \[member\|moderator\|admin\]$"
for who in alice bob; do never "$who" "PERMISSION_DENIED|NOT_FOUND|INVALID_ARGUMENT|FAILED_PRECONDITION|user_id|room_id"; done
ok "moderation and its refusals in words"

# /passwd: the old one must be right; the new one works for login.
keys bob "/passwd"
prompted bob "^current password: ?$"
keys bob "wrong-password"
prompted bob "^new password: ?$"
keys bob "pw-bob-newer"
prompted bob "^new password again: ?$"
keys bob "pw-bob-newer"
sees bob "^error: "
keys bob "/passwd"
prompted bob "^current password: ?$"
keys bob "pw-bob-secret"
prompted bob "^new password: ?$"
keys bob "pw-bob-newer"
prompted bob "^new password again: ?$"
keys bob "pw-bob-newer"
sees bob "^\* password changed; your other sessions have ended$"
echo "pw-bob-newer" | expect 0 bob2 login bob --password-stdin
never bob "pw-bob"
ok "/passwd"

# delete-account: the password, then a confirmation.
signup dora
echo "pw-dora-wrong" | expect_err 1 PERMISSION_DENIED dora delete-account --password-stdin --yes
grep -q "password is wrong" "$work/err" || fail "wrong password: $(cat "$work/err")"
echo "pw-dora-secret" | expect_err 2 usage dora delete-account --password-stdin
grep -q "confirm with --yes" "$work/err" || fail "no --yes: $(cat "$work/err")"
printf 'pw-dora-secret\n' | expect 0 dora delete-account --password-stdin --yes
out_has "deleted"
echo "pw-dora-secret" | expect_err 1 UNAUTHENTICATED dora login dora --password-stdin
ok "delete-account"

# /register on a terminal asks for a display name and an email.
person erin 40 12
prompted erin "^parley> ?$"
keys erin "/register erin"
prompted erin "^password: ?$"
keys erin "pw-erin-secret"
prompted erin "^password again: ?$"
keys erin "pw-erin-secret"
prompted erin "^display name \(Enter: erin\): ?$"
keys erin "Erin E"
prompted erin "^email \(optional, Enter: none\): ?$"
keys erin "erin@example.org"
sees erin "^\* registered erin as Erin E; now /login$"
keys erin "/login erin"
prompted erin "^password: ?$"
keys erin "pw-erin-secret"
enter erin lobby
keys erin "hi all"
sees alice "^\[[0-9:]+\] Erin E \(erin\): hi all$"
ok "/register asks for a display name and an email"

check_no_sanitizer_reports
ok "cli chat features test"
