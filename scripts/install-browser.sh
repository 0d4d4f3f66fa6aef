#!/usr/bin/env bash
# Installs what the console's browser tests (api/tests/console_browser.rs) drive: Debian's
# chromium and chromedriver, and a Chinese font so pages (and their screenshots) show the
# labels; and axe-core (npm, pinned in api/tests/browser/package-lock.json), the accessibility
# audit the test runs in each page. Does nothing when they are there. Needs root (or sudo)
# when it must install Debian packages.
set -euo pipefail
cd "$(dirname "$0")/.."
# The browser tests run side by side and each calls this: one at a time checks and installs
# (two apt-gets at once fail on apt's lock), and the others then find everything there. The
# same lock as scripts/postgres.sh's apt-get.
exec 8>/tmp/caseflow-apt.lock
flock 8
[ -f api/tests/browser/node_modules/axe-core/axe.min.js ] ||
  (cd api/tests/browser && npm ci --silent --no-audit --no-fund >/dev/null)
need=()
command -v chromium >/dev/null || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
fc-list 2>/dev/null | grep -qi "wqy\|noto sans cjk" || need+=(fonts-wqy-microhei)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing ${need[*]} for the console's browser tests" >&2
$sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${need[@]}" >/dev/null 2>&1 || {
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${need[@]}" >/dev/null
}
