"""Installation: profiles and `--set` values (profiles.py), the Kubernetes
objects they render (manifests.py, gateways.py, webhooks.py), and applying or
deleting them through the API server (apply.py)."""
