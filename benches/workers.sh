#!/usr/bin/env bash
# Benchmark: N CloudflareContainers across W CloudflareWorkers (N/W classes each), with
# `flaredock apply -f DIR` against the emulator (a separate process). Each Worker is an
# inline module exporting its classes; each container names its Worker. Prints API
# calls, writes, Worker uploads, wall time and peak RSS for: create, re-apply
# (unchanged), and a code change of one Worker.
#   benches/workers.sh [N] [W]      (needs python3, /usr/bin/time, curl)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
w=${2:-10}
source benches/lib.sh

manifests() { # containers workers dir code-version
  rm -rf "$3"; mkdir -p "$3"
  bench_python "$1" "$2" "$3" "$4" <<'PY'
import sys
count, workers, out, version = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
per = count // workers
for w in range(workers):
    classes = [f"C{w}x{i}" for i in range(per)]
    code = "\\n".join(f"export class {c} {{}}" for c in classes) + f"\\nexport default {{ fetch: () => new Response('{version}') }}\\n"
    doc = worker_head(w, code)
    write_worker(out, w, classes, doc)
PY
}

start_emulator --rate-limit 1000000/1
manifests "$n" "$w" "$work/m" v1
objects=$((n + w))
apply "$work/m" --rate-limit 1000000/1; report "create" "$objects"
apply "$work/m" --rate-limit 1000000/1; report "re-apply, unchanged" "$objects"
# One Worker's code changes: one upload, no rollout, no other write.
python3 - "$work/m/worker-000.yaml" <<'PY'
import sys
p = sys.argv[1]; s = open(p).read(); open(p, "w").write(s.replace("Response('v1')", "Response('v2')", 1))
PY
apply "$work/m" --rate-limit 1000000/1; report "one Worker's code changed" "$objects"
