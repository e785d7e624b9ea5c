#!/usr/bin/env bash
# parleyd backup / restore as an operator uses them: a backup taken while
# four senders keep writing holds every message acknowledged before it
# began, as a gap-free prefix of each room (one instant of the store), and
# every account; restored into a fresh directory, parleyd serves it, the
# passwords log in and the tokens issued before the backup still work. Also
# the refusals: a non-empty destination, a non-empty data directory, a
# directory that is no backup or an unfinished one.
source "$(dirname "$0")/../e2e/lib.sh"
need_services auth rooms history messaging

users=(alice bob carol)
rooms=(r1 r2)

start_parleyd
for u in "${users[@]}"; do signup "$u"; done
as alice create r1 >/dev/null
as alice create r2 >/dev/null
for u in alice bob; do for r in "${rooms[@]}"; do as "$u" join "$r" >/dev/null; done; done
as carol join r1 >/dev/null

# all_events ROOM OUT: the room's whole timeline in seq order, one JSON
# object per line (pages of 500, from the newest back).
all_events() {
  local room=$1 out=$2 before=""
  : >"$out.rev"
  while :; do
    as alice history "$room" --json -n 500 ${before:+--before "$before"} >"$work/page"
    tac "$work/page" >>"$out.rev"
    (($(wc -l <"$work/page") == 500)) || break
    before=$(head -n 1 "$work/page" | python3 -c 'import json,sys; print(json.load(sys.stdin)["seq"])')
    ((before > 1)) || break
  done
  tac "$out.rev" >"$out"
}

# --- senders ---------------------------------------------------------------------
# Each appends the text of every message acknowledged to its file, after the ack.
sender() {
  local who=$1 room=$2 n=0
  while [[ ! -e $work/stop ]]; do
    n=$((n + 1))
    as "$who" send "$room" "$who-$room-$n" >/dev/null 2>>"$work/send-errors" &&
      echo "$who-$room-$n" >>"$work/acked-$who-$room"
  done
}
senders=()
for u in alice bob; do
  for r in "${rooms[@]}"; do
    : >"$work/acked-$u-$r"
    sender "$u" "$r" &
    senders+=($!)
    bg_pids+=($!)
  done
done
# Load by construction: every sender has had 25 sends acknowledged before
# the backup starts, and keeps sending through it.
for u in alice bob; do for r in "${rooms[@]}"; do
  wait_for "25 acks for $u in $r" 60 bash -c "(( \$(wc -l <'$work/acked-$u-$r') >= 25 ))"
done; done

cat "$work"/acked-* | sort >"$work/acked-before"
"$PARLEYD" backup --data-dir "$work/data" "$work/backups/one" >"$work/out" 2>"$work/err" ||
  fail "backup: $(cat "$work/err")"
grep -q "^backed up $work/data to $work/backups/one$" "$work/out" || fail "backup said: $(cat "$work/out")"
# Writes go on after it: every sender is acknowledged once more, then all stop.
for f in "$work"/acked-alice-* "$work"/acked-bob-*; do
  base=$(wc -l <"$f")
  wait_for "an ack after the backup in $f" 30 bash -c "(( \$(wc -l <'$f') > $base ))"
done
touch "$work/stop"
for p in "${senders[@]}"; do wait "$p"; done
ok "backup under write load ($(wc -l <"$work/acked-before") acked sends before it began)"

[[ $(stat -c %a "$work/backups/one") == 700 ]] || fail "backup dir mode $(stat -c %a "$work/backups/one")"
for f in data.mdb auth.key parley-backup; do
  [[ -f $work/backups/one/$f ]] || fail "backup lacks $f: $(ls "$work/backups/one")"
