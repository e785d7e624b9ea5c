#!/usr/bin/env bash
# Hostile HTTP clients (python3 on raw sockets): connection caps per
# address and in all, slow loris on headers and on bodies, oversized
# headers. See http_limits.py.
source "$(dirname "$0")/http_lib.sh"

start_parleyd --http-max-connections 6 --http-max-per-ip 3
wait_http
python3 "$(dirname "$0")/http_limits.py" "$port_http" 6 3
grep -q "request not received in time" "$work/parleyd.log" ||
  fail "the watchdog did not log the connections it cut"
curl -sf "$http_url/healthz" >/dev/null || fail "parleyd does not serve after the attacks"
ok "parleyd serves after the attacks"
