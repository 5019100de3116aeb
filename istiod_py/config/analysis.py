"""Cross-reference analysis of loaded config, as istioctl analyze / istiod's analyzers
report it: warnings, never rejections (the resources still load and apply).

- IST0101 ReferencedResourceNotFound: a VirtualService destination subset that no
  DestinationRule for the host defines; a VirtualService (or one of its matches)
  bound to a Gateway that does not exist; a destination host not in the registry.
- ISTPY0001 FieldIgnored: a field that istiod_py accepts but that has no effect
  (stats names, fields Istio ignores too); see unsupported.ignored_fields.
- VirtualService delegation (translate/route/delegate.py): IST0101 for a delegate that
  does not exist; ISTPY0002 DelegateNotApplied for one that has hosts, is not
  exported to the root's namespace, or a delegate route whose matches conflict
  with the root's (those routes are dropped, as istiod drops them).
- ISTPY0003 NotPortableToIstiod: YAML istiod_py accepts as an extension but
  istiod's validation refuses: a Sidecar ingress `defaultEndpoint` on a host
  other than 127.0.0.1, 0.0.0.0, [::1], [::] (or unix://). istiod_py's one-host
  samples use 127.0.1.x (docs/istiod-differences.md).

`analyze(configs, services)` returns ConfigErrors located like load errors (file,
document, resource, field); the caller keeps them in a separate warnings list.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from istiod_py.config.model import Config, ConfigError
from istiod_py.config.unsupported import ignored_fields

DEFAULT_DOMAIN = "cluster.local"
REFERENCED_NOT_FOUND = "IST0101 ReferencedResourceNotFound"
FIELD_IGNORED = "ISTPY0001 FieldIgnored"
NOT_PORTABLE = "ISTPY0003 NotPortableToIstiod"
# The defaultEndpoint hosts istiod's ValidateSidecar accepts ("" is `:PORT`).
ISTIOD_DEFAULT_ENDPOINT_HOSTS = ("", "127.0.0.1", "0.0.0.0", "::1", "::")


def istiod_accepts_default_endpoint(value: str) -> bool:
    """istiod's rule for Sidecar ingress defaultEndpoint: unset, unix://PATH, or
    HOST:PORT with HOST one of ISTIOD_DEFAULT_ENDPOINT_HOSTS and PORT 1-65535."""
    if not value or value.startswith("unix://"):
        return True
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        return False
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host in ISTIOD_DEFAULT_ENDPOINT_HOSTS


def _not_portable(cfg: Config) -> Iterator[ConfigError]:
    spec: Any = cfg.spec
    if cfg.meta.kind != "Sidecar":
        return
    for i, ing in enumerate(spec.ingress):
        if not istiod_accepts_default_endpoint(ing.default_endpoint):
            yield _warning(
                cfg,
                f"spec.ingress[{i}].defaultEndpoint",
                f"{NOT_PORTABLE}: defaultEndpoint {ing.default_endpoint!r} is an istiod_py extension: istiod "
                "refuses it (it must be 127.0.0.1:PORT, 0.0.0.0:PORT, [::1]:PORT, [::]:PORT or unix://PATH)",
            )


def _fqdn(host: str, namespace: str, domain: str) -> str:
    # The same rule as translate/context.fqdn: short names are relative to the config's namespace.
    if "." in host or host.startswith("*"):
        return host
    return f"{host}.{namespace}.svc.{domain}"


def _host_matches(pattern: str, host: str) -> bool:
    if pattern == "*" or pattern == host:
        return True
    return pattern.startswith("*") and host.endswith(pattern[1:])


def _overlap(a: str, b: str) -> bool:
    return _host_matches(a, b) or _host_matches(b, a)


def _exported_to(export_to: Iterable[str], owner_ns: str, viewer_ns: str) -> bool:
    targets = list(export_to)
    if not targets:
        return True
    return any(t == "*" or (t == "." and viewer_ns == owner_ns) or t == viewer_ns for t in targets)


def _hostnames(services: Any) -> list[str]:
    """Accepts MeshState.services (a mapping by hostname), Services, or hostnames."""
    if isinstance(services, Mapping):
        return [str(h) for h in services]
    out = []
    for s in services:
        out.append(s if isinstance(s, str) else str(s.hostname))
    return out


def _warning(cfg: Config, path: str, message: str) -> ConfigError:
    m = cfg.meta
    return ConfigError(m.source, m.doc_index, message, m.kind, m.namespace, m.name, path)


def _not_found(cfg: Config, path: str, what: str, name: str) -> ConfigError:
    return _warning(cfg, path, f'{REFERENCED_NOT_FOUND}: Referenced {what} not found: "{name}"')


def _destinations(spec: Any) -> Iterator[tuple[str, Any]]:
    """(path, Destination) of every route and mirror destination of a VirtualService."""
    for i, r in enumerate(spec.http):
        for j, d in enumerate(r.route):
            if d.HasField("destination"):
                yield f"spec.http[{i}].route[{j}].destination", d.destination
        if r.HasField("mirror"):
            yield f"spec.http[{i}].mirror", r.mirror
        for j, mp in enumerate(r.mirrors):
            if mp.HasField("destination"):
                yield f"spec.http[{i}].mirrors[{j}].destination", mp.destination
    for kind in ("tls", "tcp"):
        for i, rt in enumerate(getattr(spec, kind)):
            for j, d in enumerate(rt.route):
                if d.HasField("destination"):
                    yield f"spec.{kind}[{i}].route[{j}].destination", d.destination


def _gateway_refs(spec: Any) -> Iterator[tuple[str, str]]:
    for i, g in enumerate(spec.gateways):
        yield f"spec.gateways[{i}]", g
    for i, r in enumerate(spec.http):
        for j, m in enumerate(r.match):
            for k, g in enumerate(m.gateways):
                yield f"spec.http[{i}].match[{j}].gateways[{k}]", g
    for kind in ("tls", "tcp"):
        for i, rt in enumerate(getattr(spec, kind)):
            for j, m in enumerate(rt.match):
                for k, g in enumerate(m.gateways):
                    yield f"spec.{kind}[{i}].match[{j}].gateways[{k}]", g


def _subset_defined(drs: list[Config], host: str, subset: str, viewer_ns: str, domain: str) -> bool:
    for dr in drs:
        spec: Any = dr.spec
        if not _exported_to(spec.export_to, dr.meta.namespace, viewer_ns):
            continue
        if not _overlap(_fqdn(spec.host, dr.meta.namespace, domain), host):
            continue
        if any(s.name == subset for s in spec.subsets):
            return True
    return False


def analyze(configs: Iterable[Config], services: Any, domain: str = DEFAULT_DOMAIN) -> list[ConfigError]:
    """Warnings for `configs` (loaded, valid) against the registry's `services`
    (MeshState.services, Services, or hostnames)."""
    configs = list(configs)
    hosts = _hostnames(services)
    drs = [c for c in configs if c.meta.kind == "DestinationRule"]
    gateways = {f"{c.meta.namespace}/{c.meta.name}" for c in configs if c.meta.kind == "Gateway"}
    out: list[ConfigError] = []
    for cfg in configs:
        spec: Any = cfg.spec
        ns = cfg.meta.namespace
        if cfg.meta.kind == "VirtualService":
            for path, ref in _gateway_refs(spec):
                if ref == "mesh":
                    continue
                full = ref if "/" in ref else f"{ns}/{ref}"
                if full not in gateways:
                    out.append(_not_found(cfg, path, "gateway", full))
            for path, dest in _destinations(spec):
                if not dest.host:
                    continue
                host = _fqdn(dest.host, ns, domain)
                if not any(_overlap(host, h) for h in hosts):
                    out.append(_not_found(cfg, f"{path}.host", "host", dest.host))
                elif dest.subset and not _subset_defined(drs, host, dest.subset, ns, domain):
                    out.append(
                        _not_found(
                            cfg, f"{path}.subset", "host+subset in destinationrule", f"{dest.host}+{dest.subset}"
                        )
                    )
        for p in ignored_fields(cfg.meta.kind, spec):
            out.append(_warning(cfg, p.path, f"{FIELD_IGNORED}: {p.message}"))
        out += _not_portable(cfg)
    from istiod_py.translate.route import delegate  # translate imports config: import late

    out += [_warning(i.config, i.path, i.message) for i in delegate.issues(configs, domain)]
    return out
