# lib_http.sh — for tests whose client speaks HTTP (the Connect protocol):
# lib.sh's parleyd on free ports (its HTTP face on $http_url), waited for
# until the HTTP listener accepts connections (never a fixed sleep).
# shellcheck source=../e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../e2e/lib.sh"

: "${PROTO_DIR:?the proto/ directory}"

# start_parleyd_http [extra parleyd arguments]
start_parleyd_http() {
  command -v curl >/dev/null || fail "curl is not installed (.ci/deps installs it)"
  start_parleyd "$@"
  [[ -n ${http_url:-} ]] || fail "lib.sh gave parleyd no HTTP address"
  wait_for "the HTTP listener at $http_url" 15 curl -s -o /dev/null "$http_url/"
}
