"""Every Istio field is implemented or rejected by name: the rejections, the
cross-reference warnings, and docs/field-support.md covering every proto field."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from istiod_py.config import unsupported as u
from istiod_py.config.analysis import analyze
from istiod_py.config.loader import load_text
from istiod_py.config.model import KINDS

DOC = Path(__file__).resolve().parents[2] / "docs" / "field-support.md"


def _doc(kind: str, spec: str) -> str:
    return f"apiVersion: networking.istio.io/v1\nkind: {kind}\nmetadata: {{name: x, namespace: ns}}\nspec:\n{spec}"


ROUTE = "    route: [{destination: {host: r}}]\n"
VS = "  hosts: [r]\n  http:\n"
HTTP = "  http:\n  - route: [{destination: {host: r}}]\n"
GW_TLS_FILES = "serverCertificate: /c.pem, privateKey: /k.pem"

# (kind, yaml, field path, message)
# fmt: off
REJECTIONS = [
    # DestinationRule
    ("DestinationRule", "  host: r\n  trafficPolicy: {tunnel: {protocol: CONNECT, targetHost: h, targetPort: 8080}}\n",
     "spec.trafficPolicy.tunnel", u.MSG_TUNNEL),
    ("DestinationRule", "  host: r\n  trafficPolicy: {proxyProtocol: {version: V1}}\n",
     "spec.trafficPolicy.proxyProtocol", u.MSG_PROXY_PROTOCOL),
    ("DestinationRule", "  host: r\n  subsets: [{name: v1, trafficPolicy: {tunnel: {protocol: POST, targetHost: h,"
     " targetPort: 1}}}]\n", "spec.subsets[0].trafficPolicy.tunnel", u.MSG_TUNNEL),
    ("DestinationRule", "  host: r\n  workloadSelector: {matchLabels: {app: a}}\n",
     "spec.workloadSelector", u.MSG_DR_WORKLOAD_SELECTOR),
    # Gateway
    ("Gateway", "  servers: [{port: {number: 443, name: tls, protocol: TLS}, hosts: ['*'],"
     f" tls: {{mode: SIMPLE, {GW_TLS_FILES}}}}}]\n", "spec.servers[0].tls.mode", u.MSG_GW_TLS_TERMINATE_TCP),
    ("Gateway", "  servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'],"
     " tls: {mode: ISTIO_MUTUAL}}]\n", "spec.servers[0].tls.mode", u.MSG_GW_ISTIO_MUTUAL),
    ("Gateway", "  servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'],"
     " tls: {mode: AUTO_PASSTHROUGH}}]\n", "spec.servers[0].tls.mode", u.MSG_GW_AUTO_PASSTHROUGH_PROTOCOL),
    ("Gateway", "  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*'],"
     f" tls: {{mode: SIMPLE, {GW_TLS_FILES}}}}}]\n", "spec.servers[0].tls", u.MSG_GW_PLAINTEXT_TLS),
    ("Gateway", "  servers:\n  - {port: {number: 443, name: http, protocol: HTTP}, hosts: [a.com]}\n"
     "  - {port: {number: 443, name: https, protocol: HTTPS}, hosts: [b.com],"
     f" tls: {{mode: SIMPLE, {GW_TLS_FILES}}}}}\n",
     "spec.servers[1].port.protocol", u.MSG_GW_MIXED_PORT),
    ("Gateway", "  servers:\n  - {port: {number: 8000, name: http, protocol: HTTP}, hosts: [a.com]}\n"
     "  - {port: {number: 8000, name: tcp, protocol: TCP}, hosts: ['*']}\n",
     "spec.servers[1].port.protocol", u.MSG_GW_MIXED_PORT),
    ("Gateway", "  servers: [{port: {number: 53, name: dns, protocol: UDP}, hosts: ['*']}]\n",
     "spec.servers[0].port.protocol", u.MSG_GW_PROTOCOL),
    # VirtualService
    ("VirtualService", VS + "  - fault: {delay: {exponentialDelay: 1s, percentage: {value: 10}}}\n" + ROUTE,
     "spec.http[0].fault.delay.exponentialDelay", u.MSG_EXPONENTIAL_DELAY),
    ("VirtualService", VS + "  - fault: {abort: {http2Error: REFUSED_STREAM}}\n" + ROUTE,
     "spec.http[0].fault.abort.http2Error", u.MSG_HTTP2_ERROR),
    ("VirtualService", "  hosts: [r]\n  tcp: [{match: [{sourceSubnet: 10.0.0.0/8}],"
     " route: [{destination: {host: r}}]}]\n",
     "spec.tcp[0].match[0].sourceSubnet", u.MSG_SOURCE_SUBNET),
    ("VirtualService", "  hosts: [r]\n  gateways: [gw]\n  tcp: [{match: [{sourceLabels: {app: a}}],"
     " route: [{destination: {host: r}}]}]\n", "spec.tcp[0].match[0].sourceLabels", u.MSG_L4_AT_GATEWAY),
    ("VirtualService", "  hosts: [r]\n  tls: [{match: [{sniHosts: [r], sourceNamespace: a, gateways: [ns/gw]}],"
     " route: [{destination: {host: r}}]}]\n", "spec.tls[0].match[0].sourceNamespace", u.MSG_L4_AT_GATEWAY),
    ("VirtualService", "  hosts: [r]\n  gateways: [istio-system/gw]\n"
     "  tcp: [{match: [{destinationSubnets: [10.0.0.1]}],"
     " route: [{destination: {host: r}}]}]\n", "spec.tcp[0].match[0].destinationSubnets", u.MSG_L4_AT_GATEWAY),
    ("VirtualService", "  hosts: [r]\n  gateways: [istio-system/gw, mesh]\n  exportTo: ['.']\n" + HTTP,
     "spec.exportTo", u.MSG_VS_EXPORT_TO_GATEWAY),
    # Sidecar
    ("Sidecar", "  ingress: [{port: {number: 80, name: http, protocol: HTTP}, tls: {mode: SIMPLE}}]\n",
     "spec.ingress[0].tls", u.MSG_SIDECAR_INGRESS_TLS),
    ("Sidecar", "  ingress: [{port: {number: 80, name: http, protocol: HTTP},"
     " connectionPool: {tcp: {maxConnections: 1}}}]\n",
     "spec.ingress[0].connectionPool", u.MSG_SIDECAR_CONNECTION_POOL),
    ("Sidecar", "  inboundConnectionPool: {http: {http1MaxPendingRequests: 1}}\n",
     "spec.inboundConnectionPool", u.MSG_SIDECAR_CONNECTION_POOL),
    ("Sidecar", "  outboundTrafficPolicy: {mode: ALLOW_ANY,"
     " egressProxy: {host: egress.istio-system.svc.cluster.local}}\n",
     "spec.outboundTrafficPolicy.egressProxy", u.MSG_EGRESS_PROXY),
    ("Sidecar", "  egress: [{hosts: ['./*'], captureMode: IPTABLES}]\n", "spec.egress[0].captureMode",
     u.MSG_CAPTURE_IPTABLES),
    # ServiceEntry / WorkloadEntry
    ("ServiceEntry", "  hosts: [a.com]\n  resolution: STATIC\n  ports: [{number: 80, name: http, protocol: HTTP}]\n"
     "  endpoints: [{address: 10.0.0.1, network: n2}]\n", "spec.endpoints[0].network", u.MSG_NETWORK),
    ("WorkloadEntry", "  address: 10.0.0.1\n  network: n2\n", "spec.network", u.MSG_NETWORK),
    # validation additions (fault abort)
    ("VirtualService", VS + "  - fault: {abort: {grpcStatus: NOPE, percentage: {value: 5}}}\n" + ROUTE,
     "spec.http[0].fault.abort.grpcStatus", "unknown gRPC status"),
    ("VirtualService", VS + "  - fault: {abort: {percentage: {value: 5}}}\n" + ROUTE,
     "spec.http[0].fault.abort", "httpStatus or grpcStatus"),
]
# fmt: on


@pytest.mark.parametrize(("kind", "spec", "field", "message"), REJECTIONS, ids=lambda v: str(v)[:40])
def test_unsupported_field_is_rejected_by_name(kind: str, spec: str, field: str, message: str) -> None:
    result = load_text(_doc(kind, spec), "f.yaml")
    assert result.configs == []
    assert len(result.errors) == 1, [str(e) for e in result.errors]
    err = result.errors[0]
    assert (err.kind, err.namespace, err.name, err.field) == (kind, "ns", "x", field)
    assert message in err.message, err.message


# fmt: off
ACCEPTED = [
    # The same fields where istiod_py does implement them.
    ("Sidecar", "  egress: [{hosts: ['./*'], bind: 127.0.2.1, captureMode: NONE}]\n"
     "  ingress: [{port: {number: 80, name: http, protocol: HTTP}, captureMode: DEFAULT}]\n"),
    ("VirtualService", "  hosts: [r]\n  tcp: [{match: [{sourceLabels: {app: a}, sourceNamespace: ns,"
     " destinationSubnets: [10.0.0.0/8]}], route: [{destination: {host: r}}]}]\n"),
    ("VirtualService", "  hosts: [r]\n  gateways: [gw, mesh]\n  tls: [{match: [{sniHosts: [r], gateways: [mesh],"
     " sourceLabels: {app: a}}], route: [{destination: {host: r}}]}]\n"),
    ("VirtualService", "  hosts: [r]\n  gateways: [gw]\n  exportTo: ['.']\n" + HTTP),
    ("VirtualService", "  hosts: [r]\n  gateways: [other/gw]\n  exportTo: [other, ns]\n" + HTTP),
    ("VirtualService", "  hosts: [r]\n  gateways: [other/gw]\n  exportTo: ['*']\n" + HTTP),
    ("VirtualService", "  hosts: [r]\n  exportTo: ['.']\n" + HTTP),
    ("VirtualService", VS + "  - fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 5}},"
     " delay: {fixedDelay: 1s, percent: 10}}\n" + ROUTE),
    ("DestinationRule", "  host: r\n  trafficPolicy: {tls: {mode: MUTUAL, clientCertificate: /c, privateKey: /k}}\n"),
    ("Gateway", "  servers:\n"
     "  - {port: {number: 80, name: http, protocol: HTTP}, hosts: ['*'], tls: {httpsRedirect: true}}\n"
     "  - {port: {number: 443, name: https, protocol: HTTPS}, hosts: [a.com],"
     f" tls: {{mode: SIMPLE, {GW_TLS_FILES}}}}}\n"
     "  - {port: {number: 443, name: tls, protocol: TLS}, hosts: [b.com], tls: {mode: PASSTHROUGH}}\n"
     "  - {port: {number: 15443, name: tls, protocol: TLS}, hosts: ['*.local'], tls: {mode: AUTO_PASSTHROUGH}}\n"
     "  - {port: {number: 31400, name: tcp, protocol: TCP}, hosts: ['*']}\n"),
    ("ServiceEntry", "  hosts: [a.com]\n  resolution: STATIC\n  ports: [{number: 80, name: http, protocol: HTTP}]\n"
     "  workloadSelector: {labels: {app: a}}\n"),
]
# fmt: on


@pytest.mark.parametrize(("kind", "spec"), ACCEPTED, ids=lambda v: str(v)[:40])
def test_implemented_fields_still_load(kind: str, spec: str) -> None:
    result = load_text(_doc(kind, spec), "f.yaml")
    assert [str(e) for e in result.errors] == []
    assert len(result.configs) == 1


def test_each_rejected_field_of_a_resource_is_named() -> None:
    spec = (
        "  host: r\n  workloadSelector: {matchLabels: {app: a}}\n"
        "  trafficPolicy: {tunnel: {protocol: CONNECT, targetHost: h, targetPort: 1}, proxyProtocol: {version: V2}}\n"
    )
    result = load_text(_doc("DestinationRule", spec), "f.yaml")
    assert sorted(e.field for e in result.errors) == [
        "spec.trafficPolicy.proxyProtocol",
        "spec.trafficPolicy.tunnel",
        "spec.workloadSelector",
    ]


# --- the doc -----------------------------------------------------------------------------------


def _paths(desc: Any, prefix: str, seen: frozenset[str]) -> list[str]:
    """An independent walk of the descriptors: every field path, nested messages included."""
    out = []
    for f in desc.fields:
        path = f"{prefix}.{f.json_name}"
        child = f.message_type
        if child is not None and child.GetOptions().map_entry:
            path += "{}"
            child = child.fields_by_name["value"].message_type
        elif f.is_repeated:
            path += "[]"
        out.append(path)
        if child is not None and not child.full_name.startswith("google.protobuf.") and child.full_name not in seen:
            out += _paths(child, path, seen | {desc.full_name})
    return out


def _doc_rows() -> dict[str, dict[str, str]]:
    rows: dict[str, dict[str, str]] = {}
    section = ""
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
            rows[section] = {}
        m = re.match(r"\| `([^`]+)` \| (.+) \|$", line)
        if m and section:
            rows[section][m.group(1)] = m.group(2)
    return rows


@pytest.mark.parametrize("kind", u.DOC_KINDS)
def test_doc_lists_every_proto_field(kind: str) -> None:
    rows = _doc_rows()[kind]
    expected = _paths(KINDS[kind].message.DESCRIPTOR, "spec", frozenset())
    assert len(expected) > 10
    missing = [p for p in expected if p not in rows]
    assert missing == []
    for p in expected:
        assert rows[p].startswith(("supported: ", "rejected", "accepted with a warning")), (p, rows[p])


def test_doc_is_generated_from_the_table() -> None:
    assert DOC.read_text(encoding="utf-8") == u.render_doc(), "regenerate: python -m istiod_py.config.unsupported"


def test_every_rejection_message_is_in_the_doc() -> None:
    text = DOC.read_text(encoding="utf-8")
    for name in dir(u):
        if name.startswith("MSG_"):
            assert getattr(u, name) in text, name


def test_doc_says_rejected_for_the_known_unsupported_fields() -> None:
    rows = _doc_rows()
    for kind, path in [
        ("DestinationRule", "spec.trafficPolicy.tunnel"),
        ("DestinationRule", "spec.trafficPolicy.proxyProtocol"),
        ("DestinationRule", "spec.workloadSelector"),
        ("VirtualService", "spec.http[].fault.delay.exponentialDelay"),
        ("VirtualService", "spec.http[].fault.abort.http2Error"),
        ("Sidecar", "spec.ingress[].tls"),
        ("Sidecar", "spec.ingress[].connectionPool"),
        ("Sidecar", "spec.inboundConnectionPool"),
    ]:
        assert rows[kind][path].startswith("rejected"), (kind, path)
    # Served from Kubernetes Secrets over SDS (kube/credentials.py) since the kube source.
    for kind, path in (
        ("Gateway", "spec.servers[].tls.credentialName"),
        ("Gateway", "spec.servers[].tls.credentialNames[]"),
        ("DestinationRule", "spec.trafficPolicy.tls.credentialName"),
    ):
        assert rows[kind][path].startswith("supported"), (kind, path)


# --- analysis ---------------------------------------------------------------------------------


def _load(text: str) -> list[Any]:
    result = load_text(text, "a.yaml")
    assert [str(e) for e in result.errors] == []
    return result.configs


SERVICES = ["reviews.ns.svc.cluster.local", "ratings.ns.svc.cluster.local"]
DR = _doc("DestinationRule", "  host: reviews\n  subsets: [{name: v1, labels: {version: v1}}]\n")


def _warnings(vs_spec: str, extra: str = "") -> list[Any]:
    configs = _load(_doc("VirtualService", vs_spec) + "\n---\n" + DR + ("\n---\n" + extra if extra else ""))
    return analyze(configs, SERVICES)


def test_analyze_subset_not_defined() -> None:
    ws = _warnings("  hosts: [reviews]\n  http:\n  - route: [{destination: {host: reviews, subset: v3}}]\n")
    assert len(ws) == 1
    w = ws[0]
    assert (w.kind, w.name, w.field) == ("VirtualService", "x", "spec.http[0].route[0].destination.subset")
    assert (
        w.message
        == 'IST0101 ReferencedResourceNotFound: Referenced host+subset in destinationrule not found: "reviews+v3"'
    )


def test_analyze_gateway_not_found() -> None:
    gw = _doc("Gateway", "  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]\n")
    ws = _warnings(
        "  hosts: [reviews]\n  gateways: [x, missing, mesh]\n  http:\n  - route: [{destination: {host: reviews}}]\n", gw
    )
    assert [(w.field, w.message) for w in ws] == [
        ("spec.gateways[1]", 'IST0101 ReferencedResourceNotFound: Referenced gateway not found: "ns/missing"')
    ]


def test_analyze_host_not_in_registry() -> None:
    ws = _warnings(
        "  hosts: [reviews]\n  http:\n  - route: [{destination: {host: reviews, subset: v1}}]\n"
        "    mirror: {host: nowhere}\n  tcp: [{route: [{destination: {host: ratings}}]}]\n"
    )
    assert [(w.field, w.message) for w in ws] == [
        ("spec.http[0].mirror.host", 'IST0101 ReferencedResourceNotFound: Referenced host not found: "nowhere"')
    ]


def test_analyze_clean_config_has_no_warnings() -> None:
    ws = _warnings(
        "  hosts: [reviews]\n  http:\n  - route: [{destination: {host: reviews.ns.svc.cluster.local, subset: v1}}]\n"
    )
    assert ws == []


def test_analyze_warns_about_ignored_fields() -> None:
    configs = _load(
        _doc("Gateway", "  servers: [{name: web, port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]\n")
    )
    ws = analyze(configs, {})
    assert [(w.field, w.message.split(":")[0]) for w in ws] == [("spec.servers[0].name", "ISTPY0001 FieldIgnored")]
