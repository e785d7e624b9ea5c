#!/usr/bin/env bash
# The compose topology on real (simulated) network hosts: auth, rooms, and a
# message-store host running messaging and history as two processes on one
# LMDB environment, each in its own network namespace behind a bridge, and a
# client host that runs the parley CLI. Then the rooms host is cut off, and
# comes back.
#
# Needs root (ip netns); skipped (77) otherwise. All addresses live inside
# namespaces this test creates and deletes.
set -euo pipefail

: "${PARLEYD:?path of parleyd}" "${BUILD_DIR:?the build directory}"
PARLEY=${PARLEY:-$BUILD_DIR/client/parley}
[[ -x $PARLEY ]] || { echo "no parley binary at $PARLEY"; exit 1; }
if [[ $(id -u) -ne 0 ]] || ! command -v ip >/dev/null; then
  echo "SKIP: needs root and iproute2 for network namespaces"; exit 77
fi

tag=pc$$
net=10.77.$(( $$ % 200 + 20 ))
work=$(mktemp -d "${TMPDIR:-/tmp}/parley-cluster-XXXXXX")
pids=()

cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for h in sw auth rooms store client; do ip netns del "$tag-$h" 2>/dev/null || true; done
  if ((rc != 0 && rc != 77)); then
    for f in "$work"/*.log; do echo "--- $f"; tail -n 20 "$f"; done
  fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# --- the hosts ----------------------------------------------------------------
ip netns add "$tag-sw"
ip -n "$tag-sw" link add br0 type bridge
ip -n "$tag-sw" link set br0 up
n=1
for h in auth rooms store client; do
  ip netns add "$tag-$h"
  ip link add "v$n" netns "$tag-$h" type veth peer name "p$n" netns "$tag-sw"
  ip -n "$tag-sw" link set "p$n" master br0 up
  ip -n "$tag-$h" addr add "$net.$n/24" dev "v$n"
  ip -n "$tag-$h" link set "v$n" up
  ip -n "$tag-$h" link set lo up
  n=$((n + 1))
done
auth=tcp://$net.1:5201
rooms=tcp://$net.2:5202
# Internal endpoints never go on the client's network in plaintext. Until
# mutual TLS (tls+tcp:// with --tls-ca) is in, the rooms host and the store
# host reach each other's internal endpoints over ipc:// sockets in a shared
# directory: network namespaces do not separate path-bound unix sockets, as
# a volume shared by two containers on one machine does not.
mkdir -p "$work/internal"
room_events=ipc://$work/internal/room-events.sock
rooms_internal=ipc://$work/internal/rooms-internal.sock
history=tcp://$net.3:5203
messaging=tcp://$net.3:5204

on() { local h=$1; shift; ip netns exec "$tag-$h" "$@"; }
# Backgrounds `ip netns exec` itself (it execs parleyd in place), so $! is
# the daemon's own pid and the cleanup reaches it.
daemon() {
  local h=$1 name=$2; shift 2
  ip netns exec "$tag-$h" "$PARLEYD" "$@" 2>"$work/$name.log" &
  pids+=($!)
}

# --- the services, one host each (messaging and history share a host) --------
daemon auth auth --services auth --data-dir "$work/auth" --auth-listen "$auth"
daemon rooms rooms --services rooms --data-dir "$work/rooms" --rooms-listen "$rooms" \
  --room-events-listen "$room_events" --rooms-internal-listen "$rooms_internal" --auth "$auth"
daemon store messaging --services messaging --data-dir "$work/store" \
  --messaging-listen "$messaging" --auth "$auth" \
  --rooms "$rooms" --room-events "$room_events" --rooms-internal "$rooms_internal"
# history opens the store read-only once messaging has created it
for _ in $(seq 100); do [[ -f $work/store/data.mdb ]] && break; sleep 0.1; done
daemon store history --services history --data-dir "$work/store" --history-listen "$history" \
  --auth "$auth" --rooms "$rooms"

# --- people on the client host ------------------------------------------------
export PARLEY_AUTH=$auth PARLEY_ROOMS=$rooms PARLEY_HISTORY=$history PARLEY_MESSAGING=$messaging
as() { local who=$1; shift; XDG_CONFIG_HOME="$work/home-$who" on client "$PARLEY" "$@"; }

for _ in $(seq 150); do as alice health >/dev/null 2>&1 && break; sleep 0.2; done
as alice health >/dev/null || fail "services not healthy from the client host"

for who in alice bob; do
  echo "pw-$who-123" | as "$who" register "$who" --password-stdin >/dev/null
  echo "pw-$who-123" | as "$who" login "$who" --password-stdin >/dev/null
done
as alice create lobby "The Lobby" >/dev/null
as bob join lobby >/dev/null
as alice send lobby "hello across the network" >/dev/null
as bob send lobby "loud and clear" >/dev/null
out=$(as bob history lobby --json)
grep -q '"text":"hello across the network"' <<<"$out" || fail "alice's message missing: $out"
grep -q '"text":"loud and clear"' <<<"$out" || fail "bob's message missing: $out"
grep -q '"type":"joined"' <<<"$out" || fail "join event missing from the timeline: $out"
echo "ok register, create, join, send and history across four hosts"

# --- cut the rooms host off ---------------------------------------------------
ip -n "$tag-rooms" link set v2 down
start=$(date +%s%N)
if as alice send lobby "into the void" --timeout 8000 2>"$work/err.txt"; then
  fail "send succeeded while membership could not be checked"
fi
took=$(( ($(date +%s%N) - start) / 1000000 ))
grep -Eq 'UNAVAILABLE|DEADLINE_EXCEEDED' "$work/err.txt" || fail "unclear error: $(cat "$work/err.txt")"
echo "ok with the rooms host cut off, a send is refused ($(cat "$work/err.txt"), ${took} ms), not accepted unchecked"

# Connections stalled by the cut resume by TCP retransmission, whose
# back-off can leave several seconds between tries: retry for a bounded
# time, and say how long recovery took.
ip -n "$tag-rooms" link set v2 up
start=$(date +%s)
until as alice send lobby "back again" --timeout 5000 >/dev/null 2>"$work/err.txt"; do
  (( $(date +%s) - start < 90 )) || fail "no recovery 90 s after the partition: $(cat "$work/err.txt")"
  sleep 0.5
done
as bob history lobby --json | grep -q '"text":"back again"' || fail "recovered send not in history"
as bob history lobby --json | grep -q '"text":"into the void"' && fail "a refused send was stored"
echo "ok the cluster recovers when the rooms host returns ($(( $(date +%s) - start )) s)"
