"""Preview: what applying a new config would change for each proxy (issue 16).

Two MeshStates (the current one and the one NEW would make, built by a fresh
Aggregator exactly as the file source would) are translated for each proxy;
resources are compared by content version, changed ones get a field-level diff
(diff.py), and each change is attributed to the Istio configs whose content
differs between the two states and that are in the resource's provenance (or to
the endpoints of its host). The push NEW would trigger comes from the same
`registry.aggregate.diff` the push pipeline uses (full or EDS-only), with the
proxies it touches and the bytes of the SotW responses they would get.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from istiod_py.cache.resources import Resources
from istiod_py.config.loader import LoadResult, load_directory, load_text
from istiod_py.config.store import reject_duplicates
from istiod_py.model import MeshConfig, MeshState, Proxy, parse_proxy
from istiod_py.registry.aggregate import Aggregator, SourceSnapshot, diff
from istiod_py.xds.types import TypeUrl

from .diff import field_diff

Generator = Callable[[MeshState, Proxy, str], Resources]
TYPES = (TypeUrl.CLUSTER, TypeUrl.ENDPOINT, TypeUrl.LISTENER, TypeUrl.ROUTE)
FILE_SOURCE = "files"


class PreviewError(ValueError):
    """NEW does not load: the message names file, resource and field."""


def load_dir(path: str | Path) -> LoadResult:
    return _checked(reject_duplicates(load_directory(path)))


def load_bundle(text: str, source: str = "<preview bundle>") -> LoadResult:
    return _checked(reject_duplicates(load_text(text, source)))


def _checked(result: LoadResult) -> LoadResult:
    if result.errors:
        raise PreviewError("; ".join(str(e) for e in result.errors))
    return result


def state_of(result: LoadResult, mesh: MeshConfig, others: Mapping[str, SourceSnapshot] | None = None) -> MeshState:
    """The state the file source would make from `result`, beside the other sources."""
    agg = Aggregator(mesh=mesh)
    for name, snap in (others or {}).items():
        if name != FILE_SOURCE:
            agg.set_source(name, snap)
    agg.set_source(
        FILE_SOURCE, SourceSnapshot(tuple(result.configs), tuple(result.services), tuple(result.endpoint_slices))
    )
    return agg.build()


def _digests(state: MeshState) -> dict[str, str]:
    out = {}
    for kind, items in state.configs.items():
        for c in items:
            body = c.spec.SerializeToString(deterministic=True) + repr(sorted(c.meta.labels.items())).encode()
            out[f"{kind}/{c.meta.namespace}/{c.meta.name}"] = hashlib.blake2b(body, digest_size=8).hexdigest()
    return out


def changed_configs(old: MeshState, new: MeshState) -> list[str]:
    a, b = _digests(old), _digests(new)
    return sorted(r for r in set(a) | set(b) if a.get(r) != b.get(r))


def workload_proxies(*states: MeshState) -> list[Proxy]:
    """A sidecar per WorkloadEntry (offline preview has no connected proxies)."""
    out: dict[str, Proxy] = {}
    for state in states:
        for c in state.of_kind("WorkloadEntry"):
            spec: Any = c.spec
            ns = c.meta.namespace
            node = f"sidecar~{spec.address}~{c.meta.name}.{ns}~{ns}.svc.cluster.local"
            meta = {"NAMESPACE": ns, "LABELS": dict(spec.labels), "INTERCEPTION_MODE": "NONE"}
            if spec.service_account:
                meta["SERVICE_ACCOUNT"] = spec.service_account
            p = parse_proxy(node, meta)
            out.setdefault(p.id, p)
    return [out[k] for k in sorted(out)]


def named_proxy(text: str) -> Proxy:
    """`NODE_ID[@k=v,k2=v2]`: a proxy named on the command line, with its labels."""
    node, _, labels = text.partition("@")
    pairs = dict(kv.split("=", 1) for kv in labels.split(",") if "=" in kv)
    return parse_proxy(node, {"LABELS": pairs, "INTERCEPTION_MODE": "NONE"})


def _host_of(name: str) -> str:
    return name.rsplit("|", 1)[-1]


def _causes(
    t: str, name: str, old: Resources, new: Resources, changed: set[str], hosts: Mapping[str, list[str]]
) -> list[str]:
    refs = {r.partition(":")[0] for r in old.origins_of(name) | new.origins_of(name)}
    out = sorted(refs & changed)
    host = _host_of(name)
    if t in (TypeUrl.ENDPOINT, TypeUrl.CLUSTER) and host in hosts:
        out += [r for r in hosts[host] if r not in out] or [f"endpoints of {host}"]
    return out or [_NO_CONFIG]


_NO_CONFIG = "(no Istio config in its provenance changed: services or mesh)"


def _we_at(old: MeshState, new: MeshState, changed: set[str], address: str) -> list[str]:
    """Changed WorkloadEntries at `address`: the proxy's own workload (its inbound side)."""
    out = set()
    for state in (old, new):
        for c in state.of_kind("WorkloadEntry"):
            ref = f"WorkloadEntry/{c.meta.namespace}/{c.meta.name}"
            if ref in changed and str(getattr(c.spec, "address", "")) == address:
                out.add(ref)
    return sorted(out)