done
for f in "$work"/backups/one/*; do
  [[ $(stat -c %a "$f") == 600 ]] || fail "$f has mode $(stat -c %a "$f")"
done
[[ ! -e $work/backups/one/lock.mdb ]] || fail "the backup carries a lock file"
cmp -s "$work/data/auth.key" "$work/backups/one/auth.key" || fail "auth.key differs"
ok "backup files: dir 0700, files 0600, auth.key included"

expect_fail() { # expect_fail NEEDLE COMMAND...: must exit 1 with NEEDLE on stderr
  local needle=$1 rc=0
  shift
  "$@" >"$work/out" 2>"$work/err" || rc=$?
  ((rc == 1)) || fail "$* exited $rc: $(cat "$work/out" "$work/err")"
  grep -qF -- "$needle" "$work/err" || fail "$*: stderr lacks '$needle': $(cat "$work/err")"
}
expect_fail "is not empty" "$PARLEYD" backup --data-dir "$work/data" "$work/backups/one"
expect_fail "not found" "$PARLEYD" backup --data-dir "$work/nothing-here" "$work/backups/two"
[[ ! -e $work/backups/two ]] || fail "a failed backup left $work/backups/two"
ok "backup refuses a non-empty destination and a directory with no store"

# The live timelines, then the daemon goes.
for r in "${rooms[@]}"; do all_events "$r" "$work/live-$r"; done
for u in "${users[@]}"; do cp "$work/home-$u/parley/session" "$work/session-$u"; done
stop_parleyd
mv "$work/data" "$work/live-data"

# --- restore -----------------------------------------------------------------
mkdir -p "$work/not-empty" && touch "$work/not-empty/x"
expect_fail "is not empty" "$PARLEYD" restore "$work/backups/one" --data-dir "$work/not-empty"
mkdir -p "$work/half" && cp "$work/backups/one/data.mdb" "$work/half/"
expect_fail "unfinished" "$PARLEYD" restore "$work/half" --data-dir "$work/fresh"
[[ ! -e $work/fresh ]] || fail "a refused restore created $work/fresh"
ok "restore refuses a non-empty directory and an unfinished backup"

chmod -R a-w "$work/backups/one"
"$PARLEYD" restore "$work/backups/one" --data-dir "$work/data" >"$work/out" 2>"$work/err" ||
  fail "restore: $(cat "$work/err")"
chmod -R u+w "$work/backups/one"
grep -q "^restored $work/backups/one into $work/data$" "$work/out" || fail "restore said: $(cat "$work/out")"
[[ $(stat -c %a "$work/data") == 700 ]] || fail "restored dir mode $(stat -c %a "$work/data")"
[[ ! -e $work/data/parley-backup ]] || fail "the manifest was restored into the store"
ok "restore from a read-only backup into a fresh directory"

start_parleyd
# Old tokens: the saved sessions, untouched since the backup.
for u in "${users[@]}"; do
  cmp -s "$work/home-$u/parley/session" "$work/session-$u" || fail "session of $u changed"
  expect 0 "$u" rooms --mine
done
ok "tokens issued before the backup are valid after the restore"

for r in "${rooms[@]}"; do all_events "$r" "$work/restored-$r"; done
python3 - "$work" "${rooms[@]}" <<'PY' || fail "restored timelines"
import json, sys
work, rooms = sys.argv[1], sys.argv[2:]
acked_before = set(open(f"{work}/acked-before").read().split())
restored_texts = set()
for room in rooms:
    live = [json.loads(l) for l in open(f"{work}/live-{room}")]
    rest = [json.loads(l) for l in open(f"{work}/restored-{room}")]
    seqs = [e["seq"] for e in rest]
    assert seqs == list(range(1, len(rest) + 1)), f"{room}: restored seqs not 1..n: {seqs[:5]}...{seqs[-5:]}"
    # One instant of the store: a prefix of the live timeline, event for event.
    assert rest == live[:len(rest)], f"{room}: restored timeline is not a prefix of the live one"
    assert len(rest) < len(live), f"{room}: nothing written after the backup ({len(rest)} events)"
    restored_texts |= {e["text"] for e in rest if e["type"] == "message"}
missing = acked_before - restored_texts
assert not missing, f"{len(missing)} messages acked before the backup are missing: {sorted(missing)[:5]}"
print(f"ok every one of {len(acked_before)} messages acked before the backup is restored, "
      f"each room a gap-free prefix of the live timeline")
PY

for u in "${users[@]}"; do
  echo "pw-$u-secret" | expect 0 "$u" login "$u" --password-stdin
done
echo "wrong-password" | expect_err 1 UNAUTHENTICATED alice login alice --password-stdin
expect 0 alice send r1 "after the restore"
expect 0 bob history r1 -n 1
out_has "alice: after the restore$"
ok "every account logs in on the restored store, and it takes new messages"
