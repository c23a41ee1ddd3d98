#!/usr/bin/env bash
# Benchmark: N CloudflareContainers created with `kubectl apply` through a real
# kube-apiserver (scripts/kube-testenv.sh) and reconciled by the real `flaredock run`
# (release build) as the ServiceAccount of deploy/ (a token from the TokenRequest API),
# with leader election as deployed, against `flaredock emulator` (a separate process).
# Prints: the time from `kubectl apply` to all N Ready, the Cloudflare calls (per
# object), the controller's peak RSS (VmHWM of /proc/PID/status), its Kubernetes
# requests (the API server's audit log, by verb and resource); then the same for a
# controller restarted (SIGTERM, a new process) over the N Ready objects.
#   benches/apiserver_scale.sh [N]    (needs python3, curl, kubectl; Go or a cached kube-testenv)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
source benches/lib.sh
kenv=$work/kenv
bash scripts/kube-testenv.sh "$kenv" >"$work/kenv.log" 2>&1 &
kenv_pid=$!
ctl_pid=
stop_all() {
  [ -n "$ctl_pid" ] && kill "$ctl_pid" 2>/dev/null
  kill "$kenv_pid" 2>/dev/null || true
  wait "$kenv_pid" 2>/dev/null || true
  cleanup || true
}
trap stop_all EXIT
for _ in $(seq 3600); do
  [ -f "$kenv/admin.kubeconfig" ] && break
  kill -0 "$kenv_pid" 2>/dev/null || { cat "$work/kenv.log" >&2; exit 1; }
  sleep 0.5
done
export KUBECONFIG=$kenv/admin.kubeconfig
kubectl apply -k deploy/ >/dev/null
kubectl wait --for=condition=Established --timeout=60s \
  crd/cloudflarecontainers.flaredock.dev crd/cloudflareworkers.flaredock.dev >/dev/null
