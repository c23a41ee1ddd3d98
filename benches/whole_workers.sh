#!/usr/bin/env bash
# Benchmark: W whole Workers (as examples/whole-worker/) with N CloudflareContainers
# (N/W classes each), with `flaredock apply -f DIR` against the emulator (a separate
# process). Unlike benches/workers.sh, each Worker is reached and bound: workers.dev, a
# zone route, a custom domain, a cron, a KV namespace, an R2 bucket, a D1 database, a
# queue, a service binding to a shared `auth` Worker, a Durable Object class without a
# container, a JSON value, observability, placement and limits. The storage is created
# through the official endpoints first (not counted). Prints API calls, writes, Worker
# uploads, wall time and peak RSS for: create, re-apply (unchanged).
#   benches/whole_workers.sh [N] [W]      (needs python3, /usr/bin/time, curl)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
w=${2:-10}
source benches/lib.sh

start_emulator --rate-limit 1000000/1
post() { # path json → the answer's result
  curl -sf -X POST "$base/accounts/$account/$1" -H "Authorization: Bearer $token" \
    -H 'content-type: application/json' -d "$2"
}
kv=$(post storage/kv/namespaces '{"title": "bench-cache"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["id"])')
post r2/buckets '{"name": "bench-assets"}' >/dev/null
d1=$(post d1/database '{"name": "bench-db"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["uuid"])')
post queues '{"queue_name": "bench-jobs"}' >/dev/null
curl -sf -o /dev/null -X DELETE "http://127.0.0.1:$port/__emulator/requests"

mkdir -p "$work/m"
bench_python "$n" "$w" "$work/m" "$kv" "$d1" <<'PY'
import sys
count, workers, out, kv, d1 = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
per = count // workers
open(f"{out}/auth.yaml", "w").write("""apiVersion: flaredock.dev/v1alpha1
kind: CloudflareWorker
metadata: {name: auth, namespace: bench}
spec:
  compatibilityDate: "2026-06-01"
  workersDev: false
  source: {inline: {mainModule: index.js, modules: {index.js: "export default { fetch: () => new Response('ok') }"}}}
""")
for w in range(workers):
    classes = [f"C{w}x{i}" for i in range(per)]
    code = "\\n".join(f"export class {c} {{}}" for c in classes + ["Counter"]) + "\\nexport default { fetch: () => new Response('v1'), scheduled() {} }\\n"
    doc = worker_head(w, code) + f"""  bindings:
    - {{name: CACHE, kvNamespace: {{namespaceId: {kv}}}}}
    - {{name: ASSETS, r2Bucket: {{bucketName: bench-assets}}}}
    - {{name: DB, d1: {{databaseId: {d1}}}}}
    - {{name: JOBS, queue: {{queueName: bench-jobs}}}}
    - {{name: AUTH, service: {{service: auth}}}}
    - {{name: COUNTER, durableObject: {{className: Counter}}}}
    - {{name: AI, ai: {{}}}}
    - {{name: SETTINGS, json: {{json: {{worker: {w}}}}}}}
  observability: {{enabled: true, headSamplingRate: 1}}
  placement: {{mode: smart}}
  limits: {{cpuMs: 50}}
  routes:
    - {{pattern: "w{w}.example.com/*", zoneName: example.com}}
  domains:
    - {{hostname: api-{w}.example.com}}
  crons: ["*/5 * * * *"]
"""
    write_worker(out, w, classes, doc)
PY
# The emulator's request log by endpoint (ids folded; the status when not 2xx).
breakdown() {
  curl -sf "http://127.0.0.1:$port/__emulator/requests" | python3 -c '
import collections, json, re, sys
log = json.load(sys.stdin)
def key(r):
    path = re.sub(r"/(worker-[0-9]+|auth|[0-9a-f]{32}|[0-9a-f-]{36})(?=/|$)", "/{id}", r["path"].split("?")[0])
    return r["method"] + " " + path + ("" if r["status"] < 300 else " -> " + str(r["status"]))
for k, v in sorted(collections.Counter(key(r) for r in log).items()): print(f"  {v:5} {k}")
'
}
objects=$((n + w + 1))
apply "$work/m" --rate-limit 1000000/1; breakdown; report "create (whole Workers)" "$objects"
apply "$work/m" --rate-limit 1000000/1; breakdown; report "re-apply, unchanged" "$objects"
