"""istiod_py: an Istio-style control plane for Envoy (docs/architecture.md)."""

from istiod_py import grpc_env

grpc_env.apply()  # before anything imports grpc: gRPC core reads its settings at import
