#!/usr/bin/env bash
# The reference Connect client for TypeScript, in Node.js, against parleyd's
# HTTP face: code generated from proto/ at test time by protoc (Debian's)
# with @bufbuild/protoc-gen-es; unary calls in JSON and binary, and
# Messaging.Subscribe streams read while two clients send. The npm packages
# are those of tests/connect-node/package-lock.json (.ci/deps runs npm ci).
source "$(dirname "$0")/lib_http.sh"

node_dir=$(cd "$(dirname "$0")/../connect-node" && pwd)
command -v node >/dev/null || fail "node is not installed (.ci/deps: nodejs)"
command -v protoc >/dev/null || fail "protoc is not installed (.ci/deps: protobuf-compiler)"
[[ -x $node_dir/node_modules/.bin/protoc-gen-es && -d $node_dir/node_modules/@connectrpc/connect-node ]] ||
  fail "npm packages missing in $node_dir: run .ci/deps (npm ci there)"

# Generated ES modules import @bufbuild/protobuf: they resolve it through a
# node_modules link next to them.
mkdir -p "$work/gen"
ln -s "$node_dir/node_modules" "$work/gen/node_modules"
(cd "$PROTO_DIR" && protoc --plugin=protoc-gen-es="$node_dir/node_modules/.bin/protoc-gen-es" \
  --es_out="$work/gen" --es_opt=target=js,import_extension=js parley/v1/*.proto) ||
  fail "protoc-gen-es could not generate code from proto/"
[[ -f $work/gen/parley/v1/messaging_pb.js ]] || fail "no messaging_pb.js generated"

start_parleyd_http
node "$node_dir/connect_test.mjs" "$http_url" "$work/gen"
