#!/usr/bin/env bash
# compose.yml without a container engine (CI has none): Debian's
# docker-compose validates it, compose.py checks the deployment rules
# (backend internal, internal endpoints inproc or tls+tcp on backend-only
# names with a CA, ports on 127.0.0.1 only, healthchecks by `parley
# health`, depends_on waiting for health, a `store` running messaging and
# history together, no PID sharing), and the certs service's script makes a
# CA and certificates that verify, name their hosts, and are 0600.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/parley-compose-XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

command -v docker-compose >/dev/null || fail "docker-compose missing (bash .ci/deps installs it)"
(cd "$src" && docker-compose -f compose.yml config -q) || fail "docker-compose rejects compose.yml"
echo "ok docker-compose config accepts compose.yml"

python3 "$here/compose.py" "$src/compose.yml" check || fail "compose.yml breaks the rules above"
echo "ok compose.yml keeps internal endpoints off the client's network, publishes on 127.0.0.1 only, waits for health"

# The rules really catch a breach: the old file's mistakes, made again.
sed -e 's|"tls+tcp://rooms.backend:5206"|"tcp://0.0.0.0:5206"|' \
    -e 's|"127.0.0.1:5201:5201"|"5201:5201"|' "$src/compose.yml" >"$work/bad.yml"
out=$(python3 "$here/compose.py" "$work/bad.yml" check) && fail "a broken file passed the check"
grep -q "room-events-listen tcp://0.0.0.0:5206" <<<"$out" || fail "open PUB not caught: $out"
grep -q "port published on 0.0.0.0" <<<"$out" || fail "port on every address not caught: $out"
echo "ok the check catches a PUB on 0.0.0.0 and a port published on every address"

# The image's build context: no history, build trees, stores or keys.
for pattern in .git 'build*/' 'data/' '**/*.mdb' '**/auth.key'; do
  grep -qxF -- "$pattern" "$src/.dockerignore" || fail ".dockerignore lets $pattern into the build context"
done
echo "ok .dockerignore keeps .git, build trees, stores and keys out of the image"

argv=$(python3 "$here/compose.py" "$src/compose.yml" argv certs)
[[ $(head -n 1 <<<"$argv") == parley-make-certs ]] || fail "certs runs: $argv"
mapfile -t hosts < <(tail -n +3 <<<"$argv")
sh "$src/docker/make-certs.sh" "$work/tls" "${hosts[@]}" >/dev/null
for h in "${hosts[@]}"; do
  openssl verify -CAfile "$work/tls/ca/ca.pem" "$work/tls/$h/cert.pem" >/dev/null ||
    fail "$h's certificate does not verify"
  openssl x509 -in "$work/tls/$h/cert.pem" -noout -ext subjectAltName | grep "DNS:$h, DNS:$h.backend" >/dev/null ||
    fail "$h's certificate does not name $h and $h.backend"
  openssl x509 -in "$work/tls/$h/cert.pem" -noout -ext extendedKeyUsage | grep "TLS Web Client Authentication" >/dev/null ||
    fail "$h's certificate is not for clients too (mutual TLS)"
  [[ $(stat -c %a "$work/tls/$h/key.pem") == 600 ]] || fail "$h's key is not 0600"
done
before=$(sha256sum "$work/tls/rooms/cert.pem")
sh "$src/docker/make-certs.sh" "$work/tls" "${hosts[@]}" >/dev/null
[[ $(sha256sum "$work/tls/rooms/cert.pem") == "$before" ]] || fail "a second run replaced a certificate"
echo "ok the certs service makes a CA and certificates for ${hosts[*]}, once"
