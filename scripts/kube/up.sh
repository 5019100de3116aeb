#!/usr/bin/env bash
# scripts/kube/up.sh [RUN_DIR] — a real Kubernetes control plane on loopback.
#
# Builds the binaries if needed (scripts/kube/build.sh, cached outside the repo), then
# starts etcd, kube-apiserver (token auth, RBAC, service-account tokens) and
# kube-controller-manager on free 127.0.0.1 ports, everything under RUN_DIR (default:
# a new temp dir). Prints the kubeconfig path as the LAST stdout line; logs go to stderr
# and RUN_DIR/*.log. Stop with scripts/kube/down.sh RUN_DIR.
#
#   scripts/kube/up.sh --restart-apiserver RUN_DIR   stop and start kube-apiserver alone
#                                                    (same port, same etcd: a restart as
#                                                    a cluster upgrade would do it)
# Env: KUBE_KCM=0 (no controller-manager), KUBE_SCHEDULER=1 (also kube-scheduler),
#      KUBE_READY_TIMEOUT (seconds, default 120), KUBE_APISERVER_ARGS (extra flags, e.g.
#      "--etcd-compaction-interval=10s" so that old resourceVersions expire: 410 Gone),
#      KUBE_SERVICE_CIDR (the Services' ClusterIP range, default 10.96.0.0/16; the one-host
#      node's --service-cidr must match it), and build.sh's knobs.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
log() { echo "kube-up: $*" >&2; }
KUBE_READY_TIMEOUT=${KUBE_READY_TIMEOUT:-120}

stop_pid() {  # stop_pid PIDFILE: TERM, up to 10 s, then KILL; by PID only
  local f=$1 p i
  [ -f "$f" ] || return 0
  p=$(cat "$f")
  kill "$p" 2>/dev/null || true
  for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$p" 2>/dev/null || true
  rm -f "$f"
}

# --enable-aggregator-routing: webhooks given as a Service are called at its endpoints'
# addresses (e.g. the one-host node's pods), not at the ClusterIP, which only exists
# inside the node's pods (no kube-proxy on this host).
start_apiserver() {  # start_apiserver RUN_DIR: args from RUN_DIR/env, waits for /readyz
  local run=$1
  # shellcheck disable=SC1091
  . "$run/env"
  "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
    --endpoint-reconciler-type none \
    --cert-dir "$run/pki" \
    --token-auth-file "$run/pki/tokens.csv" \
    --authorization-mode RBAC \
    --service-account-key-file "$run/pki/sa.pub" \
    --service-account-signing-key-file "$run/pki/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --enable-aggregator-routing=true \
    --v=1 $APISERVER_ARGS >> "$run/kube-apiserver.log" 2>&1 &
  echo $! > "$run/kube-apiserver.pid"
  local i
  for i in $(seq $((KUBE_READY_TIMEOUT * 5))); do
    if ! kill -0 "$(cat "$run/kube-apiserver.pid")" 2>/dev/null; then
      log "kube-apiserver exited; tail of $run/kube-apiserver.log:"; tail -20 "$run/kube-apiserver.log" >&2; return 1
    fi
    if [ -f "$run/pki/apiserver.crt" ] && curl -sf --cacert "$run/pki/apiserver.crt" \
         -H "Authorization: Bearer $ADMIN_TOKEN" "https://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  log "kube-apiserver not ready in ${KUBE_READY_TIMEOUT}s; see $run/kube-apiserver.log"
  return 1
}

if [ "${1:-}" = "--restart-apiserver" ]; then
  RUN_DIR=$(cd "${2:?usage: up.sh --restart-apiserver RUN_DIR}" && pwd)
  stop_pid "$RUN_DIR/kube-apiserver.pid"
  start_apiserver "$RUN_DIR"
  log "kube-apiserver restarted"
  exit 0
fi

BIN=$("$HERE/build.sh" | tail -1)
RUN_DIR=${1:-$(mktemp -d "${TMPDIR:-/tmp}/istiod-py-kube.XXXXXX")}
mkdir -p "$RUN_DIR/pki" "$RUN_DIR/etcd-data"
RUN_DIR=$(cd "$RUN_DIR" && pwd)
PKI="$RUN_DIR/pki"

read -r ETCD_PORT ETCD_PEER_PORT API_PORT < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
ADMIN_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
printf '%s,admin,admin-uid,"system:masters"\n' "$ADMIN_TOKEN" > "$PKI/tokens.csv"
cat > "$RUN_DIR/env" <<ENV
BIN=$BIN
ETCD_PORT=$ETCD_PORT
API_PORT=$API_PORT
ADMIN_TOKEN=$ADMIN_TOKEN
APISERVER_ARGS="${KUBE_APISERVER_ARGS:-}"
SERVICE_CIDR=${KUBE_SERVICE_CIDR:-10.96.0.0/16}
ENV
cp "$HERE/down.sh" "$RUN_DIR/down.sh"

"$BIN/etcd" --name istiod-py --data-dir "$RUN_DIR/etcd-data" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "istiod-py=http://127.0.0.1:$ETCD_PEER_PORT" \
  --unsafe-no-fsync --log-level warn > "$RUN_DIR/etcd.log" 2>&1 &
echo $! > "$RUN_DIR/etcd.pid"

T0=$(date +%s.%N)
if ! start_apiserver "$RUN_DIR"; then "$HERE/down.sh" "$RUN_DIR"; exit 1; fi

KUBECONFIG_PATH="$RUN_DIR/kubeconfig"
cat > "$KUBECONFIG_PATH" <<KC
apiVersion: v1
kind: Config
clusters:
- name: istiod-py
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $PKI/apiserver.crt
users:
- name: admin
  user:
    token: $ADMIN_TOKEN
contexts:
- name: istiod-py
  context: {cluster: istiod-py, user: admin}
current-context: istiod-py
KC

if [ "${KUBE_KCM:-1}" = 1 ]; then
  # No node-lifecycle controller: the Nodes tests create have no kubelet and would be
  # tainted and their Pods evicted after ~40 s. --secure-port 0: no serving endpoint.
  "$BIN/kube-controller-manager" --kubeconfig "$KUBECONFIG_PATH" --leader-elect=false --secure-port 0 \
    --controllers '*,-node-lifecycle-controller' \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/apiserver.crt" \
    --service-cluster-ip-range "${KUBE_SERVICE_CIDR:-10.96.0.0/16}" --v=1 > "$RUN_DIR/kube-controller-manager.log" 2>&1 &
  echo $! > "$RUN_DIR/kube-controller-manager.pid"
fi
if [ "${KUBE_SCHEDULER:-0}" = 1 ]; then
  "$BIN/kube-scheduler" --kubeconfig "$KUBECONFIG_PATH" --leader-elect=false --secure-port 0 \
    --v=1 > "$RUN_DIR/kube-scheduler.log" 2>&1 &
  echo $! > "$RUN_DIR/kube-scheduler.pid"
fi
log "kube-apiserver https://127.0.0.1:$API_PORT ready in $(python3 -c "import time; print(round(time.time()-$T0, 1))")s; binaries $BIN; stop: scripts/kube/down.sh $RUN_DIR"
echo "$KUBECONFIG_PATH"
