#!/usr/bin/env bash
# The validation cache of one parleyd (services/common/svc.h): with the
# auth service in the same process, a token validated once is not sent to
# Auth/Validate again on every call, and yet every revocation is seen at
# once: Logout, ChangePassword (the other sessions), DeleteAccount, and a
# token's expiry. Counts come from the daemon's own /metrics.
source "$(dirname "$0")/http_lib.sh"

start_parleyd --token-ttl 8

# Auth/Validate calls answered so far, whatever their status.
validations() {
  curl -fsS "$http_url/metrics" |
    awk '$1 ~ /^parley_rpc_calls_total\{/ && $1 ~ /method="\/parley.v1.Auth\/Validate"/ { n += $2 } END { print n + 0 }'
}

mine() { post Rooms/ListMyRooms '{}' "$1"; }

for u in bob carol dave; do
  post Auth/Register "{\"userId\":\"$u\",\"password\":\"pw-$u-secret\",\"displayName\":\"$u\"}"
  want_ok
done

# Many calls, one validation at most.
register_login alice
alice=$token
mine "$alice"
want_ok
before=$(validations)
# The first call did validate: the count is read from the right series.
((before > 0)) || fail "no Auth/Validate calls counted: $(curl -fsS "$http_url/metrics" | grep -c Validate) series"
for i in $(seq 1 25); do
  mine "$alice"
  want_ok
done
after=$(validations)
((after - before <= 1)) || fail "25 calls with one token made $((after - before)) validations"
ok "25 calls with one token: $((after - before)) Auth/Validate calls"

# Logout: refused at once, although it was remembered a moment ago.
login bob
bob=$token
mine "$bob"
want_ok
post Auth/Logout '{}' "$alice"
want_ok
mine "$alice"
want_error 401 unauthenticated "token"
mine "$bob"
want_ok
ok "a logged-out token is refused at once; other tokens still work"

# ChangePassword ends the user's other sessions at once, keeps this one.
login carol
carol1=$token
login carol
carol2=$token
mine "$carol1"
want_ok
mine "$carol2"
want_ok
post Auth/ChangePassword '{"oldPassword":"pw-carol-secret","newPassword":"pw-carol-newer"}' "$carol1"
want_ok
mine "$carol2"
want_error 401 unauthenticated "token"
mine "$carol1"
want_ok
ok "ChangePassword: the other session is refused at once, this one goes on"

# DeleteAccount: its token is refused at once.
login dave
dave=$token
mine "$dave"
want_ok
post Auth/DeleteAccount '{"password":"pw-dave-secret"}' "$dave"
want_ok
mine "$dave"
want_error 401 unauthenticated "token"
ok "DeleteAccount: the token is refused at once"

# Expiry: a remembered token is refused once its time is up (a fresh
# login, so that the other steps' password hashing cannot eat its life).
login bob
bob=$token
bob_expires=$(jq -r .expiresAtMs "$work/body")
mine "$bob"
want_ok
now_ms() { date +%s%3N; }
(( bob_expires - $(now_ms) <= 15000 )) || fail "--token-ttl 8 gave a token for $(( (bob_expires - $(now_ms)) / 1000 )) s"
while (($(now_ms) <= bob_expires + 50)); do sleep 0.2; done
login bob # a fresh one, to show the expired one is refused for itself
mine "$bob"
want_error 401 unauthenticated "token"
mine "$token"
want_ok
ok "an expired token is refused although it was remembered"

ok "http authn cache test"
