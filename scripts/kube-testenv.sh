#!/usr/bin/env bash
# A real Kubernetes API server for flaredock's tests (tools/kube-testenv: kube-apiserver
# and etcd from the published k8s.io/kubernetes and go.etcd.io/etcd modules).
#
#   scripts/kube-testenv.sh DIR      builds if needed, starts etcd and kube-apiserver on
#                                    loopback (free ports), writes DIR/admin.kubeconfig
#                                    once /readyz answers, runs until killed
#   scripts/kube-testenv.sh --build  only builds; prints the binary's path
#
# RBAC authorization; a service-account signing key and issuer (the TokenRequest API
# works: `kubectl create token`); the admin is a client certificate in system:masters.
# Like envtest there is no controller-manager, scheduler or kubelet: namespaces never
# finish terminating, Pods never run, no `default` ServiceAccount is created.
#
# The build is cached outside the repository, keyed by the module's files:
#   ${FLAREDOCK_TESTENV_CACHE:-$HOME/.cache/flaredock/kube-testenv}/<sha256>/kube-testenv
# (<sha256>: of go.mod, go.sum, main.go and the link flags).
# FLAREDOCK_TESTENV_PARENT=PID: also stop when that process is gone (the test harness).
#
# While it runs: SIGUSR1 kills the API server (SIGKILL) and starts it again on the same
# port and etcd ("kube-testenv: restarted N" in the script's stderr once /readyz answers
# again). Every request is in DIR/audit.log (audit level Metadata, one JSON line each).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
module="$root/tools/kube-testenv"

die() {
  echo "kube-testenv: $*" >&2
  exit 1
}

build() {
  local go
  go=$(command -v go || true)
  if [ -z "$go" ] && [ -x /usr/local/go/bin/go ]; then go=/usr/local/go/bin/go; fi
  [ -n "$go" ] || die "needs Go (>= 1.26, https://go.dev/dl/) on PATH or at /usr/local/go/bin/go to build kube-apiserver and etcd from tools/kube-testenv"
  # The release pinned in go.mod, stamped as `kubectl version` and discovery expect.
  local version v ldflags cache key out
  version=$(awk '$1 == "k8s.io/kubernetes" { print $2; exit }' "$module/go.mod")
  v=k8s.io/component-base/version
  ldflags="-s -w -X $v.gitVersion=$version -X $v.gitMajor=1 -X $v.gitMinor=$(echo "$version" | cut -d. -f2) -X $v.gitTreeState=clean"
  cache=${FLAREDOCK_TESTENV_CACHE:-${HOME:?}/.cache/flaredock/kube-testenv}
  key=$( (cat "$module/go.mod" "$module/go.sum" "$module/main.go" && echo "$ldflags") | sha256sum | cut -c1-64)
  out="$cache/$key"
  bin="$out/kube-testenv"
  [ -x "$bin" ] && return 0
  mkdir -p "$out"
  # One build at a time (several test binaries may start at once).
  exec 9>"$out/lock"
  flock 9
  if [ ! -x "$bin" ]; then
    echo "kube-testenv: building kube-apiserver $version + etcd into $out (once; minutes cold) ..." >&2
    (cd "$module" && "$go" build -mod=readonly -buildvcs=false -trimpath -ldflags="$ldflags" -o "$bin.tmp" .) ||
      die "go build failed in tools/kube-testenv"
    mv "$bin.tmp" "$bin"
  fi
  exec 9>&-
}

