"""The shared vocabulary of the field-support tables: how a field is handled
(`Support`), the module paths the tables name, and the presence helpers the
per-kind rejection checks use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from istiod_py.config.proto_yaml import FieldProblem

Problems = list[FieldProblem]

NOT_YET = "not supported by istiod_py yet"

# Accepted, but analysis.analyze() warns: they only name stats, or Istio ignores them too.
WARN_STAT_PREFIX = "has no effect in istiod_py (it only names the route's stats)"
WARN_SERVER_NAME = "has no effect in istiod_py (it only names the server's stats)"
WARN_ISTIO_IGNORES = "has no effect (Istio does not implement it either)"


@dataclass(frozen=True)
class Support:
    """How one field is handled. status: supported | rejected | partial | warned."""

    status: str
    module: str = ""
    message: str = ""
    note: str = ""

    def describe(self) -> str:
        note = f" ({self.note})" if self.note else ""
        if self.status == "supported":
            return f"supported: {self.module}{note}"
        if self.status == "rejected":
            return f"rejected{note}: {self.message}"
        if self.status == "partial":
            return f"supported: {self.module}; rejected{note}: {self.message}"
        return f"accepted with a warning{note}: {self.message}"


def _s(module: str, note: str = "") -> Support:
    return Support("supported", module=module, note=note)


def _r(message: str, note: str = "when set") -> Support:
    return Support("rejected", message=message, note=note)


def _p(module: str, message: str, note: str) -> Support:
    return Support("partial", module=module, message=message, note=note)


def _w(message: str, note: str = "") -> Support:
    return Support("warned", message=message, note=note)


T = "translate/"
HTTPROUTE = f"{T}route/httproute.py"
TP = f"{T}traffic/traffic_policy.py"
L4 = f"{T}sidecar/tcproute.py, {T}sidecar/tlsroute.py (sidecars), {T}gateway/listeners.py (gateways)"
REG = "registry/file.py"
CRED = f"{T}gateway/credentials.py"
DELEGATE = f"{T}route/delegate.py"


def _set(msg: Any, name: str) -> bool:
    """Proto presence, or non-default for scalars / non-empty for repeated and maps."""
    fd = msg.DESCRIPTOR.fields_by_name[name]
    if fd.is_repeated:
        return len(getattr(msg, name)) > 0
    if fd.message_type is not None or fd.containing_oneof is not None or fd.has_presence:
        return bool(msg.HasField(name))
    return bool(getattr(msg, name))


def _json(msg: Any, name: str) -> str:
    return str(msg.DESCRIPTOR.fields_by_name[name].json_name)


def _reject(msg: Any, names: tuple[str, ...], path: str, message: str, out: Problems) -> None:
    for n in names:
        if _set(msg, n):
            out.append(FieldProblem(f"{path}.{_json(msg, n)}", message))
