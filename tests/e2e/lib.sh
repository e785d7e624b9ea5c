# lib.sh — shared by the e2e shell tests: a real parleyd on free ports with
# a temporary data directory, the parley CLI with a temporary config home
# per person, and waiting with deadlines (never fixed sleeps).
#
# A test sources this file, then calls start_parleyd, ... A test runs or
# fails: nothing here exits 77 (skipped), whatever is missing.

set -euo pipefail

: "${PARLEYD:?path of parleyd}" "${BUILD_DIR:?the build directory}"
PARLEY=${PARLEY:-$BUILD_DIR/client/parley}
[[ -x $PARLEY ]] || { echo "no parley binary at $PARLEY"; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/parley-e2e-XXXXXX")
daemon_pid=""
bg_pids=()
cleanup_hooks=()
fail_files=()	# show_on_fail FILE...: printed when the test fails
show_on_fail() { fail_files+=("$@"); }

cleanup() {
  local rc=$?
  for hook in "${cleanup_hooks[@]}"; do "$hook" || true; done
  for p in "${bg_pids[@]}" $daemon_pid; do
    { kill -9 "$p" && wait "$p"; } 2>/dev/null || true
  done
  if ((rc != 0)); then
    for f in "${fail_files[@]}"; do
      echo "--- $f (last 30 lines) ---"
      tail -n 30 "$f" 2>/dev/null || true
    done
    echo "--- parleyd log (last 30 lines) ---"
    tail -n 30 "$work/parleyd.log" 2>/dev/null || true
  fi
  if [[ -z ${PARLEY_TEST_KEEP:-} ]]; then rm -rf "$work"; else echo "kept $work"; fi
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok $*"; }

free_port() {
  python3 "$(dirname "${BASH_SOURCE[0]}")/../free_ports.py" 1
}

# The daemon's addresses: chosen on the first start_parleyd, kept for
# restarts, exported for parley.
pick_ports() {
  [[ -z ${port_auth:-} ]] || return 0
  local ports
  # shellcheck disable=SC2207
  # The four public services on neighbouring ports: --server 127.0.0.1:$port_auth
  # reaches them all.
  ports=($(python3 "$(dirname "${BASH_SOURCE[0]}")/../free_ports.py" 4 --consecutive))
  port_auth=${ports[0]} port_rooms=${ports[1]} port_history=${ports[2]}
  port_messaging=${ports[3]}
  # The others anywhere, but not among those four.
  while :; do
    # shellcheck disable=SC2207
    ports=($(python3 "$(dirname "${BASH_SOURCE[0]}")/../free_ports.py" 4))
    [[ " ${ports[*]} " =~ \ ($port_auth|$port_rooms|$port_history|$port_messaging)\  ]] || break
  done
  port_events=${ports[0]} port_room_events=${ports[1]} port_rooms_internal=${ports[2]}
  port_http=${ports[3]}
  http_url="http://127.0.0.1:$port_http"
  export PARLEY_AUTH="tcp://127.0.0.1:$port_auth"
  export PARLEY_ROOMS="tcp://127.0.0.1:$port_rooms"
  export PARLEY_HISTORY="tcp://127.0.0.1:$port_history"
  export PARLEY_MESSAGING="tcp://127.0.0.1:$port_messaging"
}
unset PARLEY_SERVER XDG_CONFIG_HOME PARLEY_AUTH PARLEY_ROOMS PARLEY_HISTORY PARLEY_MESSAGING

# start_parleyd [extra parleyd arguments]: starts and waits until every
# service it runs (all, or those of --services LIST) answers Health/Check.
# Only the daemon's own "started (pid N," counts as up: another test's
# daemon may answer on a port ours could not take. On a first start, a port
# taken meanwhile by another test means other ports (up to 5 tries).
start_parleyd() {
  local first=0 attempt deadline
  [[ -n ${port_auth:-} ]] || first=1
  for attempt in 1 2 3 4 5; do
    pick_ports
    "$PARLEYD" --data-dir "$work/data" \
      --auth-listen "$PARLEY_AUTH" --rooms-listen "$PARLEY_ROOMS" \
      --history-listen "$PARLEY_HISTORY" --messaging-listen "$PARLEY_MESSAGING" \
      --events-listen "tcp://127.0.0.1:$port_events" \
      --room-events-listen "tcp://127.0.0.1:$port_room_events" \
      --rooms-internal-listen "tcp://127.0.0.1:$port_rooms_internal" \
      --http-listen "$http_url" \
      "$@" 2>>"$work/parleyd.log" >&2 &
    daemon_pid=$!
    deadline=$((SECONDS + 15))
    until grep -qF "started (pid $daemon_pid," "$work/parleyd.log" 2>/dev/null; do
      if ! kill -0 "$daemon_pid" 2>/dev/null; then
        wait "$daemon_pid" 2>/dev/null || true
        if ((first && attempt < 5)) &&
          [[ $(tail -n 5 "$work/parleyd.log") == *"Address in use"* ]]; then
          echo "a port was taken meanwhile; trying other ports" >&2
          port_auth=""
          continue 2
        fi
        echo "--- parleyd log (last 30 lines) ---" >&2
        tail -n 30 "$work/parleyd.log" >&2 || true
        fail "parleyd exited at start"
      fi
      ((SECONDS < deadline)) || fail "parleyd did not say it started within 15 s"
      sleep 0.05
    done
    break
  done
  local services="" prev=""
  for a in "$@"; do [[ $prev == --services ]] && services=$a; prev=$a; done
  [[ -n $services ]] || services="auth rooms history messaging"
  services=$(tr , ' ' <<<"$services")
  # shellcheck disable=SC2086
  wait_for "parleyd serving" 15 "$PARLEY" health --timeout 300 $services
}

kill9_parleyd() {
  { kill -9 "$daemon_pid" && wait "$daemon_pid"; } 2>/dev/null || true
  daemon_pid=""
}

stop_parleyd() {
  kill -TERM "$daemon_pid"
  wait "$daemon_pid" 2>/dev/null || true
  daemon_pid=""
}

# wait_for DESCRIPTION SECONDS COMMAND...: runs COMMAND until it succeeds.
wait_for() {
  local what=$1 secs=$2
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "timed out after ${secs}s waiting for $what"
    sleep 0.05
  done
}

# as NAME COMMAND...: runs parley as the person NAME (their own config home).
as() {
  local who=$1
  shift
  mkdir -p "$work/home-$who"
  XDG_CONFIG_HOME="$work/home-$who" "$PARLEY" "$@"
}

# spawn NAME COMMAND...: `as` in the background (the parley process
# itself, so signals reach it); its pid is left in $spawned.
spawn() {
  local who=$1
  shift
  mkdir -p "$work/home-$who"
  XDG_CONFIG_HOME="$work/home-$who" "$PARLEY" "$@" &
  spawned=$!
  bg_pids+=("$spawned")
}

# expect CODE NAME COMMAND...: runs `as NAME COMMAND...` (stdin as given),
# checks the exit status; stdout is left in $work/out, stderr in $work/err.
expect() {
  local want=$1 who=$2 got=0
  shift 2
  as "$who" "$@" >"$work/out" 2>"$work/err" || got=$?
  if [[ $got != "$want" ]]; then
    echo "--- stdout"; cat "$work/out"; echo "--- stderr"; cat "$work/err"
    fail "parley $* as $who: exit $got, want $want"
  fi
}

# expect_err CODE STATUS NAME COMMAND...: as expect, and stderr must be
# "error: STATUS: ..." (for usage errors give STATUS "usage").
expect_err() {
  local want=$1 status=$2
  shift 2
  expect "$want" "$@"
  if [[ $status == usage ]]; then
    grep -q "^parley" "$work/err" || fail "parley $*: no usage message: $(cat "$work/err")"
  else
    grep -q "^error: $status: " "$work/err" || fail "parley $*: stderr is not 'error: $status: ...': $(cat "$work/err")"
  fi
}

out_has() { grep -qE -- "$1" "$work/out" || fail "stdout lacks /$1/: $(cat "$work/out")"; }

# signup NAME: registers NAME (password "pw-NAME-secret") and logs in.
signup() {
  echo "pw-$1-secret" | as "$1" register "$1" --password-stdin >/dev/null
  echo "pw-$1-secret" | as "$1" login "$1" --password-stdin >/dev/null
}
