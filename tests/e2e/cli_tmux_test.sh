#!/usr/bin/env bash
# Two people chat with interactive parley clients in tmux, driven with
# send-keys and read with capture-pane: register, log in, create and join a
# room, exchange messages, see each other's join and presence lines, leave,
# rejoin and see the history (once, no gap, no repeat); errors are one line;
# a hostile message shows inert; /quit ends the program.
source "$(dirname "$0")/lib.sh"
command -v tmux >/dev/null || { echo "missing tmux (bash .ci/deps installs it)"; exit 1; }
start_parleyd

tmx() { tmux -S "$work/tmux.sock" -f /dev/null "$@"; }
kill_tmux() { tmx kill-server 2>/dev/null || true; }
cleanup_hooks+=(kill_tmux)

# person NAME: a terminal running `parley` as NAME (their own config home).
person() {
  mkdir -p "$work/home-$1"
  tmx new-session -d -s "$1" -x 110 -y 50 \
    "env XDG_CONFIG_HOME='$work/home-$1' PARLEY_AUTH='$PARLEY_AUTH' PARLEY_ROOMS='$PARLEY_ROOMS' \
     PARLEY_HISTORY='$PARLEY_HISTORY' PARLEY_MESSAGING='$PARLEY_MESSAGING' TZ=UTC \
     '$PARLEY' 2>'$work/$1.stderr'; echo '[parley exited]'; sleep 60"
  tmx set-option -t "$1" history-limit 5000 >/dev/null
}
screen() { tmx capture-pane -p -J -t "$1" -S -5000; }
# keys NAME TEXT: types TEXT and Enter.
keys() { tmx send-keys -t "$1" -l "$2"; tmx send-keys -t "$1" Enter; }
# sees NAME REGEX [SECONDS]: waits until NAME's screen has a line matching.
sees() {
  local deadline=$((SECONDS + ${3:-10}))
  until screen "$1" | grep -qE -- "$2"; do
    if ((SECONDS >= deadline)); then
      echo "--- $1's screen"; screen "$1" | grep -v '^$' | tail -n 40
      echo "--- $1's stderr"; cat "$work/$1.stderr" 2>/dev/null || true
      fail "$1 does not see /$2/"
    fi
    sleep 0.05
  done
}
# prompted NAME REGEX: waits until the last line of NAME's screen matches
# (a prompt that is waiting now, not one answered before).
prompted() {
  local deadline=$((SECONDS + 10))
  until screen "$1" | grep -v '^$' | tail -n 1 | grep -qE -- "$2"; do
    if ((SECONDS >= deadline)); then
      echo "--- $1's screen"; screen "$1" | grep -v '^$' | tail -n 20
      fail "$1 is not prompted with /$2/"
    fi
    sleep 0.05
  done
}
# count NAME REGEX: how many lines of NAME's screen match.
count() { screen "$1" | grep -cE -- "$2" || true; }
# sees_times NAME REGEX N: waits until N lines of NAME's screen match.
sees_times() {
  local deadline=$((SECONDS + 10))
  until (($(count "$1" "$2") >= $3)); do
    if ((SECONDS >= deadline)); then
      echo "--- $1's screen"; screen "$1" | grep -v '^$' | tail -n 40
      fail "$1 does not see /$2/ $3 times"
    fi
    sleep 0.05
  done
}
once() {
  local n
  n=$(count "$1" "$2")
  [[ $n == 1 ]] || { screen "$1" | grep -v '^$' | tail -n 40; fail "$1 sees /$2/ $n times, want once"; }
}

person alice
person bob
prompted alice "^parley> ?$"
prompted bob "^parley> ?$"

# Register and log in, typing passwords at prompts that do not echo.
for who in alice bob; do
  keys "$who" "/register $who"
  prompted "$who" "^password: ?$"
  keys "$who" "pw-$who-secret"
  prompted "$who" "^password again: ?$"
  keys "$who" "pw-$who-secret"
  # The display name and email asked on a terminal: Enter takes the
  # defaults (cli_chat_features_test gives both).
  prompted "$who" "^display name \(Enter: $who\): ?$"
  keys "$who" ""
  prompted "$who" "^email \(optional, Enter: none\): ?$"
  keys "$who" ""
  sees "$who" "^\* registered $who; now /login"
  keys "$who" "/login $who"
  prompted "$who" "^password: ?$"
  keys "$who" "pw-$who-secret"
  sees "$who" "^\* logged in as $who\."
  sees "$who" "^$who> "
  screen "$who" | grep -q "pw-$who-secret" && fail "$who's password was shown"
