# Sourced by the scripts here: builds caseflow and starts it on a free port with a fresh data
# directory, the repo's processes/ and rules/. Sets CASEFLOW_URL and stops the server on exit.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --quiet
CASEFLOW_TMP=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
CASEFLOW_URL="http://127.0.0.1:$PORT"
CASEFLOW_BIND="127.0.0.1:$PORT" CASEFLOW_DATA_DIR="$CASEFLOW_TMP/data" CASEFLOW_BACKUP_DIR="$CASEFLOW_TMP/backups" \
  CASEFLOW_FIELD_KEY_FILE="$CASEFLOW_TMP/field.key" ./target/release/caseflow serve \
  >"$CASEFLOW_TMP/server.log" 2>&1 &
CASEFLOW_PID=$!
trap 'kill $CASEFLOW_PID 2>/dev/null; wait $CASEFLOW_PID 2>/dev/null; rm -rf "$CASEFLOW_TMP"' EXIT
for _ in $(seq 100); do
  curl -sf "$CASEFLOW_URL/health" >/dev/null && break
  sleep 0.1
done
curl -sf "$CASEFLOW_URL/health" >/dev/null || { cat "$CASEFLOW_TMP/server.log"; exit 1; }
