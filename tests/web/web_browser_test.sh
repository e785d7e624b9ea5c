#!/usr/bin/env bash
# The chat page in a real browser (web_browser_test.py): Debian's chromium
# and chromedriver, driven by Debian's python3-selenium. Screenshots go to
# $BUILD_DIR/tests/web/screenshots.
set -euo pipefail
: "${PARLEYD:?path of parleyd}" "${BUILD_DIR:?the build directory}"
fail() { echo "FAIL: $*" >&2; exit 1; }

for tool in /usr/bin/chromium /usr/bin/chromedriver; do
  [[ -x $tool ]] || fail "$tool is missing: bash .ci/deps installs chromium and chromium-driver"
done
# The python3 on PATH, or else Debian's, which python3-selenium installs
# into (a python3 earlier on PATH, such as pyenv's, does not see it).
py=""
for candidate in python3 /usr/bin/python3; do
  if "$candidate" -c 'import selenium' 2>/dev/null; then py=$candidate; break; fi
done
[[ -n $py ]] || fail "no python3 with selenium: python3-selenium is not installed (.ci/deps)"
exec "$py" "$(dirname "$0")/web_browser_test.py" "$PARLEYD" "$BUILD_DIR/tests/web/screenshots"
