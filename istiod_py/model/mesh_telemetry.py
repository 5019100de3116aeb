"""The telemetry fields of mesh config, parsed strictly through the project's protos.

`accessLogFile`, `accessLogEncoding`, `accessLogFormat`, `enableTracing`,
`defaultConfig.tracing`, `defaultProviders` and `extensionProviders` as Istio's
MeshConfig defines them. Every extension provider is parsed (ext_authz ones too,
so a typo in any provider is an error naming it); the translator reads the typed
messages here, while ext_authz still reads the raw mapping kept on MeshConfig.

Istio's built-in providers are added when the mesh config does not define them:
`prometheus` (metrics) and `envoy` (file access log to /dev/stdout), as in
Istio's default mesh config, so `Telemetry` resources naming them work unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from istio.mesh.v1alpha1.telemetry_config_pb2 import DefaultProviders, ExtensionProvider, Tracing

from istiod_py.config.proto_yaml import parse_message

ENCODINGS = ("TEXT", "JSON")
# Istio's default mesh config defines these two; a user's provider of the same name replaces them.
BUILTIN_PROMETHEUS = "prometheus"
BUILTIN_ENVOY = "envoy"


class MeshTelemetryError(ValueError):
    pass


def _builtin_providers() -> tuple[ExtensionProvider, ...]:
    prom = ExtensionProvider(name=BUILTIN_PROMETHEUS)
    prom.prometheus.SetInParent()
    envoy = ExtensionProvider(name=BUILTIN_ENVOY)
    envoy.envoy_file_access_log.path = "/dev/stdout"
    return (prom, envoy)


def _default_default_providers() -> DefaultProviders:
    # Istio's default profile (1.18+): metrics go to prometheus unless told otherwise.
    return DefaultProviders(metrics=[BUILTIN_PROMETHEUS])


@dataclass(frozen=True)
class MeshTelemetry:
    access_log_file: str = ""
    access_log_encoding: str = "TEXT"
    access_log_format: str = ""
    enable_tracing: bool = True
    # defaultConfig.tracing as given; None when the mesh config does not set it, because
    # then no legacy tracer is configured (istiod would point at zipkin.istio-system:9411,
    # which a file-only mesh does not have).
    default_tracing: Tracing | None = None
    default_providers: DefaultProviders = field(default_factory=_default_default_providers)
    providers: tuple[ExtensionProvider, ...] = field(default_factory=_builtin_providers)

    def provider(self, name: str) -> ExtensionProvider | None:
        for p in self.providers:
            if p.name == name:
                return p
        return None

    @property
    def provider_names(self) -> list[str]:
        return sorted(p.name for p in self.providers)


def _parse(value: Any, message: Any, path: str, source: str) -> None:
    problems = parse_message(value, message, path)
    if problems:
        raise MeshTelemetryError("; ".join(f"{source}: {p.path}: {p.message}" for p in problems))


def parse_mesh_telemetry(raw: Mapping[str, Any], source: str) -> MeshTelemetry:
    encoding = str(raw.get("accessLogEncoding", "TEXT"))
    if encoding not in ENCODINGS:
        raise MeshTelemetryError(f"{source}: accessLogEncoding {encoding!r}: use TEXT or JSON")
    for key in ("accessLogFile", "accessLogFormat"):
        if not isinstance(raw.get(key, ""), str):
            raise MeshTelemetryError(f"{source}: {key} must be a string")
    enable = raw.get("enableTracing", True)
    if not isinstance(enable, bool):
        raise MeshTelemetryError(f"{source}: enableTracing must be true or false")
    tracing: Tracing | None = None
    default_config = raw.get("defaultConfig") or {}
    if not isinstance(default_config, Mapping):
        raise MeshTelemetryError(f"{source}: defaultConfig must be a map")
    if "tracing" in default_config:
        tracing = Tracing()
        _parse(default_config["tracing"] or {}, tracing, "defaultConfig.tracing", source)
        if not 0.0 <= tracing.sampling <= 100.0:
            raise MeshTelemetryError(f"{source}: defaultConfig.tracing.sampling must be between 0 and 100")
    defaults = _default_default_providers()
    if "defaultProviders" in raw:
        defaults = DefaultProviders()
        _parse(raw["defaultProviders"] or {}, defaults, "defaultProviders", source)
    providers = _parse_providers(raw.get("extensionProviders") or [], source)
    telemetry = MeshTelemetry(
        access_log_file=str(raw.get("accessLogFile", "")),
        access_log_encoding=encoding,
        access_log_format=str(raw.get("accessLogFormat", "")),
        enable_tracing=enable,
        default_tracing=tracing,
        default_providers=defaults,
        providers=providers,
    )
    for kind in ("tracing", "metrics", "access_logging"):
        for name in getattr(defaults, kind):
            if telemetry.provider(name) is None:
                known = ", ".join(telemetry.provider_names)
                raise MeshTelemetryError(
                    f"{source}: defaultProviders.{_camel(kind)}: provider {name!r} is not in extensionProviders "
                    f"(known: {known})"
                )
    return telemetry


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(r.title() for r in rest)


def _parse_providers(items: Sequence[Any], source: str) -> tuple[ExtensionProvider, ...]:
    if not isinstance(items, list):
        raise MeshTelemetryError(f"{source}: extensionProviders must be a list")
    parsed: list[ExtensionProvider] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        path = f"extensionProviders[{i}]"
        p = ExtensionProvider()
        _parse(item, p, path, source)
        if not p.name:
            raise MeshTelemetryError(f"{source}: {path}.name is required")
        if p.name in seen:
            raise MeshTelemetryError(f"{source}: {path}.name: provider {p.name!r} is defined twice")
        if p.WhichOneof("provider") is None:
            raise MeshTelemetryError(f"{source}: {path}: provider {p.name!r} sets no provider kind")
        seen.add(p.name)
        parsed.append(p)
    builtins = tuple(b for b in _builtin_providers() if b.name not in seen)
    return (*parsed, *builtins)
