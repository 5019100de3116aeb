"""What only sidecars get: outbound/inbound listeners, per-port route configs,
and the VirtualService tcp/tls filter chains of outbound listeners."""