kubectl create namespace bench >/dev/null
# Onboarded as a tenant's kustomization does it (deploy/tenant: the RoleBinding).
mkdir -p "$work/tenant"
tenant=$(python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$PWD/deploy/tenant" "$work/tenant")
printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: bench\ncomponents:\n  - %s\n' "$tenant" >"$work/tenant/kustomization.yaml"
kubectl apply -k "$work/tenant" >/dev/null

start_emulator --rate-limit 1000000/1
kubectl -n bench create secret generic cloudflare \
  --from-literal=apiToken="$token" --from-literal=accountId="$account" >/dev/null
rm -rf "$work/m" && mkdir -p "$work/m"
python3 - "$n" "$work/m" "http://127.0.0.1:$port" <<'PY'
import json, sys, urllib.request
count, out, em = int(sys.argv[1]), sys.argv[2], sys.argv[3]
classes = [f"C{i}" for i in range(count)]
req = urllib.request.Request(f"{em}/__emulator/scripts/bench", method="PUT",
    data=json.dumps({"durable_object_classes": classes, "with_namespaces": True}).encode(),
    headers={"content-type": "application/json"})
urllib.request.urlopen(req).read()
for f in range(0, count, 100):
    docs = [f"""apiVersion: flaredock.dev/v1alpha1
kind: CloudflareContainer
metadata: {{name: app-{i}, namespace: bench}}
spec:
  className: C{i}
  image: {{reference: 'hello:v1'}}
  maxInstances: 3
  env: [{{name: INDEX, value: '{i}'}}]
  credentialsSecretRef: {{name: cloudflare}}
  worker: {{scriptName: bench}}
""" for i in range(f, min(f + 100, count))]
    open(f"{out}/objects-{f:05d}.yaml", "w").write("---\n".join(docs))
PY

# The controller's kubeconfig: the ServiceAccount of deploy/, never the admin.
sa_token=$(kubectl -n flaredock-system create token flaredock --duration=2h)
server=$(kubectl config view --raw -o jsonpath='{.clusters[0].cluster.server}')
ca=$(kubectl config view --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
cat >"$work/sa.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: kenv, cluster: {server: "$server", certificate-authority-data: "$ca"}}]
users: [{name: flaredock, user: {token: "$sa_token"}}]
contexts: [{name: sa, context: {cluster: kenv, user: flaredock, namespace: bench}}]
current-context: sa
EOF
sa_user=system:serviceaccount:flaredock-system:flaredock

start_controller() { # log file
  local mport
  mport=$(free_port)
  KUBECONFIG=$work/sa.kubeconfig RUST_LOG=info POD_NAME=bench-replica \
    "$fd" run --namespace bench --metrics-address "127.0.0.1:$mport" \
    --api-base-url "$base" --progress-poll 1s >"$1" 2>&1 &
  ctl_pid=$!
  for _ in $(seq 600); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$mport/readyz")" = 200 ] && return 0
    kill -0 "$ctl_pid" 2>/dev/null || { tail -20 "$1" >&2; exit 1; }
    sleep 0.1
  done
  echo "the controller was not ready in 60 s" >&2
  exit 1
}
ready_count() {
  kubectl -n bench get cloudflarecontainers -o json | python3 -c '
import json, sys
items = json.load(sys.stdin)["items"]
print(sum(1 for o in items if any(c["type"] == "Ready" and c["status"] == "True"
          for c in (o.get("status") or {}).get("conditions", []))))'
}
# Cloudflare calls and writes since the last report (then cleared), and the
# controller's Kubernetes requests in the audit log from line $1 on.
report_run() { # label audit_from seconds
  python3 - "$1" "http://127.0.0.1:$port" "$kenv/audit.log" "$2" "$sa_user" "$n" "$3" "$(grep VmHWM "/proc/$ctl_pid/status" | awk '{print $2}')" <<'PY'
import collections, json, sys, urllib.request
label, em, audit, start, user, n, secs, hwm = sys.argv[1:9]
start, n = int(start), int(n)
log = json.load(urllib.request.urlopen(f"{em}/__emulator/requests"))
calls = len(log)
writes = sum(1 for r in log if r["method"] != "GET" and not r["path"].endswith("/credentials"))
by = collections.Counter()
with open(audit) as f:
    for i, line in enumerate(f):
        if i < start:
            continue
        e = json.loads(line)
        if e.get("user", {}).get("username") != user:
            continue
        ref = e.get("objectRef", {})
        res = ref.get("resource", "-") + ("/" + ref["subresource"] if ref.get("subresource") else "")
        by[(e["verb"], res)] += 1
total = sum(by.values())
print(f"{label}: objects={n} time={float(secs):.1f}s cloudflare_calls={calls} ({calls/n:.3f}/object) writes={writes} peakRSS(VmHWM)={int(hwm)/1024:.1f}MiB kubernetes_requests={total}")
for (verb, res), c in sorted(by.items(), key=lambda x: -x[1]):
    print(f"    {c:6} {verb} {res}")
urllib.request.urlopen(urllib.request.Request(f"{em}/__emulator/requests", method="DELETE")).read()
PY
}

curl -sf -X DELETE "http://127.0.0.1:$port/__emulator/requests" -o /dev/null
audit_from=$(wc -l <"$kenv/audit.log")
start_controller "$work/controller-1.log"
t0=$(date +%s.%N)
kubectl apply -f "$work/m" >/dev/null
t_applied=$(date +%s.%N)
deadline=$(($(date +%s) + 1800))
while :; do
  ready=$(ready_count)
  [ "$ready" -ge "$n" ] && break
  if [ "$(date +%s)" -gt "$deadline" ]; then
    echo "only $ready of $n Ready after 30 min" >&2
    kubectl -n bench get cloudflarecontainers -o json | python3 -c '
import json, sys
for o in json.load(sys.stdin)["items"]:
    cs = (o.get("status") or {}).get("conditions", [])
    if not any(c["type"] == "Ready" and c["status"] == "True" for c in cs):
        print(o["metadata"]["name"], [(c["type"], c["status"], c.get("reason"), c.get("message", "")[:120]) for c in cs])' | head -20 >&2
    exit 1
  fi
  sleep 1
done
t1=$(date +%s.%N)
echo "kubectl apply of $n objects: $(python3 -c "print(f'{$t_applied - $t0:.1f}')") s"
report_run "create through the API server, apply to all Ready" "$audit_from" "$(python3 -c "print($t1 - $t0)")"

# A restart over the N Ready objects: SIGTERM (the Lease is released), a new process.
kill -TERM "$ctl_pid"
wait "$ctl_pid" 2>/dev/null || true
curl -sf -X DELETE "http://127.0.0.1:$port/__emulator/requests" -o /dev/null
audit_from=$(wc -l <"$kenv/audit.log")
t0=$(date +%s.%N)
start_controller "$work/controller-2.log"
# Every object is reconciled once after the stores sync; give it a minute.
sleep 60
report_run "restart over $n Ready objects (first 60 s)" "$audit_from" "$(python3 -c "print($(date +%s.%N) - $t0)")"
echo "still Ready: $(ready_count) of $n"
