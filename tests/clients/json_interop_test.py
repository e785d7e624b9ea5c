"""Parley's proto3 JSON codec (rpc/json.c) against Google's (python3-protobuf's
json_format), both ways, on random messages of every type in proto/.

stdin: lines "<full name> <packed hex> <Parley's JSON>" from `json_test --dump`.
argv[1]: the json_test binary, run with --reencode on Google's JSON.
"""
import importlib
import json
import pathlib
import random
import subprocess
import sys

from google.protobuf import json_format, symbol_database

gen = pathlib.Path(sys.argv[2])
for f in sorted(gen.rglob("*_pb2.py")):
    importlib.import_module(".".join(f.relative_to(gen).with_suffix("").parts))
db = symbol_database.Default()


def fail(what):
    print("FAIL:", what, file=sys.stderr)
    sys.exit(1)


cases = []
for line in sys.stdin:
    name, hexed, ours = line.rstrip("\n").split(" ", 2)
    msg = db.GetSymbol(name)()
    msg.ParseFromString(bytes.fromhex(hexed))
    google = json_format.MessageToDict(msg)
    if json.loads(ours) != google:
        fail(f"{name}: Parley's JSON differs from Google's\n  parley {ours}\n  google {json.dumps(google)}")
    try:
        back = json_format.Parse(ours, type(msg)())  # strict: unknown fields are errors
    except json_format.ParseError as e:
        fail(f"{name}: Google's parser refuses Parley's JSON: {e}\n  {ours}")
    if back != msg:
        fail(f"{name}: Google read Parley's JSON as another message\n  {ours}")
    cases.append((name, msg, google))
if len(cases) < 1000:
    fail(f"only {len(cases)} messages dumped")
print(f"ok Google's json_format reads and writes what Parley writes ({len(cases)} messages)")

# The other way: Google's JSON (camelCase or, at random, the proto names)
# decoded by Parley and encoded again must be what Google writes.
rnd = random.Random(7)
lines = "".join(
    f"{name} {json.dumps(json_format.MessageToDict(msg, preserving_proto_field_name=rnd.random() < 0.5))}\n"
    for name, msg, _ in cases)
out = subprocess.run([sys.argv[1], "--reencode"], input=lines, capture_output=True, text=True)
if out.returncode != 0:
    fail(f"json_test --reencode exited {out.returncode}: {out.stderr}")
answers = out.stdout.splitlines()
if len(answers) != len(cases):
    fail(f"{len(answers)} answers for {len(cases)} messages")
for (name, msg, google), answer, sent in zip(cases, answers, lines.splitlines()):
    if answer.startswith("ERROR "):
        fail(f"{name}: Parley refuses Google's JSON: {answer[6:]}\n  {sent}")
    if json.loads(answer) != google:
        fail(f"{name}: Parley read Google's JSON as another message\n  sent  {sent}\n  got   {answer}")
print(f"ok Parley reads what Google's json_format writes ({len(cases)} messages)")
print("json_interop_test: 2 passed, 0 failed")
