# tmux_lib.sh — people at terminals, for the e2e chat tests: each person is
# a tmux session of a given size running the interactive `parley` (or a
# shell) with their own config home, driven with send-keys and read with
# capture-pane. Waiting is by deadline, never by fixed sleeps. Source after
# lib.sh.

command -v tmux >/dev/null || { echo "missing tmux (bash .ci/deps installs it)"; exit 1; }

tmx() { tmux -S "$work/tmux.sock" -f /dev/null "$@"; }
kill_tmux() { tmx kill-server 2>/dev/null || true; }
cleanup_hooks+=(kill_tmux)

# person NAME [COLS ROWS]: a terminal running `parley --server HOST:PORT`
# as NAME (no per-service variables: --server alone finds the services);
# parley's pid is left in $work/NAME.pid.
person() {
  local who=$1 cols=${2:-80} rows=${3:-24}
  mkdir -p "$work/home-$who"
  tmx new-session -d -s "$who" -x "$cols" -y "$rows" \
    "sh -c 'echo \$\$ >\"$work/$who.pid\"; exec env -u PARLEY_AUTH -u PARLEY_ROOMS -u PARLEY_HISTORY -u PARLEY_MESSAGING XDG_CONFIG_HOME=\"$work/home-$who\" TZ=UTC \
       \"$PARLEY\" --server 127.0.0.1:$port_auth ${PERSON_ARGS:-} 2>\"$work/$who.stderr\"'; \
     echo '[parley exited]'; sleep 600"
  tmx set-option -t "$who" history-limit 5000 >/dev/null
  wait_for "$who's parley to start" 10 test -s "$work/$who.pid"
}

# shell_person NAME [COLS ROWS]: a terminal with an interactive bash (job
# control: Ctrl-Z and fg work) where parley can be started by typing.
shell_person() {
  local who=$1 cols=${2:-80} rows=${3:-24}
  mkdir -p "$work/home-$who"
  tmx new-session -d -s "$who" -x "$cols" -y "$rows" \
    "env XDG_CONFIG_HOME='$work/home-$who' TZ=UTC PS1='sh\$ ' bash --norc --noprofile -i"
  tmx set-option -t "$who" history-limit 5000 >/dev/null
}

screen() { tmx capture-pane -p -J -t "$1" -S -5000; }
# visible NAME: only what is on the screen now.
visible() { tmx capture-pane -p -J -t "$1"; }
# keys NAME TEXT: types TEXT and Enter. type NAME TEXT: without Enter.
keys() { tmx send-keys -t "$1" -l "$2"; tmx send-keys -t "$1" Enter; }
type_text() { tmx send-keys -t "$1" -l "$2"; }
press() { tmx send-keys -t "$1" "$2"; }

show_screen() {
  echo "--- $1's screen"; screen "$1" | grep -v '^$' | tail -n "${2:-40}"
  echo "--- $1's stderr"; cat "$work/$1.stderr" 2>/dev/null || true
}
# sees NAME REGEX [SECONDS]: waits until NAME's screen has a matching line.
sees() {
  local deadline=$((SECONDS + ${3:-15}))
  until screen "$1" | grep -qE -- "$2"; do
    ((SECONDS < deadline)) || { show_screen "$1"; fail "$1 does not see /$2/"; }
    sleep 0.05
  done
}
# sees_now NAME REGEX [SECONDS]: the same on the visible screen only.
sees_now() {
  local deadline=$((SECONDS + ${3:-15}))
  until visible "$1" | grep -qE -- "$2"; do
    ((SECONDS < deadline)) || { show_screen "$1"; fail "$1's screen does not show /$2/"; }
    sleep 0.05
  done
}
# prompted NAME REGEX: waits until the last non-empty line matches.
prompted() {
  local deadline=$((SECONDS + ${3:-15}))
  until screen "$1" | grep -v '^$' | tail -n 1 | grep -qE -- "$2"; do
    ((SECONDS < deadline)) || { show_screen "$1" 20; fail "$1 is not prompted with /$2/"; }
    sleep 0.05
  done
}
count() { screen "$1" | grep -cE -- "$2" || true; }
once() {
  local n
  n=$(count "$1" "$2")
  [[ $n == 1 ]] || { show_screen "$1"; fail "$1 sees /$2/ $n times, want once"; }
}
never() {
  local n
  n=$(count "$1" "$2")
  [[ $n == 0 ]] || { show_screen "$1"; fail "$1 sees /$2/ ($n times), want never"; }
}
# in_order NAME REGEX...: every pattern on NAME's screen, in this order,
# each on its own line: no line missing, none overwritten.
in_order() {
  local who=$1
  shift
  screen "$who" >"$work/$who.capture"
  python3 - "$work/$who.capture" "$@" <<'PY' || { show_screen "$who"; fail "$who's screen is missing lines or has them out of order"; }
import re, sys
lines = open(sys.argv[1]).read().split("\n")
at = 0
for pat in sys.argv[2:]:
    rx = re.compile(pat)
    while at < len(lines) and not rx.search(lines[at]):
        at += 1
    if at == len(lines):
        print(f"no line /{pat}/ (after the ones before it)")
        sys.exit(1)
    at += 1
PY
}

# login_person NAME: registers NAME with the scripted client, then logs in
# at NAME's prompt.
login_person() {
  local who=$1
  echo "pw-$who-secret" | as "$who" --server "127.0.0.1:$port_auth" register "$who" --password-stdin >/dev/null 2>&1 || true
  prompted "$who" "^parley> ?$"
  keys "$who" "/login $who"
  prompted "$who" "^password: ?$"
  keys "$who" "pw-$who-secret"
  sees "$who" "^\* logged in as $who\."
}

# enter NAME ROOM: /join at NAME's prompt, waits until in.
enter() {
  keys "$1" "/join $2"
  sees "$1" "^\* you are in $2;"
  prompted "$1" "^$1@$2> ?$"
}

# cpu_ticks PID: user + system CPU time of PID so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

check_no_sanitizer_reports() {
  for f in "$work"/*.stderr; do
    [[ -e $f ]] || continue
    if grep -qiE "sanitizer|runtime error|segv" "$f"; then cat "$f"; fail "$f reports errors"; fi
  done
}
