"""gRPC core settings that must be in place before grpc is imported.

gRPC core reads GRPC_EXPERIMENTS once, when the grpc module is first imported,
so this module runs from istiod_py/__init__.py, ahead of every import of grpc
by istiod_py.

`-event_engine_listener`: accept connections with gRPC's older iomgr TCP
listener rather than the EventEngine one. Measured on this project's 2-core
benchmark box (grpcio 1.85, Go load generator, 1,000 proxies): a bare grpc.aio
ADS server answering the same connect exchange took 0.46-0.55 ms of CPU per
connect and 0.54-0.64 ms per reconnect with it, 0.58-0.65 and 0.72-0.81
without; istiod-py serve on the 1,000-namespace mesh 0.93-1.03 ms per proxy in
a reconnect storm instead of 1.20-1.33 (docs/benchmarks.md, "gRPC listener").
Every other server-side experiment of that release was tried the same way and
changed nothing beyond noise. Both listeners are supported code in that
release; the TLS xDS port, the CA and the agent run on either.

An operator's own GRPC_EXPERIMENTS is kept: ours is appended unless it names
the experiment already (either way round); ISTIOD_PY_GRPC_DEFAULTS=0 leaves
the environment untouched.
"""

from __future__ import annotations

import os

EXPERIMENTS = ("-event_engine_listener",)


def merged(current: str, ours: tuple[str, ...] = EXPERIMENTS) -> str:
    """`current` (a GRPC_EXPERIMENTS value) with `ours` appended, except those it names."""
    have = [e.strip() for e in current.split(",") if e.strip()]
    named = {e.lstrip("-") for e in have}
    return ",".join(have + [e for e in ours if e.lstrip("-") not in named])


def apply(environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    if environ.get("ISTIOD_PY_GRPC_DEFAULTS", "1") == "0":
        return
    environ["GRPC_EXPERIMENTS"] = merged(environ.get("GRPC_EXPERIMENTS", ""))
