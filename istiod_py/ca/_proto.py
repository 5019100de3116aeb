"""The generated CA service modules, typed as Any.

Imported dynamically because the generated `ca_pb2.pyi` does not pass `mypy --strict`
(bare `Mapping` in its stub); importing it statically would fail every module that uses it.
"""

from __future__ import annotations

import importlib
from typing import Any

ca_pb2: Any = importlib.import_module("istio.v1.auth.ca_pb2")
ca_pb2_grpc: Any = importlib.import_module("istio.v1.auth.ca_pb2_grpc")
