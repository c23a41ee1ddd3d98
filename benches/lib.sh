#!/usr/bin/env bash
# Shared by the convergence benchmarks: builds the release binary, starts
# `flaredock emulator` processes, runs `flaredock apply` under /usr/bin/time and reports
# the emulator's request log. Source it after `set -euo pipefail` and `cd` to the
# repository.
cargo build --release --quiet
fd=${CARGO_TARGET_DIR:-$PWD/target}/release/flaredock
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
# The Python prelude of bench_python: worker_head(w, code) is the top of worker-W's
# CloudflareWorker document (its inline module `code`, a var WORKER), to which a
# benchmark adds spec lines; write_worker(out, w, classes, worker_doc) writes
# out/worker-WWW.yaml holding the Worker's document and one CloudflareContainer per
# class, each naming worker-W.
read -r -d '' bench_prelude <<'PY' || true
def worker_head(w, code):
    return f"""apiVersion: flaredock.dev/v1alpha1
kind: CloudflareWorker
metadata: {{name: worker-{w}, namespace: bench}}
spec:
  compatibilityDate: "2026-06-01"
  source:
    inline:
      mainModule: index.js
      modules: {{index.js: "{code}"}}
  vars: {{WORKER: "{w}"}}
"""
def write_worker(out, w, classes, worker_doc):
    docs = [worker_doc]
    for i, c in enumerate(classes):
        docs.append(f"""apiVersion: flaredock.dev/v1alpha1
kind: CloudflareContainer
metadata: {{name: app-{w}-{i}, namespace: bench}}
spec:
  className: {c}
  image: {{reference: 'hello:v1'}}
  maxInstances: 3
  worker: {{name: worker-{w}, bindingName: B_{c}}}
""")
    open(f"{out}/worker-{w:03d}.yaml", "w").write("---\n".join(docs))
PY
# Runs the Python script on stdin, with its arguments (sys.argv[1:]), after the prelude.
bench_python() { # args...
  python3 -c "$bench_prelude"$'\n'"$(cat)" "$@"
}
report() { # label
  python3 - "$1" "http://127.0.0.1:$port" "$work/time" "$2" "$(cat "$work/ready")" <<'PY'
import json, sys, urllib.request
label, em, timefile, objects, ready = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
log = json.load(urllib.request.urlopen(f"{em}/__emulator/requests"))
calls = len(log); writes = sum(1 for r in log if r["method"] != "GET" and not r["path"].endswith("/credentials"))
limited = sum(1 for r in log if r["status"] == 429)
wall, rss = open(timefile).read().split()
uploads = sum(1 for r in log if r["method"] == "PUT" and "/workers/scripts/" in r["path"])
print(f"{label:34} objects={objects:6} ready={ready:6} calls={calls:6} ({calls/objects:.3f}/object) writes={writes:6} uploads={uploads} 429s={limited} wall={float(wall):7.2f}s peakRSS={int(rss)/1024:6.1f}MiB")
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

