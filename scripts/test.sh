#!/usr/bin/env bash
# Runs flaredock's whole test suite, installing what the tests need first:
#   docker-registry  (the CNCF distribution registry, as "Cloudflare's registry")
#   apache2-utils    (htpasswd, for the registry's basic auth)
#   kubernetes-client (kubectl: `kubectl kustomize`, offline, renders deploy/)
#   lua5.1           (runs the Argo CD health checks: gopher-lua is Lua 5.1)
#   buildah          (builds FROM scratch Dockerfiles, chroot isolation, vfs storage;
#                    the emulator runs container instances with it)
#   busybox-static   (a static /bin/busybox: tests/container_serve.rs bakes it into a
#                    FROM scratch image whose httpd the emulator runs as the container)
#   wrangler 4.86    (npm; Cloudflare's CLI, run against the emulator by tests/wrangler.rs)
#   workerd 1.20260426.1 (npm; Cloudflare's Workers runtime, the release wrangler 4.86
#                    pins: the emulator loads and serves uploads with it)
# and builds, once (cached outside the repository), the real kube-apiserver and etcd of
# tests/apiserver.rs from tools/kube-testenv: that needs Go >= 1.26 (on PATH or at
# /usr/local/go/bin/go) and the Go module proxy; see scripts/kube-testenv.sh.
# Extra arguments go to `cargo test` (e.g. scripts/test.sh --test plan).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || missing+=(apache2-utils)
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
command -v lua5.1 >/dev/null 2>&1 || missing+=(lua5.1)
command -v buildah >/dev/null 2>&1 || missing+=(buildah)
# The static busybox (the dynamic one of package `busybox` would not run FROM scratch).
{ [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; } || missing+=(busybox-static)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if ! command -v wrangler >/dev/null 2>&1 && ! command -v npm >/dev/null 2>&1; then
  missing+=(npm)
fi
if ((${#missing[@]})); then
  echo "installing ${missing[*]} ..." >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v wrangler >/dev/null 2>&1; then
  echo "installing wrangler@4.86.0 (npm) ..." >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo npm install -g --no-fund --no-audit wrangler@4.86.0 >/dev/null
fi
if ! command -v workerd >/dev/null 2>&1 && [ -z "${FLAREDOCK_WORKERD:-}" ]; then
  echo "installing workerd@1.20260426.1 (npm) ..." >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo npm install -g --no-fund --no-audit workerd@1.20260426.1 >/dev/null
fi

# The real Kubernetes API server of tests/apiserver.rs: built here, before the tests,
# so that a missing Go or a failed build stops the run with its own message.
scripts/kube-testenv.sh --build >/dev/null

# Every emulator of the suite (in-process or a `flaredock` subprocess) checks each
# exchange against the official contract and appends any problem here.
export FLAREDOCK_CONTRACT_LOG="${CARGO_TARGET_DIR:-target}/contract-problems.log"
mkdir -p "$(dirname "$FLAREDOCK_CONTRACT_LOG")"
: >"$FLAREDOCK_CONTRACT_LOG"
cargo test --locked "$@"
if [ -s "$FLAREDOCK_CONTRACT_LOG" ]; then
  echo "contract violations (official extract in cloudflare-api/):" >&2
  sort -u "$FLAREDOCK_CONTRACT_LOG" >&2
  exit 1
fi
