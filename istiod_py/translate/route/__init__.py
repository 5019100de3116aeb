"""HTTP route building shared by sidecars and gateways: VirtualService http
routes -> Envoy routes (httproute.py) and delegation (delegate.py)."""
