#!/usr/bin/env bash
# Parley's proto3 JSON codec against Google's (Debian's python3-protobuf),
# both ways, on random messages of every type in proto/: json_test --dump
# writes them, Python's json_format must read and write the same JSON, and
# json_test --reencode must read what Python's json_format writes. No
# daemon: this checks the codec the HTTP face uses for application/json.
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/lib_python.sh"
: "${PROTO_DIR:?the proto/ directory}"

json_test=$BUILD_DIR/tests/unit/json_test
[[ -x $json_test ]] || fail "no json_test at $json_test"
need_python_protobuf
(cd "$PROTO_DIR" && protoc --python_out="$work/py" $(find parley -name '*.proto' | sort)) ||
  fail "protoc could not generate Python from proto/"

"$json_test" --dump 40 >"$work/dump" || fail "json_test --dump failed"
PYTHONPATH="$work/py" "$py" "$(dirname "$0")/json_interop_test.py" "$json_test" "$work/py" <"$work/dump"
