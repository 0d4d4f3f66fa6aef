#!/usr/bin/env bash
# The test suite: installs what its tests need and is missing (Debian's chromium and
# chromedriver for the console's browser tests), then runs every crate's tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-browser.sh
cargo test --workspace "$@"
