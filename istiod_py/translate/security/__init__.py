"""Security features: mTLS and PeerAuthentication, RequestAuthentication (JWT),
AuthorizationPolicy (RBAC, ext_authz)."""
