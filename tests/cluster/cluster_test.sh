#!/usr/bin/env bash
# compose.yml without Docker: every service of the file runs its exact
# command line (read by compose.py: entrypoint + command, environment,
# healthcheck, depends_on) as a process in its own network namespace, on
# the networks the file gives it (a bridge per network; names and aliases
# resolve per network through /etc/netns/NS/hosts, as Docker's DNS does),
# plus a client host on the networks of the `client` service. Volumes are
# directories; the one-shot certs service runs docker/make-certs.sh.
#
# Then: the client host reaches every public endpoint and none of the
# internal ones; a service host without a certificate cannot talk TLS to
# them; while two users chat, each service is killed (-9) and started again
# in turn; every message acknowledged is in the history once, in a
# gap-free sequence.
#
# Needs root for ip netns (CI runs as root).
set -euo pipefail

: "${PARLEYD:?path of parleyd}" "${BUILD_DIR:?the build directory}"
PARLEY=${PARLEY:-$BUILD_DIR/client/parley}
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
compose=$src/compose.yml
[[ -x $PARLEY ]] || { echo "FAIL: no parley binary at $PARLEY"; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "FAIL: needs root for network namespaces"; exit 1; }

tag=pc$$
sub=$(( $$ % 200 + 20 ))
work=$(mktemp -d "${TMPDIR:-/tmp}/parley-cluster-XXXXXX")
declare -A pid_of=()
namespaces=()
bg=()

