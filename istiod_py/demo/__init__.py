"""The local demo: a bookinfo-like sample app that runs behind real Envoy sidecars."""
