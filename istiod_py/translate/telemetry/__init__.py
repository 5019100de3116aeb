"""Telemetry features (Telemetry API and mesh config): access logs, request metrics, tracing.

resolve.py applies Istio's override semantics (root namespace, namespace, workload
selector); each feature module hooks into the HTTP connection manager and the
tcp_proxy filters through features.py.
"""
