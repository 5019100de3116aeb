#!/usr/bin/env bash
# deploy/kind/up.sh — the Istio journey on a kind cluster (needs docker, kind, kubectl,
# and istiod-py on PATH: `pip install -e .` in the repo):
#   build the images, load them into kind, install the demo profile, label `default`.
# Then: kubectl apply -f <your app>; pods in `default` get the sidecar.
# Tear down: istiod-py uninstall --set profile=demo; kind delete cluster --name istiod-py
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
NAME=${KIND_CLUSTER_NAME:-istiod-py}
HUB=${HUB:-ghcr.io/istiod-py}
TAG=${TAG:-dev}

for tool in docker kind kubectl istiod-py; do
  command -v "$tool" >/dev/null || { echo "up.sh: $tool not found on PATH" >&2; exit 1; }
done

if ! kind get clusters | grep -qx "$NAME"; then
  kind create cluster --name "$NAME" --config "$ROOT/deploy/kind/cluster.yaml"
fi
docker build --target pilot -t "$HUB/pilot:$TAG" "$ROOT"
docker build --target proxy -t "$HUB/proxy:$TAG" "$ROOT"
kind load docker-image --name "$NAME" "$HUB/pilot:$TAG" "$HUB/proxy:$TAG"

KUBECONFIG_FILE=$(mktemp)
trap 'rm -f "$KUBECONFIG_FILE"' EXIT
kind get kubeconfig --name "$NAME" > "$KUBECONFIG_FILE"
# kind has no LoadBalancer: the ingress gateway is a NodePort Service
# (kubectl -n istio-system port-forward svc/istio-ingressgateway 8080:80 to reach it).
istiod-py install --kubeconfig "$KUBECONFIG_FILE" --set profile=demo --set hub="$HUB" --set tag="$TAG" \
  --set gateways.ingress.serviceType=NodePort
kubectl --kubeconfig "$KUBECONFIG_FILE" -n istio-system rollout status deploy/istiod --timeout=180s
kubectl --kubeconfig "$KUBECONFIG_FILE" label namespace default istio-injection=enabled --overwrite
echo "up.sh: ready; kubectl --context kind-$NAME apply -f your-app.yaml" >&2
