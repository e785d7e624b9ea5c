#!/usr/bin/env bash
# The Debian package, built by dpkg-buildpackage from a copy of the tree and
# unpacked into a fresh directory tree: parleyd and parley, their man
# pages, the systemd unit
# (parley user, /var/lib/parley, hardening), the sysusers entry and the
# defaults file; the unit passes systemd-analyze verify; the unpacked
# parleyd runs (--version names the commit, a backup of a store works). Run
# by .ci/run, not ctest: it compiles everything once more.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/parley-deb-XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# The tree as committed plus what is new, without build trees or data.
mkdir "$work/parley"
git -C "$src" ls-files -z --cached --others --exclude-standard |
  (cd "$src" && xargs -0 cp --parents -t "$work/parley")
commit=$(git -C "$src" rev-parse --short=12 HEAD)
(cd "$work/parley" && PARLEY_COMMIT=$commit dpkg-buildpackage -us -uc -b >"$work/build.log" 2>&1) ||
  { tail -n 40 "$work/build.log"; fail "dpkg-buildpackage failed"; }
deb=$(ls "$work"/parley_*.deb)
echo "ok built $(basename "$deb")"

dpkg-deb -I "$deb" >"$work/info"
grep -Eq '^ Depends:.*libnng1.*' "$work/info" || fail "no shared-library dependencies: $(cat "$work/info")"
grep -q 'systemd-sysusers' <(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./postinst) ||
  fail "postinst does not create the parley user"
root=$work/root
mkdir "$root"
dpkg -x "$deb" "$root"
for f in usr/bin/parleyd usr/bin/parley; do
  [[ -x $root/$f ]] || fail "$f missing: $(cd "$root" && find . -type f)"
done
unit=""
for u in usr/lib/systemd/system/parley.service lib/systemd/system/parley.service; do
  [[ -f $root/$u ]] && unit=$u
done
[[ -n $unit ]] || fail "no parley.service: $(cd "$root" && find . -type f)"
[[ -f $root/usr/lib/sysusers.d/parley.conf ]] || fail "no sysusers.d entry"
grep -q '^u parley ' "$root/usr/lib/sysusers.d/parley.conf" || fail "sysusers entry: $(cat "$root/usr/lib/sysusers.d/parley.conf")"
[[ -f $root/etc/default/parley ]] || fail "no /etc/default/parley"
for page in parleyd parley; do
  man=$root/usr/share/man/man1/$page.1.gz
  [[ -f $man ]] || fail "no man page for $page"
  zcat "$man" | grep -q "^\.TH ${page^^} 1" || fail "$page.1 is not a section 1 page"
  if command -v man >/dev/null; then
    warnings=$(man --warnings -l "$man" 2>&1 >/dev/null)
    [[ -z $warnings ]] || fail "man warns about $page.1: $warnings"
  fi
done
for want in 'User=parley' 'StateDirectory=parley' 'ExecStart=/usr/bin/parleyd --data-dir /var/lib/parley' \
            'NoNewPrivileges=yes' 'ProtectSystem=strict' 'CapabilityBoundingSet=' 'PrivateTmp=yes' \
            'SystemCallFilter=@system-service' 'UMask=0077'; do
  grep -qxF "$want" "$root/$unit" || fail "the unit lacks $want"
done
if command -v systemd-analyze >/dev/null; then
  # verify resolves ExecStart: point it at the unpacked binary.
  sed "s|/usr/bin/parleyd|$root/usr/bin/parleyd|" "$root/$unit" >"$work/parley.service"
  systemd-analyze verify "$work/parley.service" 2>"$work/verify" ||
    fail "systemd-analyze verify: $(cat "$work/verify")"
  # It exits 0 on settings it ignores: any line about the unit is a failure.
  ! grep -q 'parley.service:' "$work/verify" || fail "systemd-analyze verify: $(cat "$work/verify")"
fi
echo "ok the package holds parleyd, parley, their man pages, a hardened unit for the parley user, sysusers and defaults"

out=$("$root/usr/bin/parleyd" --version)
[[ $out == "parleyd "*" (commit $commit)" ]] || fail "unpacked parleyd --version: $out"
"$root/usr/bin/parley" --version | grep "(commit $commit)" >/dev/null || fail "unpacked parley --version"
echo "ok the unpacked binaries run: $out"
