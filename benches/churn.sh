#!/usr/bin/env bash
# Benchmark: churn. N CloudflareContainers (1,000 by default) created, changed (a
# rollout each) and deleted, for R rounds, each round under new names, through one
# account's Reconciler and AccountView held for the whole run, as the controller holds
# them. The driver is the ignored test `churn` of tests/churn.rs, built with
# --release, in-process (the real API server at 10,000 objects is heavier than the
# machine); the emulator is a separate `flaredock emulator` process, so that the RSS
# printed is the driver's own. Prints per round: phase times, RSS now and peak, and
# the entries of every cache (flat across rounds is the goal).
#   benches/churn.sh [N] [ROUNDS]      (needs python3, curl)
# The emulator deletes at once here (CHURN_DELETE_DELAY_MS=0; Cloudflare's asynchronous
# delay is covered by tests/bounds.rs). 10,000 objects is the issue's size; delete
# passes share one application list sent after their DELETEs (AccountView::list_after),
# so a mass delete no longer lists the account once per object and pass.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
rounds=${2:-5}
source benches/lib.sh

start_emulator --rate-limit 1000000/1 --delete-delay-ms "${CHURN_DELETE_DELAY_MS:-0}"
python3 - "$n" "http://127.0.0.1:$port" <<'PY'
import json, sys, urllib.request
count, em = int(sys.argv[1]), sys.argv[2]
req = urllib.request.Request(f"{em}/__emulator/scripts/churn", method="PUT",
    data=json.dumps({"durable_object_classes": [f"C{i}" for i in range(count)], "with_namespaces": True}).encode(),
    headers={"content-type": "application/json"})
urllib.request.urlopen(req).read()
PY
CHURN_API_BASE=$base CHURN_TOKEN=$token CHURN_ACCOUNT=$account \
  CHURN_OBJECTS=$n CHURN_ROUNDS=$rounds \
  cargo test --release --quiet --test churn -- --ignored --nocapture churn 2>&1 \
  | grep --line-buffered -E '^(churn|round)|panicked|FAILED|error' || { echo "churn failed" >&2; exit 1; }
