# lib_http.sh — for tests whose client speaks HTTP (the Connect protocol):
# lib.sh's parleyd on free ports, plus an HTTP listener on a free port,
# waited for until it accepts connections (never a fixed sleep).
# shellcheck source=../e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../e2e/lib.sh"

: "${PROTO_DIR:?the proto/ directory}"

# start_parleyd_http [extra parleyd arguments]: sets $http_url.
start_parleyd_http() {
  local port
  port=$(free_port)
  http_url="http://127.0.0.1:$port"
  start_parleyd --http-listen "$http_url" "$@"
  command -v curl >/dev/null || fail "curl is not installed (.ci/deps installs it)"
  wait_for "the HTTP listener at $http_url" 15 curl -s -o /dev/null "$http_url/"
}
