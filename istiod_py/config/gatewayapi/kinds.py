"""The Gateway API kinds istiod_py reads, and their strict loading.

Each kind parses through its field-for-field proto (protos/gateway_api/v1) with the
same parser and error format as the Istio kinds, then through `validate.py` (the
enum values and required fields the Go types declare with kubebuilder markers).

The Gateway API `Gateway` is stored under the internal kind `KubernetesGateway`
(istiod's name for it too), so it never collides with Istio's `Gateway`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from gateway_api.v1 import gateway_api_pb2 as gw
from google.protobuf.message import Message

from istiod_py.config.kube_types import KubeParseError, parse_object_meta
from istiod_py.config.model import DEFAULT_NAMESPACE, Config, ConfigError, ConfigMeta
from istiod_py.config.proto_yaml import parse_message

from .validate import VALIDATORS

GROUP = "gateway.networking.k8s.io"
KUBERNETES_GATEWAY = "KubernetesGateway"
_TOP_LEVEL_FIELDS = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})


@dataclass(frozen=True)
class GatewayKind:
    kind: str  # as users write it
    internal: str  # ConfigMeta.kind
    versions: tuple[str, ...]
    message: type[Message]
    channel: str  # "standard" | "experimental"


def _k(kind: str, versions: tuple[str, ...], message: type[Message], channel: str = "standard") -> GatewayKind:
    return GatewayKind(kind, KUBERNETES_GATEWAY if kind == "Gateway" else kind, versions, message, channel)


# Versions served by the v1.6.1 CRDs, plus v1alpha2 for the kinds that had it (same
# fields): Istio's own bookinfo-gateway-demo.yaml still uses it.
KINDS: Mapping[str, GatewayKind] = MappingProxyType(
    {
        k.kind: k
        for k in (
            _k("GatewayClass", ("v1", "v1beta1", "v1alpha2"), gw.GatewayClassSpec),
            _k("Gateway", ("v1", "v1beta1", "v1alpha2"), gw.GatewaySpec),
            _k("HTTPRoute", ("v1", "v1beta1", "v1alpha2"), gw.HTTPRouteSpec),
            _k("GRPCRoute", ("v1", "v1alpha2"), gw.GRPCRouteSpec),
            _k("ReferenceGrant", ("v1", "v1beta1", "v1alpha2"), gw.ReferenceGrantSpec),
            _k("TCPRoute", ("v1", "v1alpha2"), gw.TCPRouteSpec, "experimental"),
            _k("TLSRoute", ("v1", "v1alpha3", "v1alpha2"), gw.TLSRouteSpec, "experimental"),
        )
    }
)
INTERNAL_KINDS = frozenset(k.internal for k in KINDS.values())

# message, field path, kind, namespace, name -> a located ConfigError (the loader's _Doc.error)
ErrorFn = Callable[[str, str, str, str, str], ConfigError]


def is_gateway_api(api_version: str) -> bool:
    return api_version.partition("/")[0] == GROUP


def load(
    body: Mapping[str, Any], api_version: str, source: str, doc_index: int, error: ErrorFn
) -> tuple[Config | None, list[ConfigError]]:
    """One Gateway API object -> a Config (kind: the internal kind) or the errors that reject it."""
    kind = str(body.get("kind"))
    info = KINDS.get(kind)
    version = api_version.partition("/")[2]
    if info is None:
        supported = ", ".join(sorted(KINDS))
        msg = f"{GROUP} kind {kind!r} is not supported by istiod_py: supported Gateway API kinds are {supported}"
        return None, [error(msg, "kind", kind, "", "")]
    if version not in info.versions:
        accepted = ", ".join(f"{GROUP}/{v}" for v in info.versions)
        return None, [
            error(
                f"apiVersion {api_version!r} is not served for {kind}: use one of {accepted}",
                "apiVersion",
                kind,
                "",
                "",
            )
        ]
    try:
        meta = parse_object_meta(body.get("metadata"), DEFAULT_NAMESPACE)
    except KubeParseError as exc:
        return None, [error(exc.message, exc.path, info.internal, "", "")]
    errors: list[ConfigError] = []
    for key in body:
        if key not in _TOP_LEVEL_FIELDS:
            errors.append(
                error(
                    f"unknown top-level field {key!r}: did you mean to put it under 'spec'?",
                    str(key),
                    info.internal,
                    meta.namespace,
                    meta.name,
                )
            )
    spec = info.message()
    problems = parse_message(body.get("spec") or {}, spec, "spec")
    if not problems:
        problems = VALIDATORS[kind](spec)
    errors += [error(p.message, p.path, info.internal, meta.namespace, meta.name) for p in problems]
    if errors:
        return None, errors
    cfg = Config(
        ConfigMeta(
            info.internal, api_version, meta.name, meta.namespace, meta.labels, meta.annotations, source, doc_index
        ),
        spec,
    )
    return cfg, []