cleanup() {
  local rc=$?
  for p in "${bg[@]}" "${pid_of[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for p in "${bg[@]}" "${pid_of[@]}"; do wait "$p" 2>/dev/null || true; done
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; rm -rf "/etc/netns/$ns"; done
  if ((rc != 0)); then
    for f in "$work"/*.log; do [[ -e $f ]] && { echo "--- $f"; tail -n 25 "$f"; }; done
  fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok $*"; }
cf() { python3 "$here/compose.py" "$compose" "$@"; }

# wait_for DESCRIPTION SECONDS COMMAND...
wait_for() {
  local what=$1 secs=$2
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "timed out after ${secs}s waiting for $what"
    sleep 0.1
  done
}

# --- the file -------------------------------------------------------------------
mapfile -t services < <(cf order)
hosts=()
for s in "${services[@]}"; do
  [[ -n $(cf networks "$s") ]] && hosts+=("$s")
done
hosts+=(client)
declare -A net_index=() addr_of=()
n_nets=0
for h in "${hosts[@]}"; do
  while read -r net _; do
    [[ -n $net ]] || continue
    [[ -n ${net_index[$net]:-} ]] || { net_index[$net]=$((++n_nets)); }
  done < <(cf networks "$h")
done
((n_nets >= 2)) || fail "compose.yml has $n_nets networks; want a backend and a frontend"

# --- the hosts --------------------------------------------------------------------
sw=$tag-sw
ip netns add "$sw"; namespaces+=("$sw")
for net in "${!net_index[@]}"; do
  ip -n "$sw" link add "br${net_index[$net]}" type bridge
  ip -n "$sw" link set "br${net_index[$net]}" up
done
k=0
for h in "${hosts[@]}"; do
  ns=$tag-$h
  ip netns add "$ns"; namespaces+=("$ns")
  ip -n "$ns" link set lo up
  k=$((k + 1))
  while read -r net _; do
    [[ -n $net ]] || continue
    i=${net_index[$net]}
    ip link add "e$i" netns "$ns" type veth peer name "p$k-$i" netns "$sw"
    ip -n "$sw" link set "p$k-$i" master "br$i" up
    ip -n "$ns" addr add "10.$sub.$i.$k/24" dev "e$i"
    ip -n "$ns" link set "e$i" up
    addr_of[$h/$net]=10.$sub.$i.$k
  done < <(cf networks "$h")
done

# Names as Docker's DNS gives them: a host sees the services it shares a
# network with, by service name and by their aliases on that network (the
# first network shared, in the file's order, for a service name).
for h in "${hosts[@]}"; do
  mkdir -p "/etc/netns/$tag-$h"
  {
    echo "127.0.0.1 localhost"
    while read -r net _; do
      [[ -n $net ]] || continue
      for other in "${hosts[@]}"; do
        [[ $other == client ]] && continue
        while read -r onet aliases; do
          [[ $onet == "$net" ]] || continue
          echo "${addr_of[$other/$net]} $aliases"
          echo "${addr_of[$other/$net]} $other"
        done < <(cf networks "$other")
      done
    done < <(cf networks "$h")
  } | awk '!seen[$2]++' >"/etc/netns/$tag-$h/hosts"
done

# --- running a service as compose would ---------------------------------------------
# The service's command line with binaries and paths of this machine: each
# service sees its own root, $work/fs-SERVICE, where its volumes' mount
# points are links to the volumes' directories, and every absolute path
# under a mount point's top directory is taken inside that root.
command_of() {
  local s=$1 what=${2:-argv} root=$work/fs-$1
  local -a tops=()
  while read -r vol path _; do
    [[ -n $vol ]] || continue
    mkdir -p "$work/vol/$vol" "$(dirname "$root$path")"
    [[ -L $root$path ]] || ln -s "$work/vol/$vol" "$root$path"
    tops+=("/$(cut -d/ -f2 <<<"$path")")
  done < <(cf volumes "$s")
  cf "$what" "$s" | while IFS= read -r a; do
    case $a in
      parleyd) a=$PARLEYD ;;
      parley) a=$PARLEY ;;
      parley-make-certs) a=$src/docker/make-certs.sh ;;
    esac
    for top in "${tops[@]}"; do
      [[ $a == "$top" || $a == "$top"/* ]] && { a=$root$a; break; }
    done
    printf '%s\n' "$a"
  done
}

start() {
  local s=$1
  local -a argv env
  mapfile -t argv < <(command_of "$s")
  mapfile -t env < <(cf env "$s" | grep .)
  # `ip netns exec` execs the daemon in place: the pid is the daemon's.
  env ${env[@]+"${env[@]}"} ip netns exec "$tag-$s" "${argv[@]}" >>"$work/$s.log" 2>&1 &
  pid_of[$s]=$!
}

healthy() {
  local s=$1
  local -a argv
  mapfile -t argv < <(command_of "$s" health)
  [[ ${argv[0]} == "$PARLEY" ]] && argv+=(--timeout 1000)
  XDG_CONFIG_HOME=$work/health ip netns exec "$tag-$s" "${argv[@]}"
}

for s in "${services[@]}"; do
  while read -r dep; do
    [[ -n $dep ]] || continue
    [[ -n ${pid_of[$dep]:-} ]] && wait_for "$dep healthy (for $s)" 60 healthy "$dep"
  done < <(cf depends "$s")
  if [[ -z $(cf networks "$s") ]]; then
    # A one-shot job without a network: run to completion.
    mapfile -t argv < <(command_of "$s")
    "${argv[@]}" >>"$work/$s.log" 2>&1 || fail "$s failed"
  else
    start "$s"
  fi
done
running=()
for s in "${services[@]}"; do [[ -n ${pid_of[$s]:-} ]] && running+=("$s"); done
for s in "${running[@]}"; do wait_for "$s healthy" 60 healthy "$s"; done
ok "compose.yml's services run as processes on their own hosts: ${running[*]}"

# --- the client host ----------------------------------------------------------------
mapfile -t client_env < <(cf env client | grep .)
as() { local who=$1; shift; env "${client_env[@]}" XDG_CONFIG_HOME="$work/home-$who" ip netns exec "$tag-client" "$PARLEY" "$@"; }
as nobody health >/dev/null || fail "the client host does not reach every public endpoint: $(as nobody health 2>&1)"
web=""
for s in "${running[@]}"; do
  while read -r _ hport cport; do
    [[ -n $cport ]] || continue
    mapfile -t argv < <(cf argv "$s")
    if printf '%s\n' "${argv[@]}" | grep "^http://.*:$cport\$" >/dev/null; then
      ip netns exec "$tag-client" curl -fsS "http://$s:$cport/healthz" >"$work/healthz" ||
        fail "the client host does not reach $s's HTTP face"
      grep -q '"status":"ok"' "$work/healthz" || fail "$s /healthz: $(cat "$work/healthz")"
      web+=" $s:$cport"
    fi
  done < <(cf ports "$s")
done
ok "the client host reaches auth, rooms, history and messaging, and the HTTP face at${web:- nothing}"

# Every internal endpoint of the file, tried from the client host by name,
# at every address its host has; and a TLS handshake without a client
# certificate from a service host.
connect() { # connect NS HOST PORT: exit 0 if a TCP connection opens
  ip netns exec "$tag-$1" python3 -c '
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()
except OSError as e:
    print(e); sys.exit(1)' "$2" "$3"
}
checked=0
for s in "${running[@]}"; do
  mapfile -t argv < <(cf argv "$s")
  for ((i = 0; i < ${#argv[@]} - 1; i++)); do
    case ${argv[i]} in --events-listen | --room-events-listen | --rooms-internal-listen) ;; *) continue ;; esac
    url=${argv[i + 1]}
    [[ $url == inproc://* ]] && { checked=$((checked + 1)); continue; }
    hostport=${url#*://}
    name=${hostport%:*} port=${hostport##*:}
    ip netns exec "$tag-client" getent hosts "$name" >/dev/null &&
      fail "the client host resolves $name"
    for key in "${!addr_of[@]}"; do
      [[ $key == "$s"/* ]] || continue
      if out=$(connect client "${addr_of[$key]}" "$port"); then
        fail "the client host connects to $s's internal ${argv[i]} at ${addr_of[$key]}:$port"
      fi
    done
    # From another service host: the port is there, and TLS works with that
    # host's certificate but not without one (the server is checked against
    # the CA either way, so only the missing certificate can fail it).
    other=""
    for o in "${running[@]}"; do
      # (grep reads to the end: an early exit would break cf's pipe)
      [[ $o != "$s" && -z $other ]] && cf argv "$o" | grep -x -- --tls-cert >/dev/null && other=$o
    done
    [[ -n $other ]] || fail "no other service with a certificate to try $url from"
    mapfile -t oargv < <(command_of "$other")
    declare -A tls=()
    for ((j = 0; j < ${#oargv[@]} - 1; j++)); do
      case ${oargv[j]} in --tls-cert | --tls-key | --tls-ca) tls[${oargv[j]}]=${oargv[j + 1]} ;; esac
    done
    [[ -n ${tls[--tls-ca]:-} && -n ${tls[--tls-cert]:-} ]] || fail "$other has no TLS files to dial $url with"
    connect "$other" "$name" "$port" >/dev/null || fail "$other cannot reach $name:$port at all"
    s_client() {
      ip netns exec "$tag-$other" openssl s_client -connect "$name:$port" -servername "$name" \
        -CAfile "${tls[--tls-ca]}" -verify_return_error "$@" </dev/null >"$work/s_client.txt" 2>&1
    }
    s_client -cert "${tls[--tls-cert]}" -key "${tls[--tls-key]}" ||
      fail "$other cannot finish TLS with $name:$port even with its certificate: $(tail -n 5 "$work/s_client.txt")"
    grep -q "Verify return code: 0 (ok)" "$work/s_client.txt" || fail "server certificate of $name:$port: $(grep -i verify "$work/s_client.txt")"
    if s_client && ! grep -qi "alert" "$work/s_client.txt"; then
      fail "$name:$port lets a peer without a client certificate finish TLS: $(tail -n 5 "$work/s_client.txt")"
    fi
    unset tls
    checked=$((checked + 1))
  done
done
((checked >= 3)) || fail "only $checked internal endpoints found in compose.yml"
ok "the client host reaches none of the $checked internal endpoints; a peer without a certificate gets no TLS session"

# --- two people chat while each service dies and comes back ---------------------------
for who in alice bob; do
  echo "pw-$who-123456" | as "$who" register "$who" --password-stdin >/dev/null
  echo "pw-$who-123456" | as "$who" login "$who" --password-stdin >/dev/null
done
as alice create lobby "The Lobby" >/dev/null
as alice join lobby >/dev/null
as bob join lobby >/dev/null

chat() { # appends each acknowledged text to $work/acked-WHO, after its ack
  local who=$1 n=0
  while [[ ! -e $work/stop ]]; do
    n=$((n + 1))
    if as "$who" send lobby "$who-$n" --timeout 3000 >/dev/null 2>>"$work/send-errors-$who"; then
      echo "$who-$n" >>"$work/acked-$who"
    else
      sleep 0.1
    fi
  done
}
acks() { cat "$work/acked-$1" 2>/dev/null | wc -l; }
for who in alice bob; do chat "$who" & bg+=($!); done
for who in alice bob; do wait_for "$who's first ack" 30 bash -c "(( \$(cat '$work/acked-$who' 2>/dev/null | wc -l) > 0 ))"; done

for s in "${running[@]}"; do
  kill -9 "${pid_of[$s]}"
  wait "${pid_of[$s]}" 2>/dev/null || true
  start "$s"
  wait_for "$s healthy again" 60 healthy "$s"
  # Both users get messages through after the restart, by construction.
  for who in alice bob; do
    base=$(acks "$who")
    wait_for "$who's send after $s came back" 90 bash -c "(( \$(cat '$work/acked-$who' | wc -l) > $base ))"
  done
  ok "$s killed (-9) and restarted; both users chat on ($(acks alice) + $(acks bob) acked so far)"
done
touch "$work/stop"
for p in "${bg[@]}"; do wait "$p"; done
bg=()

# The whole timeline, oldest first, in pages.
before=""
: >"$work/history.rev"
while :; do
  as bob history lobby --json -n 500 ${before:+--before "$before"} >"$work/page"
  tac "$work/page" >>"$work/history.rev"
  (($(wc -l <"$work/page") == 500)) || break
  before=$(head -n 1 "$work/page" | python3 -c 'import json,sys; print(json.load(sys.stdin)["seq"])')
done
tac "$work/history.rev" >"$work/history"
python3 - "$work" <<'PY' || fail "the history after the restarts"
import json, sys
work = sys.argv[1]
events = [json.loads(l) for l in open(f"{work}/history")]
seqs = [e["seq"] for e in events]
assert seqs == list(range(1, len(seqs) + 1)), f"sequence not gap-free: {seqs[:10]}..."
texts = [e["text"] for e in events if e["type"] == "message"]
acked = open(f"{work}/acked-alice").read().split() + open(f"{work}/acked-bob").read().split()
missing = set(acked) - set(texts)
assert not missing, f"{len(missing)} acknowledged messages lost: {sorted(missing)[:10]}"
dups = {t for t in texts if texts.count(t) > 1}
assert not dups, f"stored twice: {sorted(dups)[:10]}"
print(f"ok all {len(acked)} acknowledged messages are in the history once; {len(seqs)} events, seq 1..{len(seqs)}")
PY