def _endpoint_causes(old: MeshState, new: MeshState, changed: list[str]) -> dict[str, list[str]]:
    """Per host whose endpoints changed: the changed WorkloadEntries behind them."""
    entries = {r for r in changed if r.startswith("WorkloadEntry/")}
    by_address: dict[str, set[str]] = {}
    for state in (old, new):
        for c in state.of_kind("WorkloadEntry"):
            ref = f"WorkloadEntry/{c.meta.namespace}/{c.meta.name}"
            if ref in entries:
                by_address.setdefault(str(getattr(c.spec, "address", "")), set()).add(ref)
    out: dict[str, list[str]] = {}
    for h in set(old.endpoint_digests) | set(new.endpoint_digests):
        if old.endpoint_digests.get(h) == new.endpoint_digests.get(h):
            continue
        refs = {r for st in (old, new) for ep in st.endpoints.get(h, ()) for r in by_address.get(ep.address, ())}
        out[h] = sorted(refs)
    return out


def preview(
    old_state: MeshState,
    new_state: MeshState,
    proxies: Iterable[Proxy],
    old_gen: Generator,
    new_gen: Generator,
    versions: bool = False,
) -> dict[str, Any]:
    change = diff(old_state, new_state)
    changed = changed_configs(old_state, new_state)
    changed_set = set(changed)
    hosts = _endpoint_causes(old_state, new_state, changed)
    per_proxy = []
    total_bytes = 0
    for proxy in proxies:
        resources: list[dict[str, Any]] = []
        size = 0
        after: dict[str, dict[str, str]] = {}
        for t in TYPES:
            old = old_gen(old_state, proxy, t)
            new = new_gen(new_state, proxy, t)
            short = TypeUrl.SHORT.get(t, t)
            if versions:
                after[short] = {n: b.version for n, b in sorted(new.index.items())}
            if old.version == new.version and old.index.keys() == new.index.keys():
                continue
            type_changed = False
            for name in sorted(set(old.index) | set(new.index)):
                a, b = old.get(name), new.get(name)
                if a is not None and b is not None and a.version == b.version:
                    continue
                type_changed = True
                entry: dict[str, Any] = {"type": short, "name": name}
                if a is None and b is not None:
                    entry["op"] = "added"
                    size += len(b.sotw_entry) if t in (TypeUrl.ROUTE, TypeUrl.ENDPOINT) else 0
                elif b is None:
                    entry["op"] = "removed"
                elif a is not None:
                    entry["op"] = "changed"
                    entry["diff"] = field_diff(a.message(), b.message())
                    size += len(b.sotw_entry) if t in (TypeUrl.ROUTE, TypeUrl.ENDPOINT) else 0
                entry["causes"] = _causes(t, name, old, new, changed_set, hosts)
                resources.append(entry)
            if type_changed and t in (TypeUrl.CLUSTER, TypeUrl.LISTENER):
                size += len(new.joined())  # wildcard types: SotW sends the whole set
        # As the push does: a proxy whose own address's endpoints changed gets a full push.
        full = change.full or proxy.ip in change.addresses
        for r in resources:
            if r["causes"] == [_NO_CONFIG] and _we_at(old_state, new_state, changed_set, proxy.ip):
                r["causes"] = _we_at(old_state, new_state, changed_set, proxy.ip)
        push = "none" if not resources else ("full" if full else "eds")
        total_bytes += size
        item: dict[str, Any] = {"proxy": proxy.id, "push": push, "bytes": size, "resources": resources}
        if versions:
            item["after"] = after
        per_proxy.append(item)
    touched = sum(1 for p in per_proxy if p["push"] != "none")
    return {
        "changes": bool(touched) or bool(changed),
        "configs_changed": changed,
        "push": {
            "kind": ("full" if change.full else "eds") if touched else "none",
            "reason": change.reason if touched else "",
            "proxies_touched": touched,
            "proxies": len(per_proxy),
            "bytes": total_bytes,
        },
        "proxies": per_proxy,
    }


def render_text(report: dict[str, Any]) -> str:
    push = report["push"]
    lines = [f"configs changed: {', '.join(report['configs_changed']) or 'none'}"]
    if push["kind"] == "none":
        lines.append(f"push: none (0 of {push['proxies']} proxies touched)")
    else:
        lines.append(
            f"push: {push['kind']} ({push['reason']}) to {push['proxies_touched']} of {push['proxies']} proxies, "
            f"{push['bytes']} bytes"
        )
    for p in report["proxies"]:
        if p["push"] == "none":
            lines.append(f"proxy {p['proxy']}: no change")
            continue
        lines.append(f"proxy {p['proxy']}: {p['push']} push, {len(p['resources'])} resources, {p['bytes']} bytes")
        for r in p["resources"]:
            mark = {"added": "+", "removed": "-", "changed": "~"}[r["op"]]
            lines.append(f"  {mark} {r['type']} {r['name']}  <- {', '.join(r['causes'])}")
            for d in r.get("diff", []):
                lines.append(f"      {d}")
    return "\n".join(lines) + "\n"
