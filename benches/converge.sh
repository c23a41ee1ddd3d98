#!/usr/bin/env bash
# Benchmark: converge N CloudflareContainers with `flaredock apply -f DIR` against the
# emulator (a separate process), the image already in its registry, so that the control
# plane is measured. Prints API calls, writes, 429s, wall time and peak RSS for:
#   create, re-apply (unchanged), create with 50 ms latency per call, create under a
#   sliding limit of 600 requests per 30 s, and create of 10,000 objects.
#   benches/converge.sh [N] [BIG_N]      (needs python3, /usr/bin/time, curl)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
big=${2:-10000}
cargo build --release --quiet
fd=$PWD/target/release/flaredock
work=$(mktemp -d)
em_pid=
cleanup() { [ -n "$em_pid" ] && kill "$em_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
token=bench-token
account=023e105f4ecef8ad9ca31a8372d0c353

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_emulator() { # extra emulator flags...
  [ -n "$em_pid" ] && kill "$em_pid" 2>/dev/null && wait "$em_pid" 2>/dev/null || true
  port=$(free_port)
  "$fd" emulator --listen "127.0.0.1:$port" --api-token "$token" --rollout-step-ms 1 "$@" >/dev/null 2>&1 &
  em_pid=$!
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/__emulator/requests" && break; sleep 0.05; done
  base="http://127.0.0.1:$port/client/v4"
}
manifests() { # count dir
  rm -rf "$2"; mkdir -p "$2"
  python3 - "$1" "$2" "http://127.0.0.1:$port" <<'PY'
import json, sys, urllib.request
count, out, em = int(sys.argv[1]), sys.argv[2], sys.argv[3]
classes = [f"C{i}" for i in range(count)]
req = urllib.request.Request(f"{em}/__emulator/scripts/bench", method="PUT",
    data=json.dumps({"durable_object_classes": classes, "with_namespaces": True}).encode(),
    headers={"content-type": "application/json"})
urllib.request.urlopen(req).read()
per_file = 100
for f in range(0, count, per_file):
    docs = []
    for i in range(f, min(f + per_file, count)):
        docs.append(f"""apiVersion: flaredock.dev/v1alpha1
kind: CloudflareContainer
metadata: {{name: app-{i}, namespace: bench}}
spec:
  className: C{i}
  image: {{reference: 'hello:v1'}}
  maxInstances: 3
  env: {{INDEX: '{i}'}}
  worker: {{scriptName: bench}}
""")
    open(f"{out}/objects-{f:05d}.yaml", "w").write("---\n".join(docs))
PY
}
report() { # label
  python3 - "$1" "http://127.0.0.1:$port" "$work/time" "$2" "$(cat "$work/ready")" <<'PY'
import json, sys, urllib.request
label, em, timefile, objects, ready = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
log = json.load(urllib.request.urlopen(f"{em}/__emulator/requests"))
calls = len(log); writes = sum(1 for r in log if r["method"] != "GET" and not r["path"].endswith("/credentials"))
limited = sum(1 for r in log if r["status"] == 429)
wall, rss = open(timefile).read().split()
print(f"{label:34} objects={objects:6} ready={ready:6} calls={calls:6} ({calls/objects:.3f}/object) writes={writes:6} 429s={limited} wall={float(wall):7.2f}s peakRSS={int(rss)/1024:6.1f}MiB")
urllib.request.urlopen(urllib.request.Request(f"{em}/__emulator/requests", method="DELETE")).read()
PY
}
apply() { # dir, extra flags
  local dir=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  CLOUDFLARE_API_TOKEN=$token CLOUDFLARE_ACCOUNT_ID=$account CLOUDFLARE_API_BASE_URL=$base \
    /usr/bin/time -f '%M' -o "$work/rss" "$fd" apply -f "$dir" --timeout 10m "$@" > "$work/out" 2>&1 \
    || { tail -5 "$work/out" >&2; echo "apply failed" >&2; exit 1; }
  t1=$(date +%s.%N)
  echo "$(python3 -c "print($t1 - $t0)") $(cat "$work/rss")" > "$work/time"
  grep -c "Ready=True" "$work/out" > "$work/ready" || true
}

start_emulator --rate-limit 1000000/1
manifests "$n" "$work/m"
curl -sf -X DELETE "$base/../../__emulator/requests" -o /dev/null || true
apply "$work/m" --rate-limit 1000000/1; report "create" "$n"
apply "$work/m" --rate-limit 1000000/1; report "re-apply, unchanged" "$n"

start_emulator --rate-limit 1000000/1 --latency-ms 50
manifests "$n" "$work/m"
apply "$work/m" --rate-limit 1000000/1 --concurrency 64; report "create, 50 ms latency, 64 at once" "$n"

start_emulator --rate-limit 600/30
manifests "$n" "$work/m"
apply "$work/m" --rate-limit 600/30; report "create under 600 per 30 s" "$n"

start_emulator --rate-limit 1000000/1
manifests "$big" "$work/big"
apply "$work/big" --rate-limit 1000000/1; report "create" "$big"
