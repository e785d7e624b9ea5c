#!/usr/bin/env bash
# Hostile HTTP clients (python3 on raw sockets): connection caps per
# address and in all, slow loris on headers and on bodies, oversized
# headers. See http_limits.py.
source "$(dirname "$0")/http_lib.sh"

start_parleyd --http-max-connections 6 --http-max-per-ip 3
wait_http
python3 "$(dirname "$0")/http_limits.py" "$port_http" 6 3
# both trickling clients were cut by the watchdog, not for another reason
n=$(grep -c "request not received in time" "$work/parleyd.log" || true)
((n == 2)) || fail "the watchdog cut $n connections, want 2 (headers and body): $(grep -i http "$work/parleyd.log")"
curl -sf "$http_url/healthz" >/dev/null || fail "parleyd does not serve after the attacks"
ok "parleyd serves after the attacks"
