#!/usr/bin/env bash
# The parley CLI's scripted mode against the auth service alone: --help for
# every subcommand, usage errors (exit 2), server errors (exit 1 with
# "error: STATUS: ..."), the saved session (0600 in a 0700 directory,
# refused when others can read it), local errors (exit 3), and endpoints.
source "$(dirname "$0")/lib.sh"

for cmd in register login logout rooms create join leave who send history tail health whoami version; do
  expect 0 nobody "$cmd" --help
  out_has "^usage: parley $cmd"
  expect 0 nobody help "$cmd"
  out_has "^usage: parley $cmd"
done
expect 0 nobody --help
out_has "^usage: parley "
out_has "Exit status"
expect 0 nobody version
out_has "^parley [0-9]+\.[0-9]+"
cp "$work/out" "$work/version"
expect 0 nobody --version
cmp -s "$work/out" "$work/version" || fail "version and --version differ"
ok "--help for every subcommand, version"

expect_err 2 usage nobody frobnicate
expect_err 2 usage nobody send lobby
expect_err 2 usage nobody join
expect_err 2 usage nobody join a b
expect_err 2 usage nobody rooms --before 3
expect_err 2 usage nobody history lobby -n abc
expect_err 2 usage nobody history lobby -n 501
cp "$work/err" "$work/err501"
expect_err 2 usage nobody history lobby -n 0
# -n 0 and -n 501 say the same thing, and point to the command's help.
for f in "$work/err" "$work/err501"; do
  grep -q "^parley history: -n: '[0-9]*' is not a number from 1 to 500$" "$f" || fail "-n message: $(cat "$f")"
  grep -q "^Try 'parley history --help'.$" "$f" || fail "-n hint: $(cat "$f")"
done
expect_err 2 usage nobody tail lobby -n 501
grep -q "is not a number from 0 to 500" "$work/err" || fail "tail -n message: $(cat "$work/err")"
expect_err 2 usage nobody rooms --timeout 0
expect_err 2 usage nobody rooms --no-such-option
expect_err 2 usage nobody history lobby --before
expect_err 2 usage nobody --server 'http://x:1' rooms
expect_err 2 usage nobody --server 'x:99999' rooms
grep -q 'base port' "$work/err" || fail "--server error does not say what it takes: $(cat "$work/err")"
expect_err 2 usage nobody --auth 'not a url' health auth
expect_err 2 usage nobody --json
ok "usage errors exit 2"

start_parleyd --services auth

expect 0 nobody health auth
out_has "^auth +tcp://127.0.0.1:$port_auth +SERVING$"
expect 0 nobody health auth --json
out_has "^\{\"service\":\"auth\",\"url\":\"tcp://127.0.0.1:$port_auth\",\"status\":\"SERVING\"\}$"
expect_err 1 UNAVAILABLE nobody health rooms --rooms "tcp://127.0.0.1:$(free_port)" --timeout 300
out_has "^rooms .* UNAVAILABLE$"
ok "health"

echo "pw-alice-secret" | as alice register alice --password-stdin --display-name "Alice A." >"$work/out"
out_has "^registered alice$"
echo "pw-alice-secret" | expect_err 1 ALREADY_EXISTS alice register alice --password-stdin
echo "short" >"$work/pw"
as alice register shorty --password-stdin <"$work/pw" 2>"$work/err" && fail "short password accepted"
grep -q "^error: INVALID_ARGUMENT: " "$work/err" || fail "short password: $(cat "$work/err")"
# A bad user id is refused before any password is asked for.
expect_err 2 usage alice register "Bad User!" --password-stdin <<<"pw-long-enough"
grep -q "is not a user id: a user id is 3 to 32 characters" "$work/err" || fail "register id: $(cat "$work/err")"
expect_err 2 usage alice register "x" </dev/null
grep -q "password" "$work/err" && fail "asked for a password for a bad id: $(cat "$work/err")"
expect_err 2 usage alice register carol </dev/null   # stdin is not a terminal
expect_err 2 usage alice login alice --password-stdin </dev/null  # nothing on stdin
ok "register"

as alice login alice --password-stdin <<<"wrong-password" >"$work/out" 2>"$work/err" && fail "wrong password accepted"
grep -q "^error: UNAUTHENTICATED: " "$work/err" || fail "wrong password: $(cat "$work/err")"
[[ ! -e $work/home-alice/parley/session ]] || fail "a failed login saved a session"
as alice login alice --password-stdin <<<"pw-alice-secret" >"$work/out"
out_has "^logged in as alice$"
session=$work/home-alice/parley/session
[[ $(stat -c %a "$session") == 600 ]] || fail "session mode $(stat -c %a "$session")"
[[ $(stat -c %a "$work/home-alice/parley") == 700 ]] || fail "session dir mode"
grep -q "^user=alice$" "$session" || fail "session lacks the user"
grep -q "^auth=$PARLEY_AUTH$" "$session" || fail "session lacks the endpoints"
ok "login saves the session 0600"

