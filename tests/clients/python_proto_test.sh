#!/usr/bin/env bash
# Google's protobuf runtime for Python (Debian's python3-protobuf), with
# code generated from proto/ by protoc at test time, calls parleyd over HTTP
# with Content-Type application/proto (the Connect protocol, unary): no
# Parley code on the client side.
source "$(dirname "$0")/lib_http.sh"
source "$(dirname "$0")/lib_python.sh"

need_python_protobuf
(cd "$PROTO_DIR" && protoc --python_out="$work/py" parley/v1/*.proto) ||
  fail "protoc could not generate Python from proto/"

start_parleyd_http
PYTHONPATH="$work/py" "$py" "$(dirname "$0")/python_proto_test.py" "$http_url"
