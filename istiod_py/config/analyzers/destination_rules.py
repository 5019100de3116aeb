"""DestinationRule checks, as Istio's destinationrule analyzers:

- IST0128 / IST0129: TLS SIMPLE or MUTUAL to the upstream with nothing to verify
  the server with (no caCertificates, no credentialName, not insecureSkipVerify),
  for the whole host or for one port.
- IST0173: a subset whose labels select none of the host's endpoints (503 UH).
  Checked only for hosts with endpoints: files that describe no workloads of a
  service say nothing about which pods exist.
- IST0174: a host that matches no service of the registry."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from istiod_py.config.analyzers.context import Context, fqdn, hosts_overlap, selects
from istiod_py.config.analyzers.messages import Message, new

UNVERIFIED_MODES = ("SIMPLE", "MUTUAL")


def _mode(tls: Any) -> str:
    fd = tls.DESCRIPTOR.fields_by_name["mode"]
    v = fd.enum_type.values_by_number.get(tls.mode)
    return v.name if v is not None else ""


def _unverified(tls: Any) -> bool:
    skip = tls.HasField("insecure_skip_verify") and tls.insecure_skip_verify.value
    return _mode(tls) in UNVERIFIED_MODES and not tls.ca_certificates and not tls.credential_name and not skip


def server_verification(ctx: Context) -> Iterator[Message]:
    for dr in ctx.of("DestinationRule"):
        spec: Any = dr.spec
        if not spec.HasField("traffic_policy"):
            continue
        tp = spec.traffic_policy
        if tp.HasField("tls") and _unverified(tp.tls):
            yield new("IST0128", dr, dr.meta.name, dr.meta.namespace, _mode(tp.tls), spec.host,
                      field="spec.trafficPolicy.tls")  # fmt: skip
        for i, pl in enumerate(tp.port_level_settings):
            if pl.HasField("tls") and _unverified(pl.tls):
                yield new("IST0129", dr, dr.meta.name, dr.meta.namespace, _mode(pl.tls), spec.host,
                          str(pl.port.number), field=f"spec.trafficPolicy.portLevelSettings[{i}].tls")  # fmt: skip


def hosts_and_subsets(ctx: Context) -> Iterator[Message]:
    for dr in ctx.of("DestinationRule"):
        spec: Any = dr.spec
        host = fqdn(spec.host, dr.meta.namespace, ctx.domain)
        matching = [h for h in ctx.services if hosts_overlap(host, h)]
        if not matching:
            yield new("IST0174", dr, spec.host, field="spec.host")
            continue
        endpoints = [e for h in matching for e in ctx.endpoints.get(h, ())]
        if not endpoints:
            continue
        for i, s in enumerate(spec.subsets):
            labels = dict(s.labels)
            if labels and not any(selects(labels, e.labels) for e in endpoints):
                yield new("IST0173", dr, s.name, field=f"spec.subsets[{i}]")


def analyze(ctx: Context) -> Iterator[Message]:
    yield from server_verification(ctx)
    yield from hosts_and_subsets(ctx)
