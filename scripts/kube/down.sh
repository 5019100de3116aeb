#!/usr/bin/env bash
# scripts/kube/down.sh RUN_DIR — stop what up.sh started there, by PID only.
# Order matters: an apiserver whose etcd is gone hangs in shutdown, so etcd goes last.
set -uo pipefail
RUN_DIR=${1:?usage: down.sh RUN_DIR}
stop_pid() {
  local f=$1 p i
  [ -f "$f" ] || return 0
  p=$(cat "$f")
  kill "$p" 2>/dev/null || true
  for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$p" 2>/dev/null || true
  rm -f "$f"
}
for c in kube-scheduler kube-controller-manager kube-apiserver etcd; do
  stop_pid "$RUN_DIR/$c.pid"
done
