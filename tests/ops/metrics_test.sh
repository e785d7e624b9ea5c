#!/usr/bin/env bash
# GET /metrics after real traffic, on the HTTP face and on --metrics-listen:
# the text parses as Prometheus's format (HELP and TYPE before samples, no
# series twice, histogram buckets cumulative with _count = +Inf), and the
# numbers are those of the traffic: calls by service, method and code,
# latencies, sends, commits, sends per commit, deliveries, refilled
# events, open sessions, login failures, a limit hit, LMDB map size and use.
source "$(dirname "$0")/../e2e/lib.sh"
need_services auth rooms history messaging

mport=$(free_port)
start_parleyd --metrics-listen "http://127.0.0.1:$mport" --max-user-sessions 1
signup alice
signup bob
echo "not-bobs-password" | expect_err 1 UNAUTHENTICATED bob login bob --password-stdin
expect 0 alice create lobby
expect 0 alice join lobby
expect 0 bob join lobby
sends=12
for i in $(seq 1 5); do expect 0 alice send lobby "early $i"; done

# bob follows the room from the start: the first events come out of LMDB.
spawn bob tail lobby --since 0 --json
tail_pid=$spawned
for i in $(seq 6 $sends); do expect 0 alice send lobby "late $i"; done
wait_for "bob's session open" 20 bash -c "curl -fs http://127.0.0.1:$mport/metrics | grep -qx 'parley_messaging_sessions_open 1'"
# A second session of bob's is over --max-user-sessions 1.
expect_err 1 RESOURCE_EXHAUSTED bob tail lobby --since 0
# Deliveries reach bob's tail: wait until all sends are counted as delivered.
wait_for "deliveries" 20 bash -c "curl -fs http://127.0.0.1:$mport/metrics | awk '\$1 == \"parley_messaging_deliveries_total\" && \$2 >= $sends { ok = 1 } END { exit !ok }'"

curl -fsS -D "$work/headers" "http://127.0.0.1:$mport/metrics" >"$work/metrics.txt"
curl -fsS "$http_url/metrics" >"$work/face.txt"
grep -qi '^content-type: text/plain; version=0.0.4; charset=utf-8' "$work/headers" ||
  fail "content type: $(cat "$work/headers")"
curl -fsS "http://127.0.0.1:$mport/healthz" >"$work/healthz"
grep -q '"version":"[0-9.]*","commit":"[0-9a-z-]*"' "$work/healthz" || fail "healthz: $(cat "$work/healthz")"
kill -INT "$tail_pid"
wait "$tail_pid" || true
# The tail closed its session on the way out.
wait_for "no session open" 20 bash -c "curl -fs http://127.0.0.1:$mport/metrics | grep -qx 'parley_messaging_sessions_open 0'"

python3 - "$work/metrics.txt" "$work/face.txt" "$sends" <<'PY' || fail "metrics"
import math, re, sys

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
SAMPLE = re.compile(rf"^({NAME})(?:\{{((?:[a-zA-Z_][a-zA-Z0-9_]*=\"(?:[^\"\\\n]|\\.)*\",?)*)\}})? (\S+)$")

def parse(path):
    types, helps, series = {}, {}, {}
    for n, line in enumerate(open(path), 1):
        line = line.rstrip("\n")
        if line.startswith("# HELP "):
            name, text = line[7:].split(" ", 1)
            assert name not in helps, f"line {n}: HELP twice for {name}"
            helps[name] = text
        elif line.startswith("# TYPE "):
            name, kind = line[7:].split(" ")
            assert kind in ("counter", "gauge", "histogram"), f"line {n}: type {kind}"
            assert name not in types, f"line {n}: TYPE twice for {name}"
            types[name] = kind
        else:
            m = SAMPLE.match(line)
            assert m, f"line {n}: not a sample: {line!r}"
            name, labels, value = m.group(1), m.group(2) or "", m.group(3)
            family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
            assert family in types, f"line {n}: {name} before its TYPE"
            v = float(value)
            assert not math.isnan(v), f"line {n}: NaN"
            key = (name, tuple(sorted(re.findall(r'([a-zA-Z_]+)="([^"]*)"', labels))))
            assert key not in series, f"line {n}: series twice: {key}"
            series[key] = v
    return types, series

types, s = parse(sys.argv[1])
face_types, _ = parse(sys.argv[2])
assert face_types == types, "the HTTP face and --metrics-listen show different metrics"
sends = int(sys.argv[3])

def get(name, **labels):
    return s.get((name, tuple(sorted(labels.items()))))

# Histograms: buckets cumulative, _count = the +Inf bucket.
for name, kind in types.items():
    if kind != "histogram":
        continue
    groups = {}
    for (n, labels), v in s.items():
        if n == name + "_bucket":
            le = dict(labels)["le"]
            rest = tuple(l for l in labels if l[0] != "le")
            groups.setdefault(rest, []).append((math.inf if le == "+Inf" else float(le), v))
    assert groups, f"{name}: no buckets"
    for rest, buckets in groups.items():
        buckets.sort()
        counts = [v for _, v in buckets]
        assert counts == sorted(counts), f"{name}{rest}: buckets not cumulative {counts}"
        assert buckets[-1][0] == math.inf and s[(name + "_count", rest)] == counts[-1], name

calls = "parley_rpc_calls_total"
login = "/parley.v1.Auth/Login"
assert get(calls, service="auth", method=login, code="OK") == 2, get(calls, service="auth", method=login, code="OK")
assert get(calls, service="auth", method=login, code="UNAUTHENTICATED") == 1
assert get(calls, service="messaging", method="/parley.v1.Messaging/Send", code="OK") == sends
# At least the refused second tail (a busy machine may make bob's own tail
# reopen its session, and be refused by the same cap).
assert get(calls, service="messaging", method="/parley.v1.Messaging/Open", code="RESOURCE_EXHAUSTED") >= 1
assert get("parley_rpc_call_duration_seconds_count", service="messaging",
           method="/parley.v1.Messaging/Send") == sends
assert get("parley_rpc_call_duration_seconds_sum", service="auth", method=login) > 0
assert get("parley_auth_login_failures_total") == 1
assert get("parley_limits_hit_total", limit="user_sessions") >= 1
assert get("parley_messaging_sends_total") == sends, get("parley_messaging_sends_total")
commits = get("parley_messaging_commits_total")
assert 1 <= commits, commits
assert get("parley_messaging_sends_per_commit_sum") == sends
assert 1 <= get("parley_messaging_sends_per_commit_count") <= sends
assert get("parley_messaging_commit_duration_seconds_count") == commits
assert get("parley_messaging_deliveries_total") >= sends
assert get("parley_messaging_events_refilled_total") >= 5, get("parley_messaging_events_refilled_total")
assert get("parley_messaging_sessions_open") in (0, 1)  # the cap is 1; 1 was seen above
assert get("parley_lmdb_map_size_bytes") == 1024 * 1024 * 1024, get("parley_lmdb_map_size_bytes")
assert 0 < get("parley_lmdb_used_bytes") < get("parley_lmdb_map_size_bytes")
print(f"ok {len(s)} series in {len(types)} families parse; {sends} sends in {int(commits)} commits, "
      f"{int(get('parley_messaging_deliveries_total'))} deliveries, "
      f"{int(get('parley_messaging_events_refilled_total'))} refilled from LMDB")
PY
ok "metrics after traffic on the HTTP face and --metrics-listen"
