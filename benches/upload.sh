#!/usr/bin/env bash
# Benchmark: what loading a Worker upload in workerd costs the emulator. Uploads N small
# Workers (one Durable Object class each, in `containers`) one after another to
# `flaredock emulator`, with workerd and without it (static check), and prints the mean
# upload time; then, with workerd, the first request to one Worker (its workerd process
# starts), a second request, and that process's resident memory.
#   benches/upload.sh [N]      (needs curl; workerd found as the emulator finds it)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-50}
cargo build --release --quiet
fd=${CARGO_TARGET_DIR:-$PWD/target}/release/flaredock
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
account=023e105f4ecef8ad9ca31a8372d0c353
token=flaredock-emulator-token

cat >"$work/index.js" <<'JS'
export class Shop {
  constructor(ctx) { this.ctx = ctx; }
  async fetch() { const n = ((await this.ctx.storage.get("n")) || 0) + 1; await this.ctx.storage.put("n", n); return new Response(String(n)); }
}
export default { fetch(request, env) { return env.SHOP.get(env.SHOP.idFromName("a")).fetch(request); } };
JS
cat >"$work/meta.json" <<'JSON'
{"main_module": "index.js", "compatibility_date": "2026-04-01",
 "bindings": [{"type": "durable_object_namespace", "name": "SHOP", "class_name": "Shop"}],
 "migrations": {"new_tag": "v1", "new_sqlite_classes": ["Shop"]},
 "containers": [{"class_name": "Shop"}]}
JSON

run() { # label workerd-env
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  env $2 "$fd" emulator --listen "127.0.0.1:$port" --rate-limit 1000000/1 >/dev/null 2>&1 &
  local pid=$!
  until curl -s -o /dev/null "http://127.0.0.1:$port/v2/"; do sleep 0.05; done
  local start end
  start=$(date +%s%N)
  for i in $(seq 1 "$n"); do
    curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" \
      -F "metadata=@$work/meta.json;type=application/json" \
      -F "index.js=@$work/index.js;type=application/javascript+module" \
      -X PUT "http://127.0.0.1:$port/client/v4/accounts/$account/workers/scripts/w$i" | grep -q 200
  done
  end=$(date +%s%N)
  echo "$1: $n uploads, mean $(( (end - start) / n / 1000000 )) ms per upload"
  if [ "$1" = "workerd" ]; then
    curl -s -o /dev/null -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d '{"enabled": true}' \
      "http://127.0.0.1:$port/client/v4/accounts/$account/workers/scripts/w1/subdomain"
    local t
    t=$(curl -s -o /dev/null -w '%{time_total}' -H 'Host: w1.flaredock.workers.dev' "http://127.0.0.1:$port/")
    echo "first request (workerd starts): ${t} s"
    t=$(curl -s -o /dev/null -w '%{time_total}' -H 'Host: w1.flaredock.workers.dev' "http://127.0.0.1:$port/")
    echo "second request: ${t} s"
    local child
    child=$(cat /proc/$pid/task/*/children | tr ' ' '\n' | grep . | head -1)
    echo "workerd process RSS: $(awk '/VmRSS/ {print $2, $3}' /proc/$child/status); emulator RSS: $(awk '/VmRSS/ {print $2, $3}' /proc/$pid/status)"
  fi
  kill -INT "$pid"; wait "$pid" || true
}

run workerd ""
run static FLAREDOCK_WORKERD=/nonexistent
