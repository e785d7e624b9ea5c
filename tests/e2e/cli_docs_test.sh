#!/usr/bin/env bash
# The parley(1) man page and the bash completion: the page renders without
# warnings and names every command `parley --help` lists (and so does the
# README); completion offers the commands, a command's options, and the
# room ids of the logged-in user's server.
source "$(dirname "$0")/lib.sh"
src=$(cd "$(dirname "$0")/../.." && pwd)
page=$src/client/parley.1
completion=$src/client/parley.bash-completion

LC_ALL=C.UTF-8 MANWIDTH=80 groff -man -Tutf8 -ww -z "$page" 2>"$work/warn" || fail "groff failed"
[[ ! -s $work/warn ]] || fail "man page warnings: $(cat "$work/warn")"
"$PARLEY" --help >"$work/help"
commands=$(sed -n '/^Commands:/,/^$/p' "$work/help" | awk 'NF && !/^Commands:/ {print $1}')
[[ $(wc -w <<<"$commands") -ge 14 ]] || fail "commands from --help: $commands"
for c in $commands; do
  grep -q "^\.BI\? \"\?$c\b" "$page" || grep -q "^\.B $c$" "$page" || fail "the man page lacks '$c'"
  grep -q "\`$c\`" "$src/README.md" || fail "the README lacks '$c'"
done
for c in /register /login /rooms /create /join /leave /who /history /logout /quit /help \
  /msg /query /me /topic /edit /delete /kick /ban /unban /invite /op /nick /passwd; do
  grep -q -- "$c" "$page" || fail "the man page lacks $c"
  grep -q -- "\`$c" "$src/README.md" || fail "the README lacks $c"
done
ok "man page renders and names every command"

start_parleyd
signup alice
expect 0 alice create lobby
expect 0 alice create lounge
# complete WORDS...: what completing the last word offers, as alice.
complete_words() {
  XDG_CONFIG_HOME="$work/home-alice" PATH="$(dirname "$PARLEY"):$PATH" bash -c '
    source "$1"; shift
    COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
    _parley; printf "%s\n" "${COMPREPLY[@]}"' _ "$completion" "$@" | grep . | sort | tr '\n' ' ' || true
}
[[ $(complete_words parley hi) == "history " ]] || fail "command: $(complete_words parley hi)"
[[ $(complete_words parley wh) == "whoami who " || $(complete_words parley wh) == "who whoami " ]] ||
  fail "commands: $(complete_words parley wh)"
[[ $(complete_words parley history --a) == "--after --auth " ]] || fail "options: $(complete_words parley history --a)"
[[ $(complete_words parley join lo) == "lobby lounge " ]] || fail "rooms: $(complete_words parley join lo)"
[[ $(complete_words parley --server x:1 send lou) == "lounge " ]] || fail "after an option: $(complete_words parley --server x:1 send lou)"
[[ $(complete_words parley health me) == "messaging " ]] || fail "services"
[[ $(complete_words parley history -n 5 lo) == "lobby lounge " ]] || fail "after -n N: $(complete_words parley history -n 5 lo)"
[[ -z $(complete_words parley history lobby lo) ]] || fail "history takes one room"
[[ $(complete_words parley del) == "delete-account " ]] || fail "delete-account: $(complete_words parley del)"
[[ $(complete_words parley delete-account --y) == "--yes " ]] || fail "delete-account --yes"
ok "bash completion"
ok "cli docs test"
