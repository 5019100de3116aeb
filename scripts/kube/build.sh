#!/usr/bin/env bash
# scripts/kube/build.sh — build a real Kubernetes control plane from Go modules, once.
#
# Builds kube-apiserver, etcd, kube-controller-manager, kube-scheduler and kubectl
# (k8s.io/kubernetes vKUBE_VERSION through a wrapper module; etcd at the version
# k8s.io/kubernetes pins) into a cache OUTSIDE the repository, so every clone on this
# machine shares one build:
#     ${ISTIOD_PY_KUBE_CACHE:-$HOME/.cache/istiod_py/kube}/bin-$KUBE_VERSION/
# A flock on the cache makes concurrent runs wait for one build instead of building
# twice. Prints the bin directory as the last stdout line; logs go to stderr.
# A cold build takes 6-10 minutes on 2 cores (about 740 MiB of modules, 3.5 GiB of
# Go build cache); a warm one returns at once.
#
#   scripts/kube/build.sh --cached   prints the bin directory and exits 0 if every binary
#                                    is built, exits 3 (building nothing) otherwise
#
# Env: KUBE_VERSION (1.37.2), KUBE_BINARIES (space separated subset), GO (go binary),
#      ETCD_VERSION (default: what k8s.io/kubernetes pins).
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-1.37.2}
KUBE_BINARIES=${KUBE_BINARIES:-"kube-apiserver etcd kube-controller-manager kube-scheduler kubectl"}
CACHE=${ISTIOD_PY_KUBE_CACHE:-$HOME/.cache/istiod_py/kube}
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
log() { echo "kube-build: $*" >&2; }
trap 'log "FAILED at line $LINENO (exit $?)"' ERR

[ -x "$GO" ] || { log "no Go toolchain (looked for go on PATH and /usr/local/go/bin/go); install Go >= 1.26"; exit 1; }
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
BIN="$CACHE/bin-$KUBE_VERSION"
MOD="$CACHE/mod-$KUBE_VERSION"

all_built() { local b; for b in $KUBE_BINARIES; do [ -x "$BIN/$b" ] || return 1; done; }
if all_built; then echo "$BIN"; exit 0; fi
if [ "${1:-}" = "--cached" ]; then exit 3; fi

# One builder at a time per cache; the others wait here and then find the binaries.
exec 9>"$CACHE/build-$KUBE_VERSION.lock"
if ! flock -n 9; then
  log "another build holds $CACHE/build-$KUBE_VERSION.lock; waiting for it"
  flock 9
fi
if all_built; then echo "$BIN"; exit 0; fi

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOWORK=off
mkdir -p "$MOD" "$BIN"
minor=${KUBE_VERSION#*.}; minor=${minor%%.*}
staging="0.${KUBE_VERSION#*.}"   # 1.37.2 -> 0.37.2: the staging modules' tag

if ! grep -q '^require k8s.io/kubernetes' "$MOD/go.mod" 2>/dev/null; then
  log "wrapper module in $MOD"
  # A skeleton go.mod first, so a go.mod or go.work in a parent directory is never used.
  printf 'module istiodpykube\n\ngo 1.26.0\n' > "$MOD/go.mod"
  (cd "$MOD" && "$GO" mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" >/dev/null)
  kmod="$(cd "$MOD" && "$GO" env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/v$KUBE_VERSION.mod"
  {
    printf 'module istiodpykube\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes v%s\n\nreplace (\n' "$KUBE_VERSION"
    # k8s.io/kubernetes replaces its staging modules with ./staging/...; outside its tree
    # they must point at the published v0.x tags. Only the ones it also requires: the
    # sample-* modules are replaced but not required, and not published.
    for m in $(awk '$2=="=>" && $3 ~ /^\.\/staging/ {print $1}' "$kmod"); do
      grep -qE "^[[:space:]]+$m v0\.0\.0" "$kmod" && printf '\t%s => %s v%s\n' "$m" "$m" "$staging"
    done
    printf ')\n'
  } > "$MOD/go.mod.tmp"
  mv "$MOD/go.mod.tmp" "$MOD/go.mod"
fi

ld="-s -w"
for k in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  ld="$ld -X $k.gitVersion=v$KUBE_VERSION -X $k.gitMajor=1 -X $k.gitMinor=$minor -X $k.gitTreeState=clean"
done
for b in $KUBE_BINARIES; do
  [ -x "$BIN/$b" ] && continue
  # Always "go get pkg@VERSION": a bare "go get pkg" means @upgrade and would move
  # k8s.io/kubernetes (or etcd) off the pinned version, breaking the staging replaces.
  case $b in
    etcd)
      # awk reads to the end (no early exit): under pipefail, SIGPIPE in "go mod graph" would fail the build
      ev=${ETCD_VERSION:-$(cd "$MOD" && "$GO" mod graph | awk '!found && $1 ~ /^k8s.io\/kubernetes@/ && $2 ~ /^go.etcd.io\/etcd\/server\/v3@/ {sub(/.*@/,"",$2); print $2; found=1}')}
      [ -n "$ev" ] || { log "cannot tell which etcd k8s.io/kubernetes v$KUBE_VERSION pins; set ETCD_VERSION"; exit 1; }
      pkg=go.etcd.io/etcd/server/v3@$ev ;;
    *) pkg=k8s.io/kubernetes/cmd/$b@v$KUBE_VERSION ;;
  esac
  t0=$(date +%s)
  log "building $b ($pkg)"
  (cd "$MOD" && "$GO" get "$pkg" >&2 && "$GO" build -trimpath -ldflags "$ld" -o "$BIN/$b.tmp" "${pkg%@*}" >&2)
  mv "$BIN/$b.tmp" "$BIN/$b"
  log "built $b in $(( $(date +%s) - t0 ))s"
done
echo "$BIN"
