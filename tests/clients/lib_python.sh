# lib_python.sh — Google's protobuf runtime for Python (Debian's
# python3-protobuf) for the tests that run Python against code protoc
# generates from proto/ at test time. Needs lib.sh (fail, $work) first.

# need_python_protobuf: sets $py to the python3 on PATH, or else Debian's,
# which python3-protobuf installs into (a python3 earlier on PATH, such as
# pyenv's, does not see it); checks for protoc; makes $work/py for its output.
# Fails the test when either is missing.
need_python_protobuf() {
  py=""
  for candidate in python3 /usr/bin/python3; do
    if "$candidate" -c 'import google.protobuf' 2>/dev/null; then py=$candidate; break; fi
  done
  [[ -n $py ]] || fail "no python3 with google.protobuf: python3-protobuf is not installed (.ci/deps)"
  command -v protoc >/dev/null || fail "protoc is not installed (.ci/deps: protobuf-compiler)"
  mkdir -p "$work/py"
}
