#!/usr/bin/env bash
# Google's protobuf runtime for Python (Debian's python3-protobuf), with
# code generated from proto/ by protoc at test time, calls parleyd over HTTP
# with Content-Type application/proto (the Connect protocol, unary): no
# Parley code on the client side.
source "$(dirname "$0")/lib_http.sh"

# The python3 on PATH, or else Debian's, which python3-protobuf installs
# into (a python3 earlier on PATH, such as pyenv's, does not see it).
py=""
for candidate in python3 /usr/bin/python3; do
  if "$candidate" -c 'import google.protobuf' 2>/dev/null; then py=$candidate; break; fi
done
[[ -n $py ]] || fail "no python3 with google.protobuf: python3-protobuf is not installed (.ci/deps)"
command -v protoc >/dev/null || fail "protoc is not installed (.ci/deps: protobuf-compiler)"
mkdir -p "$work/py"
(cd "$PROTO_DIR" && protoc --python_out="$work/py" parley/v1/*.proto) ||
  fail "protoc could not generate Python from proto/"

start_parleyd_http
PYTHONPATH="$work/py" "$py" "$(dirname "$0")/python_proto_test.py" "$http_url"
