#!/usr/bin/env bash
# Checks of the HTTP API against its own /openapi.json: the document validates
# (openapi-spec-validator) and lints clean with Redocly's recommended rules (no errors), and
# schemathesis finds no 5xx, every status
# documented, every error body a Problem, content types as declared.
# (`/events` is a stream that never ends: the router tests cover it.)
# Installs schemathesis and @redocly/cli (pinned) into .tools/ on first use. Called by .ci/run.
#
#   scripts/api-check.sh [max examples per operation, default 20]
set -euo pipefail
EXAMPLES=${1:-20}
source "$(dirname "$0")/serve-temp.sh"
if [ ! -x .tools/venv/bin/schemathesis ]; then
  python3 -m venv .tools/venv
  .tools/venv/bin/pip install --quiet 'schemathesis==4.32.5'
fi
if [ ! -x .tools/venv/bin/openapi-spec-validator ]; then
  .tools/venv/bin/pip install --quiet 'openapi-spec-validator==0.7.1'
fi
if [ ! -x .tools/node/node_modules/.bin/redocly ]; then
  npm install --silent --no-audit --no-fund --prefix .tools/node '@redocly/cli@2.77.0' >/dev/null
fi
curl -sf "$CASEFLOW_URL/openapi.json" > "$CASEFLOW_TMP/openapi.json"
.tools/venv/bin/openapi-spec-validator "$CASEFLOW_TMP/openapi.json"
.tools/node/node_modules/.bin/redocly lint "$CASEFLOW_TMP/openapi.json" --format=summary 2>&1 | grep -vE '^ *[║╔╚]' | grep -v '^$'
# Some data to find: a complaint case (instance 1, task 1-…) and its business key.
curl -sf -X POST "$CASEFLOW_URL/instances" -H 'Authorization: Bearer dev-crm' -H 'Content-Type: application/json' \
  -d '{"process":"complaint","fields":{"customer":"A","contact":"1","content":"c","urgency":"high"}}' >/dev/null
.tools/venv/bin/schemathesis run "$CASEFLOW_URL/openapi.json" \
  -H 'Authorization: Bearer dev-admin' \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing --max-examples "$EXAMPLES" --workers 1 --seed 1 \
  --exclude-path /events --request-timeout 5 --no-color
grep -q panicked "$CASEFLOW_TMP/server.log" && { echo "the server panicked:"; grep -A5 panicked "$CASEFLOW_TMP/server.log"; exit 1; }
echo "api-check: no server error, every response as documented"
