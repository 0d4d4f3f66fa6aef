#!/usr/bin/env bash
# HTTP load benchmark from a second process: wrk starts complaint cases (POST /instances)
# against a fresh server with durable (fsync) acknowledgements. Installs wrk from Debian's
# packages if missing. Prints wrk's figures (requests/s, latency percentiles) for each level.
#
#   scripts/bench-http.sh [seconds per run, default 20] [connections..., default 16 32 64]
set -euo pipefail
SECONDS_PER_RUN=${1:-20}
shift || true
LEVELS=${*:-16 32 64}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
source "$(dirname "$0")/serve-temp.sh"
echo "caseflow $(git rev-parse --short HEAD), durability ${CASEFLOW_DURABILITY:-$(grep -E "^durability" caseflow.toml | cut -d\" -f2)}, $(nproc) cores"
for c in $LEVELS; do
  echo "== $c connections, ${SECONDS_PER_RUN}s"
  wrk -t2 -c"$c" -d"${SECONDS_PER_RUN}s" --latency -s scripts/wrk-start.lua "$CASEFLOW_URL" | \
    grep -E 'Requests/sec|50%|90%|99%|Non-2xx|errors'
done
