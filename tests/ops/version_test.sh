#!/usr/bin/env bash
# Versions as an operator reads them: `parleyd --version`, `parley --version`
# and Health/Check's reply all name the CMake project version and the git
# commit of the checkout the build came from. The generator script is also
# run on a tree without .git (a release tarball: "unknown"), on a fresh
# repository, and on one with a changed file ("-dirty").
set -euo pipefail

: "${PARLEYD:?path of parleyd}" "${BUILD_DIR:?the build directory}" "${PROTO_DIR:?path of proto/}"
PARLEY=${PARLEY:-$BUILD_DIR/client/parley}
src=$(cd "$PROTO_DIR/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/parley-version-XXXXXX")
pid=""
cleanup() {
  [[ -n $pid ]] && { kill "$pid" && wait "$pid"; } 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; cat "$work/parleyd.log" 2>/dev/null; exit 1; }

version=$(sed -n 's/^project(parley VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
[[ -n $version ]] || fail "no project version in $src/CMakeLists.txt"
if [[ -e $src/.git ]]; then
  head=$(git -C "$src" rev-parse --short=12 HEAD)
  commit_re="^$head(-dirty)?\$"
else
  commit_re='^unknown$'
fi

# --- the binaries ------------------------------------------------------------
out=$("$PARLEYD" --version)
[[ $out =~ ^parleyd\ ([0-9.]+)\ \(commit\ ([0-9a-z-]+)\)$ ]] || fail "parleyd --version: '$out'"
[[ ${BASH_REMATCH[1]} == "$version" ]] || fail "parleyd says version ${BASH_REMATCH[1]}, CMake $version"
commit=${BASH_REMATCH[2]}
[[ $commit =~ $commit_re ]] || fail "parleyd says commit $commit, the checkout is at ${head:-no git}"
echo "ok parleyd --version: $out"

out=$("$PARLEY" --version)
[[ $out == "parley $version (commit $commit)" ]] || fail "parley --version: '$out'"
echo "ok parley --version: $out"

# --- Health/Check, read by protoc (no Parley code on this side) ----------------
port=$(python3 "$src/tests/free_ports.py" 1)
addr="tcp://127.0.0.1:$port"
"$PARLEYD" --services auth --data-dir "$work/data" --auth-listen "$addr" 2>"$work/parleyd.log" &
pid=$!
printf 'method: "/parley.v1.Health/Check" timeout_ms: 5000 request_id: 9' |
  protoc -I "$PROTO_DIR" --encode=parley.v1.RpcRequest parley/v1/rpc.proto >"$work/req.bin"
for _ in $(seq 100); do
  nngcat --req --dial "$addr" --file "$work/req.bin" --raw --recv-timeout 5 >"$work/resp.bin" 2>/dev/null &&
    [[ -s $work/resp.bin ]] && break
  sleep 0.1
done
[[ -s $work/resp.bin ]] || fail "no Health/Check reply from $addr"
protoc -I "$PROTO_DIR" --decode=parley.v1.RpcResponse parley/v1/rpc.proto <"$work/resp.bin" >"$work/resp.txt"
body=$(sed -n 's/^body: "\(.*\)"$/\1/p' "$work/resp.txt")
python3 -c 'import sys,ast; sys.stdout.buffer.write(ast.literal_eval("b\"" + sys.argv[1] + "\""))' "$body" |
  protoc -I "$PROTO_DIR" --decode=parley.v1.HealthCheckResponse parley/v1/health.proto >"$work/health.txt"
grep -qx 'status: SERVING' "$work/health.txt" || fail "health: $(cat "$work/health.txt")"
grep -qx "version: \"$version\"" "$work/health.txt" || fail "health version: $(cat "$work/health.txt")"
grep -qx "commit: \"$commit\"" "$work/health.txt" || fail "health commit: $(cat "$work/health.txt")"
echo "ok Health/Check answers version $version, commit $commit"

# --- the generator on other trees ----------------------------------------------
gen() { cmake -DSRC="$1" -DOUT="$2" -DVERSION=9.8.7 -P "$src/cmake/version.cmake"; }
mkdir "$work/tarball"
gen "$work/tarball" "$work/v1.c"
grep -q 'parley_commit\[\] = "unknown";' "$work/v1.c" || fail "tree without .git: $(cat "$work/v1.c")"
grep -q 'parley_version\[\] = "9.8.7";' "$work/v1.c" || fail "version: $(cat "$work/v1.c")"
echo "ok a tree without .git says commit unknown"

repo=$work/repo
git init -q "$repo"
echo one >"$repo/f"
git -C "$repo" add f
git -C "$repo" -c user.name=t -c user.email=t@example.org commit -qm one
rhead=$(git -C "$repo" rev-parse --short=12 HEAD)
gen "$repo" "$work/v2.c"
grep -q "parley_commit\[\] = \"$rhead\";" "$work/v2.c" || fail "clean repo: $(cat "$work/v2.c")"
touch -d '2001-01-01' "$work/v2.c"
gen "$repo" "$work/v2.c"
[[ $(stat -c %Y "$work/v2.c") == $(date -d 2001-01-01 +%s) ]] ||
  fail "an unchanged version file was rewritten (would rebuild every time)"
echo two >"$repo/f"
gen "$repo" "$work/v2.c"
grep -q "parley_commit\[\] = \"$rhead-dirty\";" "$work/v2.c" || fail "changed repo: $(cat "$work/v2.c")"
echo "ok a checkout gives its commit, -dirty with changes, and the file changes only when they do"
