"""Router proxies (ingress/egress gateways): Gateway selection and servers,
listeners, routes, server TLS credentials, and the per-type output."""
