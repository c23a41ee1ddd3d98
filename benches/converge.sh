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
source benches/lib.sh

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
  env: [{{name: INDEX, value: '{i}'}}]
  worker: {{scriptName: bench}}
""")
    open(f"{out}/objects-{f:05d}.yaml", "w").write("---\n".join(docs))
PY
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