# The saved endpoints are used when nothing else names them...
(unset PARLEY_AUTH; as alice health auth >"$work/out") || fail "saved endpoints not used"
out_has "127.0.0.1:$port_auth"
# ...and --server, env and flags override them, strongest last.
(unset PARLEY_AUTH; as alice --server 10.9.8.7 health auth --timeout 200 >"$work/out" 2>&1) && fail "--server ignored"
out_has "tcp://10.9.8.7:5201"
(unset PARLEY_AUTH; PARLEY_SERVER=10.9.8.6 as alice health auth --timeout 200 >"$work/out" 2>&1) && fail "PARLEY_SERVER ignored"
out_has "tcp://10.9.8.6:5201"
(PARLEY_AUTH=tcp://127.0.0.1:1 as alice --server 10.9.8.7 health auth --timeout 200 >"$work/out" 2>&1) && fail "PARLEY_AUTH ignored"
out_has "tcp://127.0.0.1:1 "
as alice --server 10.9.8.7 --auth "$PARLEY_AUTH" health auth >"$work/out" || fail "--auth ignored"
(unset PARLEY_AUTH; as nobody --server ::1 health auth --timeout 200 >"$work/out" 2>&1) || true
out_has "tcp://\[::1\]:5201"
# --server HOST:PORT: PORT is auth's, the others follow it (issue 11 #7;
# only auth runs here, the others are named but down).
(unset PARLEY_AUTH PARLEY_ROOMS PARLEY_HISTORY PARLEY_MESSAGING
 as nobody --server "127.0.0.1:$port_auth" health --timeout 300 >"$work/out" 2>/dev/null) && fail "only auth is up"
out_has "^auth +tcp://127.0.0.1:$port_auth +SERVING$"
out_has "^rooms +tcp://127.0.0.1:$port_rooms +UNAVAILABLE$"
out_has "^history +tcp://127.0.0.1:$port_history +UNAVAILABLE$"
out_has "^messaging +tcp://127.0.0.1:$port_messaging +UNAVAILABLE$"
(unset PARLEY_AUTH PARLEY_ROOMS PARLEY_HISTORY PARLEY_MESSAGING
 as nobody --server "tcp://127.0.0.1:$port_auth" health auth >"$work/out") || fail "--server URL: $(cat "$work/out")"
out_has "^auth +tcp://127.0.0.1:$port_auth +SERVING$"
ok "endpoint precedence"

# A session file others can read is refused (exit 3), not used.
chmod 644 "$session"
expect 3 alice logout
grep -q "not private" "$work/err" || fail "mode 644 not explained: $(cat "$work/err")"
chmod 600 "$session"

# Not logged in: exit 1 with UNAUTHENTICATED, before any call is made.
for cmd in "logout" "rooms" "create r" "join r" "leave r" "who r" "send r hi" "history r" "tail r"; do
  # shellcheck disable=SC2086
  expect_err 1 UNAUTHENTICATED nobody $cmd
done
ok "commands need a login"

# A token revoked elsewhere: logout still cleans up, exit 0.
mkdir -p "$work/home-alice2/parley" && chmod 700 "$work/home-alice2/parley"
cp -p "$session" "$work/home-alice2/parley/session"
expect 0 alice logout
out_has "^logged out$"

[[ ! -e $session ]] || fail "logout left the session file"
expect 0 alice2 logout
out_has "already ended"
expect_err 1 UNAUTHENTICATED alice logout
ok "logout"

# A damaged session file is a local error.
mkdir -p "$work/home-dam/parley" && chmod 700 "$work/home-dam/parley"
printf 'user=x y\n' >"$work/home-dam/parley/session" && chmod 600 "$work/home-dam/parley/session"
expect 3 dam rooms
ok "damaged session file exits 3"

# A server that is down: exit 1, UNAVAILABLE, within the timeout.
stop_parleyd
start=$SECONDS
echo "pw-alice-secret" | expect_err 1 UNAVAILABLE alice login alice --password-stdin --timeout 500
((SECONDS - start < 5)) || fail "UNAVAILABLE took too long"
ok "server down"
ok "cli auth test"
