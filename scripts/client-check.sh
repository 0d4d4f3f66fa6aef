#!/usr/bin/env bash
# Clients generated from the served /openapi.json, as integrators generate them:
# - Python (openapi-python-client): every operation gets a function, and the client drives a
#   complaint case against the server (scripts/client_drive.py), its answers parsed into models;
# - TypeScript (openapi-typescript): every operation's 2xx body is a type, checked by tsc.
# Installs the generators (pinned) into .tools/ on first use. Called by .ci/run.
set -euo pipefail
source "$(dirname "$0")/serve-temp.sh"
if [ ! -x .tools/venv/bin/openapi-python-client ]; then
  [ -x .tools/venv/bin/python ] || python3 -m venv .tools/venv
  .tools/venv/bin/pip install --quiet 'openapi-python-client==0.26.1'
fi
if [ ! -x .tools/node/node_modules/.bin/openapi-typescript ]; then
  npm install --silent --no-audit --no-fund --prefix .tools/node 'openapi-typescript@7.13.0' 'typescript@5.9.3' >/dev/null
fi
curl -sf "$CASEFLOW_URL/openapi.json" > "$CASEFLOW_TMP/openapi.json"

# Python: one module per operation, then a case driven through it.
.tools/venv/bin/openapi-python-client generate --path "$CASEFLOW_TMP/openapi.json" \
  --output-path "$CASEFLOW_TMP/py" --overwrite >"$CASEFLOW_TMP/py-gen.log" 2>&1 \
  || { cat "$CASEFLOW_TMP/py-gen.log"; exit 1; }
# A part the generator could not read (a body in a media type it does not take) is left out of
# the client with only a warning: that is a failure here.
if grep -qE "WARNING parsing|Unsupported" "$CASEFLOW_TMP/py-gen.log"; then
  grep -A3 -E "WARNING parsing|Unsupported" "$CASEFLOW_TMP/py-gen.log"; exit 1
fi
.tools/venv/bin/python - "$CASEFLOW_TMP" <<'PY'
import json, pathlib, sys
tmp = pathlib.Path(sys.argv[1])
doc = json.loads((tmp / "openapi.json").read_text())
ops = {op["operationId"] for item in doc["paths"].values() for op in item.values()}
modules = {p.stem for p in (tmp / "py" / "caseflow_client" / "api").rglob("*.py") if p.stem != "__init__"}
missing = sorted(ops - modules)
untyped = sorted(p.stem for p in (tmp / "py" / "caseflow_client" / "api").rglob("*.py")
                 if "Response[Any]" in p.read_text())
assert not missing, f"operations the Python client lacks: {missing}"
assert not untyped, f"operations whose answers the Python client does not type: {untyped}"
print(f"python client: {len(ops)} operations, all generated and typed")
PY
.tools/venv/bin/pip install --quiet "$CASEFLOW_TMP/py"
.tools/venv/bin/python scripts/client_drive.py "$CASEFLOW_URL"

# TypeScript: no operation's 2xx body may be `never` (an operation that answers 204 has none
# to type).
.tools/node/node_modules/.bin/openapi-typescript "$CASEFLOW_TMP/openapi.json" -o "$CASEFLOW_TMP/api.d.ts" >/dev/null
cat > "$CASEFLOW_TMP/check.ts" <<'TS'
import type { operations } from "./api";
type Ok<R> = 200 extends keyof R ? R[200] : 201 extends keyof R ? R[201] : never;
type Body<O> = O extends { responses: infer R } ? (Ok<R> extends { content: infer C } ? C[keyof C] : never) : never;
type NoContent<O> = O extends { responses: infer R } ? (204 extends keyof R ? true : false) : false;
type Untyped = {
  [K in keyof operations]: NoContent<operations[K]> extends true ? never : [Body<operations[K]>] extends [never] ? K : never;
}[keyof operations];
// Fails to compile, naming the operation, if one has no typed 2xx body.
const untyped: [Untyped] extends [never] ? "none" : Untyped = "none";
export default untyped;
TS
.tools/node/node_modules/.bin/tsc --noEmit --strict --skipLibCheck "$CASEFLOW_TMP/check.ts"
echo "typescript client: every operation's 2xx body is typed"
