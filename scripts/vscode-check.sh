#!/usr/bin/env bash
# The VS Code extension (editors/vscode/): installs its pinned packages, compiles the client
# with tsc, and tokenises every shipped .flow file with its TextMate grammar, checking the
# scopes of keywords, strings, durations and comments (test/tokenize.js). Called by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/../editors/vscode"
npm ci --silent --no-audit --no-fund >/dev/null
npm run --silent build
npm test --silent
