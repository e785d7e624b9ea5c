#!/usr/bin/env bash
# `parley tail` follows a room while parleyd is killed (-9) and restarted
# twice mid-stream, and messages keep being sent (some of them while the
# daemon is down). The tail must show every message exactly once, in order.
source "$(dirname "$0")/lib.sh"
start_parleyd

N=45
signup alice
signup bob
expect 0 alice create stream
expect 0 alice join stream
expect 0 bob join stream

spawn bob tail stream -n 1 --json >"$work/tail.out" 2>"$work/tail.err"
tail_pid=$spawned
wait_for "tail to start" 10 grep -q '"seq"' "$work/tail.out"

count() { grep -c '"type":"message"' "$work/tail.out" || true; }
at_least() { (($(count) >= $1)); }

# The sender: one `parley send` per message, each allowed 30 s, so a send
# that meets a dead daemon waits for it (and retries with the same id).
sender() {
  for i in $(seq 1 "$N"); do
    as alice send stream --timeout 30000 "m$i" || { echo "send m$i failed" >&2; return 1; }
    sleep 0.02
  done
}
sender 2>"$work/sender.err" &
sender_pid=$!
bg_pids+=("$sender_pid")

for round in 1 2; do
  wait_for "tail to show $((round * N / 3)) messages" 30 at_least $((round * N / 3))
  kill9_parleyd
  echo "killed parleyd after $(count) messages"
  sleep 0.3   # some sends now meet a dead daemon
  start_parleyd
done

wait "$sender_pid" || fail "the sender failed: $(cat "$work/sender.err")"
wait_for "tail to show all $N messages" 30 at_least "$N"
# A duplicate would show up now, if one were coming.
sleep 0.5
kill -TERM "$tail_pid"
wait "$tail_pid" || fail "tail exited $?: $(cat "$work/tail.err")"

python3 - "$work/tail.out" "$N" <<'PY' || fail "tail output is wrong"
import collections, json, sys
evs = [json.loads(l) for l in open(sys.argv[1])]
n = int(sys.argv[2])
texts = [e["text"] for e in evs if e["type"] == "message" and e["text"].startswith("m")]
counts = collections.Counter(texts)
missing = [f"m{i}" for i in range(1, n + 1) if counts[f"m{i}"] == 0]
twice = [t for t, c in counts.items() if c > 1]
assert not missing and not twice, f"missing {missing}, repeated {twice}"
assert texts == [f"m{i}" for i in range(1, n + 1)], f"out of order: {texts}"
seqs = [e["seq"] for e in evs if e["seq"]]
assert seqs == sorted(seqs) and len(seqs) == len(set(seqs)), f"seqs {seqs}"
assert all(b - a == 1 for a, b in zip(seqs, seqs[1:])), f"gap in seqs {seqs}"
print(f"{len(texts)} messages, each once, in order")
PY
grep -q "connection lost" "$work/tail.err" || echo "(tail never noticed the restarts)"
ok "cli tail restart test"
