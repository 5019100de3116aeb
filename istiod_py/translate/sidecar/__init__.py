"""What only sidecars get: outbound/inbound listeners, per-port route configs,
and the VirtualService tcp/tls filter chains of outbound listeners.
Captured sidecars (INTERCEPTION_MODE REDIRECT/TPROXY): virtualOutbound, virtualInbound
and their clusters (capture*.py), headless services (headless.py)."""
