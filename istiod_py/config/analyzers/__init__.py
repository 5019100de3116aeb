"""istioctl-analyze-style analyzers: one per file, each `analyze(ctx) -> Iterator[Message]`.

`runner.run(...)` runs them all (plus the cross-reference checks of
config/analysis.py), applies suppressions and returns Messages sorted as istioctl
prints them. Codes, levels and message templates follow Istio's
pkg/config/analysis/msg/messages.yaml (see messages.py)."""