[ $# -eq 1 ] || die "usage: scripts/kube-testenv.sh DIR | --build"
if [ "$1" = --build ]; then
  build
  echo "$bin"
  exit 0
fi
build
command -v kubectl >/dev/null 2>&1 || die "needs kubectl (Debian package kubernetes-client) to wait for /readyz"
mkdir -p "$1"
dir=$(cd "$1" && pwd)

pids=()
stop() {
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 1 50); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
cleanup() {
  trap - EXIT INT TERM
  # The API server first, then its etcd; each gets 5 s to stop, then SIGKILL (an API
  # server whose etcd went first would wait for it much longer).
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    stop "${pids[i]}"
  done
  # Kubeconfigs hold credentials (the tests write theirs here too).
  rm -rf "$dir/etcd" "$dir/pki" "$dir"/*.kubeconfig "$dir/admin.kubeconfig.tmp"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

rm -rf "$dir/etcd" "$dir/pki"
"$bin" certs "$dir/pki"
mapfile -t ports < <("$bin" free-ports 3)
etcd_client=${ports[0]} etcd_peer=${ports[1]} api_port=${ports[2]}

"$bin" etcd "$dir/etcd" "$etcd_client" "$etcd_peer" 2>"$dir/etcd.log" &
pids+=($!)
for _ in $(seq 1 600); do
  grep -q "etcd ready" "$dir/etcd.log" 2>/dev/null && break
  kill -0 "${pids[0]}" 2>/dev/null || die "etcd exited: $(tail -5 "$dir/etcd.log")"
  sleep 0.1
done
grep -q "etcd ready" "$dir/etcd.log" || die "etcd not ready in 60s: $(tail -5 "$dir/etcd.log")"

pki="$dir/pki"
issuer=https://kubernetes.default.svc.cluster.local
cat >"$dir/audit-policy.yaml" <<EOF
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
EOF
apiserver_args=(
  --etcd-servers="http://127.0.0.1:$etcd_client"
  --bind-address=127.0.0.1
  --advertise-address=127.0.0.1
  --secure-port="$api_port"
  --cert-dir="$pki"
  --tls-cert-file="$pki/serving.crt"
  --tls-private-key-file="$pki/serving.key"
  --client-ca-file="$pki/ca.crt"
  --authorization-mode=RBAC
  --service-account-issuer="$issuer"
  --api-audiences="$issuer"
  --service-account-key-file="$pki/sa.pub"
  --service-account-signing-key-file="$pki/sa.key"
  --service-cluster-ip-range=10.96.0.0/16
  --audit-policy-file="$dir/audit-policy.yaml"
  --audit-log-path="$dir/audit.log"
  --audit-log-format=json
  --audit-log-mode=blocking
  --v=1
)
start_apiserver() {
  "$bin" kube-apiserver "${apiserver_args[@]}" 2>>"$dir/apiserver.log" &
  pids[1]=$!
}
start_apiserver

b64() { base64 -w0 <"$1"; }
cat >"$dir/admin.kubeconfig.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: kube-testenv
    cluster:
      server: https://127.0.0.1:$api_port
      certificate-authority-data: $(b64 "$pki/ca.crt")
users:
  - name: admin
    user:
      client-certificate-data: $(b64 "$pki/admin.crt")
      client-key-data: $(b64 "$pki/admin.key")
contexts:
  - name: kube-testenv
    context: {cluster: kube-testenv, user: admin, namespace: default}
current-context: kube-testenv
EOF
# Waits for /readyz, as the admin of kubeconfig $1.
wait_ready() {
  for _ in $(seq 1 240); do
    kill -0 "${pids[1]}" 2>/dev/null || die "kube-apiserver exited: $(tail -20 "$dir/apiserver.log")"
    if kubectl --kubeconfig "$1" get --raw /readyz >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.5
  done
  die "kube-apiserver not ready in 120s: $(tail -20 "$dir/apiserver.log")"
}
wait_ready "$dir/admin.kubeconfig.tmp"
mv "$dir/admin.kubeconfig.tmp" "$dir/admin.kubeconfig"
echo "kube-testenv: ready at https://127.0.0.1:$api_port (KUBECONFIG=$dir/admin.kubeconfig)" >&2

restarts=0
restart_requested=""
trap 'restart_requested=1' USR1
parent=${FLAREDOCK_TESTENV_PARENT:-}
while :; do
  if [ -n "$restart_requested" ]; then
    restart_requested=""
    kill -9 "${pids[1]}" 2>/dev/null || true
    wait "${pids[1]}" 2>/dev/null || true
    echo "kube-testenv: API server killed" >&2
    start_apiserver
    wait_ready "$dir/admin.kubeconfig"
    restarts=$((restarts + 1))
    echo "kube-testenv: restarted $restarts" >&2
  fi
  for p in "${pids[@]}"; do
    kill -0 "$p" 2>/dev/null || die "a process of the test environment exited (logs in $dir)"
  done
  if [ -n "$parent" ] && ! kill -0 "$parent" 2>/dev/null; then exit 0; fi
  sleep 1 &
  wait $! || true
done
