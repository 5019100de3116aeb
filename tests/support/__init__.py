"""Reusable real-parts harness for end-to-end tests: Envoy processes, loopback
addresses, and real upstream servers (HTTP/1.1, h2c, gRPC, WebSocket, TCP)."""
