"""istiod_py sets gRPC core's experiments before grpc is imported (grpc_env.py):
ours are added to an operator's GRPC_EXPERIMENTS, never over what it says, and
ISTIOD_PY_GRPC_DEFAULTS=0 leaves the environment alone."""

from __future__ import annotations

import os
import subprocess
import sys

from istiod_py.grpc_env import EXPERIMENTS, apply, merged


def test_ours_are_appended_unless_named() -> None:
    assert merged("") == "-event_engine_listener"
    assert merged("tcp_rcv_lowat") == "tcp_rcv_lowat,-event_engine_listener"
    assert merged("event_engine_listener") == "event_engine_listener"  # the operator's choice wins
    assert merged("-event_engine_listener, tcp_rcv_lowat") == "-event_engine_listener,tcp_rcv_lowat"


def test_off_switch() -> None:
    env = {"ISTIOD_PY_GRPC_DEFAULTS": "0", "GRPC_EXPERIMENTS": "x"}
    apply(env)
    assert env["GRPC_EXPERIMENTS"] == "x"
    env = {}
    apply(env)
    assert env["GRPC_EXPERIMENTS"] == ",".join(EXPERIMENTS)


def test_set_before_grpc_is_imported() -> None:
    """A fresh interpreter importing istiod_py has the setting in its environment
    by the time grpc is imported (gRPC core reads it then, not later)."""
    code = (
        "import sys, os; import istiod_py; assert 'grpc' not in sys.modules, 'grpc imported first';"
        "import grpc; print(os.environ['GRPC_EXPERIMENTS'])"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("GRPC_EXPERIMENTS", "ISTIOD_PY_GRPC_DEFAULTS")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "-event_engine_listener"
