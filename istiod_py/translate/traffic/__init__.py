"""Traffic features: DestinationRule traffic policy (connection pool, outlier
detection, load balancing, locality, upstream TLS) and per-route VirtualService
features (fault, retry, timeout, cors, mirror), plus local rate limiting."""
