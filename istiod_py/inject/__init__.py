"""Sidecar injection: the capture (iptables) step, and later the injection template and webhook."""