done
ok "register and log in, passwords not shown"

keys alice "/create lobby The Lobby"
sees alice "^\* created room lobby"
keys alice "/join lobby"
sees alice "^\* you are in lobby"
sees alice "^alice@lobby> "
keys bob "/rooms"
sees bob "^  lobby +1 member +The Lobby"
keys bob "/join lobby"
sees bob "^\* you are in lobby"
sees alice "^\* bob joined$"
sees alice "^\* bob is online$"
ok "create, join, and the other sees the join and presence"

keys alice "hello bob"
sees bob "^\[[0-9]{2}:[0-9]{2}\] alice: hello bob$"
sees alice "^\[[0-9]{2}:[0-9]{2}\] alice: hello bob$"
keys bob "hi alice, how are you?"
sees alice "^\[[0-9]{2}:[0-9]{2}\] bob: hi alice, how are you\?$"
keys alice "//slash is literal"
sees bob "alice: /slash is literal$"
once alice "alice: hello bob"   # the typed line is replaced by the room's copy
once bob "alice: hello bob"
ok "messages both ways, live"

keys bob "/who"
sees bob "^\* 2 members, 2 online$"
sees bob "^  alice -- admin, online$"
sees bob "^  bob -- online$"
keys alice "/rooms"
sees alice "^> lobby +2 members +The Lobby"
keys alice "/join no-such-room"
sees alice "^error: .*no-such-room"
[[ $(count alice "NOT_FOUND") == 0 ]] || fail "a status name shown to a person"
keys alice "/frobnicate"
sees alice "^error: unknown command /frobnicate"
keys alice "/history 2"
sees alice "^alice@lobby> /history 2$"
ok "who, rooms, errors as one line"

# A message full of escape sequences from a script shows inert.
as alice send lobby $'\e[2J\e[H\e[31mred alert' >/dev/null
sees bob 'alice: \?\[2J\?\[H\?\[31mred alert$'
sees bob "alice: hello bob"     # the screen was not cleared
ok "hostile text is inert"

keys bob "/leave"
sees bob "^\* you left lobby$"
sees bob "^bob> "
sees alice "^\* bob left$"
sees alice "^\* bob is offline$"
keys alice "are you still there?"
keys alice "guess not"
sees alice "alice: guess not$"
sleep 0.3
[[ $(count bob "are you still there") == 0 ]] || fail "bob sees messages after leaving"
ok "leave: the other sees it, nothing arrives after"

keys bob "/join lobby"
sees_times bob "^\* you are in lobby" 2
once bob "alice: are you still there\?$"
once bob "alice: guess not$"
[[ $(count bob "alice: hello bob$") == 2 ]] || fail "rejoining should show hello bob once more (live + history)"
keys alice "welcome back"
sees bob "alice: welcome back$"
once bob "alice: welcome back$"
# History then live, with nothing between lost or repeated: the history
# block is the last 20 events, in order, right before "you are in lobby".
screen bob | awk '/^bob> \/join lobby$/ {buf = ""; next} {buf = buf $0 "\n"} END {printf "%s", buf}' |
  sed -n '1,/^\* you are in lobby/p' >"$work/rejoin"
grep -q "alice: are you still there" "$work/rejoin" || fail "history on rejoin: $(cat "$work/rejoin")"
grep -q "^\* bob left$" "$work/rejoin" || fail "the leave is in the history"
ok "rejoin shows history, then live"

keys bob "/quit"
sees bob "^\[parley exited\]$"
sees alice "^\* bob is offline$"
[[ $(count alice "^\* bob is offline$") == 2 ]] || fail "alice should see bob go offline twice"
if [[ -n ${PARLEY_TEST_SHOW:-} ]]; then
  for who in alice bob; do echo "--- $who's screen"; screen "$who" | grep -v '^$'; done
fi
keys alice "/logout"
sees alice "^\* logged out$"
sees alice "^parley> "
keys alice "/quit"
sees alice "^\[parley exited\]$"
for who in alice bob; do
  if grep -qiE "sanitizer|runtime error|segv" "$work/$who.stderr"; then
    cat "$work/$who.stderr"
    fail "$who's parley reported errors"
  fi
done
ok "cli tmux test"
