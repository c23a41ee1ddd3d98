#!/usr/bin/env bash
# Benchmark: `flaredock image copy` vs `skopeo copy`, registry to registry on loopback.
# A 6-layer image (6 x 16 MiB random layers) is pushed into a source docker-registry;
# each round copies it into a fresh destination registry, cold then warm (everything
# already present), alternating the two tools. Prints medians, ratios and peak RSS.
#   benches/image_copy.sh [ROUNDS]      (needs docker-registry, skopeo, python3, /usr/bin/time)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
for tool in docker-registry skopeo python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install docker-registry skopeo)" >&2; exit 1; }
done
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
cargo build --release --quiet
flaredock=target/release/flaredock
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_registry() { # name -> prints host:port
  local port dir; port=$(free_port); dir="$work/$1"; mkdir -p "$dir"
  printf 'version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: %s}}\nhttp: {addr: 127.0.0.1:%s}\n' "$dir/data" "$port" > "$dir/config.yml"
  docker-registry serve "$dir/config.yml" >/dev/null 2>&1 & pids+=($!)
  for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
  echo "127.0.0.1:$port"
}

# The image: an OCI layout with 6 random 16 MiB layers, pushed with skopeo.
python3 - "$work/layout" <<'PY'
import hashlib, json, os, sys
root = sys.argv[1]; blobs = os.path.join(root, "blobs", "sha256"); os.makedirs(blobs)
def put(data):
    d = hashlib.sha256(data).hexdigest(); open(os.path.join(blobs, d), "wb").write(data); return "sha256:" + d, len(data)
layers = [put(os.urandom(16 << 20)) for _ in range(6)]
config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [d for d, _ in layers]}}).encode()
cd, cs = put(config)
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s} for d, s in layers]}).encode()
md, ms = put(manifest)
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms, "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}, open(os.path.join(root, "index.json"), "w"))
open(os.path.join(root, "oci-layout"), "w").write('{"imageLayoutVersion": "1.0.0"}')
PY
src=$(start_registry src)
skopeo copy --quiet --dest-tls-verify=false "oci:$work/layout:v1" "docker://$src/bench:v1"

measure() { # label cmd... -> appends "label seconds rss_kib"
  local label=$1; shift
  local out="$work/time.txt"
  local t0 t1
  t0=$(date +%s.%N)
  /usr/bin/time -f '%M' -o "$out" "$@" >/dev/null 2>"$work/stderr" || { cat "$work/stderr" >&2; exit 1; }
  t1=$(date +%s.%N)
  echo "$label $(python3 -c "print(f'{$t1 - $t0:.4f}')") $(tail -1 "$out")" >> "$work/results"
}
for r in $(seq "$rounds"); do
  dst=$(start_registry "fd$r")
  measure flaredock-cold "$flaredock" image copy "$src/bench:v1" "$dst/bench:v1"
  measure flaredock-warm "$flaredock" image copy "$src/bench:v1" "$dst/bench:v1"
  dst=$(start_registry "sk$r")
  measure skopeo-cold skopeo copy --quiet --preserve-digests --src-tls-verify=false --dest-tls-verify=false "docker://$src/bench:v1" "docker://$dst/bench:v1"
  measure skopeo-warm skopeo copy --quiet --preserve-digests --src-tls-verify=false --dest-tls-verify=false "docker://$src/bench:v1" "docker://$dst/bench:v1"
done
python3 - "$work/results" <<'PY'
import statistics, sys, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    label, secs, rss = line.split(); rows[label].append((float(secs), int(rss)))
med = {k: statistics.median(s for s, _ in v) for k, v in rows.items()}
rss = {k: max(r for _, r in v) for k, v in rows.items()}
for k in sorted(rows):
    print(f"{k:15} median {med[k]:.4f} s over {len(rows[k])} runs, peak RSS {rss[k]/1024:.1f} MiB")
print(f"cold ratio flaredock/skopeo: {med['flaredock-cold']/med['skopeo-cold']:.2f}")
print(f"warm ratio flaredock/skopeo: {med['flaredock-warm']/med['skopeo-warm']:.2f}")
PY
