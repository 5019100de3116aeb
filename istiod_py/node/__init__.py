"""The one-host node: plays the kubelet and kube-proxy against a real API server (see kubelet.py)."""
