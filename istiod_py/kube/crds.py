"""CustomResourceDefinitions for every Istio kind this control plane accepts,
with OpenAPI v3 schemas generated from the project's own protos (the same
descriptors the loader parses with), so schema and parser cannot drift.

`python -m istiod_py.kube.crds --out deploy/crds` writes one file per kind;
`--check` fails when the committed files differ (tests/kube/test_crds.py)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from google.protobuf.descriptor import FieldDescriptor

from istiod_py.config.model import KINDS, KindInfo

from .convert import plural

# Short names and categories as Istio's CRDs declare them (kubectl get vs, dr, ...).
SHORT_NAMES: dict[str, list[str]] = {
    "VirtualService": ["vs"],
    "DestinationRule": ["dr"],
    "Gateway": ["gw"],
    "ServiceEntry": ["se"],
    "WorkloadEntry": ["we"],
    "WorkloadGroup": ["wg"],
    "PeerAuthentication": ["pa"],
    "AuthorizationPolicy": ["ap"],
    "RequestAuthentication": ["ra"],
}
GROUP_CATEGORY = {"networking.istio.io": "networking-istio-io", "security.istio.io": "security-istio-io"}

_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number", "format": "float"},
    FieldDescriptor.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_UINT32: {"type": "integer", "minimum": 0, "maximum": 4294967295},
    FieldDescriptor.TYPE_FIXED32: {"type": "integer", "minimum": 0, "maximum": 4294967295},
    # 64-bit integers are strings in proto JSON; the loader takes either.
    FieldDescriptor.TYPE_INT64: {"x-kubernetes-int-or-string": True},
    FieldDescriptor.TYPE_SINT64: {"x-kubernetes-int-or-string": True},
    FieldDescriptor.TYPE_SFIXED64: {"x-kubernetes-int-or-string": True},
    FieldDescriptor.TYPE_UINT64: {"x-kubernetes-int-or-string": True},
    FieldDescriptor.TYPE_FIXED64: {"x-kubernetes-int-or-string": True},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "format": "byte"},
}
_PRESERVE = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Duration": {"type": "string", "description": "A duration: 5s, 100ms, 1m, 1h30m."},
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Struct": _PRESERVE,
    "google.protobuf.Any": _PRESERVE,
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Value": {"x-kubernetes-preserve-unknown-fields": True},
    "google.protobuf.ListValue": {"type": "array", "items": {"x-kubernetes-preserve-unknown-fields": True}},
    "google.protobuf.BoolValue": {"type": "boolean", "nullable": True},
    "google.protobuf.StringValue": {"type": "string", "nullable": True},
    "google.protobuf.BytesValue": {"type": "string", "format": "byte", "nullable": True},
    "google.protobuf.Int32Value": {"type": "integer", "format": "int32", "nullable": True},
    "google.protobuf.UInt32Value": {"type": "integer", "minimum": 0, "maximum": 4294967295, "nullable": True},
    "google.protobuf.Int64Value": {"x-kubernetes-int-or-string": True, "nullable": True},
    "google.protobuf.UInt64Value": {"x-kubernetes-int-or-string": True, "nullable": True},
    "google.protobuf.DoubleValue": {"type": "number", "format": "double", "nullable": True},
    "google.protobuf.FloatValue": {"type": "number", "format": "float", "nullable": True},
}


def message_schema(desc: Any, stack: tuple[str, ...] = ()) -> dict[str, Any]:
    known = _WELL_KNOWN.get(desc.full_name)
    if known is not None:
        return dict(known)
    if desc.full_name in stack:  # a recursive message: Kubernetes schemas cannot recurse
        return dict(_PRESERVE)
    props: dict[str, Any] = {}
    for fd in desc.fields:
        props[fd.json_name] = field_schema(fd, (*stack, desc.full_name))
    out: dict[str, Any] = {"type": "object"}
    if props:
        out["properties"] = props
    return out


def _single(fd: FieldDescriptor, stack: tuple[str, ...]) -> dict[str, Any]:
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        return message_schema(fd.message_type, stack)
    if fd.type == FieldDescriptor.TYPE_ENUM:
        enum: Any = fd.enum_type
        return {"type": "string", "enum": [v.name for v in enum.values]}
    return dict(_SCALARS[fd.type])


def field_schema(fd: FieldDescriptor, stack: tuple[str, ...]) -> dict[str, Any]:
    mt = fd.message_type
    if mt is not None and mt.GetOptions().map_entry:
        return {"type": "object", "additionalProperties": _single(mt.fields_by_name["value"], stack)}
    if fd.is_repeated:
        return {"type": "array", "items": _single(fd, stack)}
    return _single(fd, stack)


def crd(info: KindInfo) -> dict[str, Any]:
    name = plural(info.kind)
    spec_schema = message_schema(info.message.DESCRIPTOR)
    spec_schema["description"] = f"{info.kind} spec ({info.message.DESCRIPTOR.full_name})."
    schema = {
        "type": "object",
        "properties": {
            "spec": spec_schema,
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    }
    # The newest version is stored; every version serves the same schema (as Istio's).
    order = {"v1": 0, "v1beta1": 1, "v1alpha3": 2}
    storage = min(info.versions, key=lambda v: order.get(v, 9))
    versions = [
        {
            "name": v,
            "served": True,
            "storage": v == storage,
            "schema": {"openAPIV3Schema": schema},
            "subresources": {"status": {}},
        }
        for v in sorted(info.versions, key=lambda v: order.get(v, 9))
    ]
    names: dict[str, Any] = {
        "kind": info.kind,
        "listKind": f"{info.kind}List",
        "plural": name,
        "singular": info.kind.lower(),
        "categories": ["istio-io", GROUP_CATEGORY.get(info.group, info.group.replace(".", "-"))],
    }
    if info.kind in SHORT_NAMES:
        names["shortNames"] = SHORT_NAMES[info.kind]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{name}.{info.group}",
            "labels": {"app.kubernetes.io/part-of": "istiod-py"},
        },
        "spec": {"group": info.group, "names": names, "scope": "Namespaced", "versions": versions},
    }


def gateway_api_crds() -> list[dict[str, Any]]:
    """CRDs for the Gateway API kinds the loader reads, from the same protos, for
    test clusters (a real cluster installs the upstream Gateway API CRDs)."""
    from istiod_py.kube.convert import gateway_api_kinds

    out = []
    for info in gateway_api_kinds():
        c = crd(info)
        c["metadata"]["labels"] = {"gateway.networking.k8s.io/bundle-version": "istiod-py-test"}
        # *.k8s.io groups are protected: the API server wants the approval reference upstream's CRDs carry.
        c["metadata"]["annotations"] = {
            "api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/gateway-api/pull/2466"
        }
        c["spec"]["names"]["categories"] = ["gateway-api"]
        if info.kind == "GatewayClass":
            c["spec"]["scope"] = "Cluster"
        out.append(c)
    return out


def all_crds() -> list[dict[str, Any]]:
    return [crd(KINDS[k]) for k in sorted(KINDS)]


class _NoAliases(yaml.SafeDumper):
    """Shared sub-schemas are written out in full: no YAML anchors in a manifest."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


HEADER = "# Generated by `python -m istiod_py.kube.crds --out deploy/crds` from protos/. Do not edit.\n"


def rendered() -> dict[str, str]:
    """File name -> YAML text, one CRD per file."""
    return {
        f"{c['metadata']['name']}.yaml": HEADER + yaml.dump(c, Dumper=_NoAliases, sort_keys=False, width=1000)
        for c in all_crds()
    }


def _diff(out: Path, files: dict[str, str]) -> Iterable[str]:
    for name, text in files.items():
        p = out / name
        if not p.is_file() or p.read_text(encoding="utf-8") != text:
            yield f"{p} is missing or stale"
    for p in sorted(out.glob("*.yaml")):
        if p.name not in files:
            yield f"{p} is not generated by istiod_py.kube.crds (remove it)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="deploy/crds", help="directory for one YAML file per CRD")
    ap.add_argument("--check", action="store_true", help="fail if the files there are not current")
    args = ap.parse_args(argv)
    out = Path(args.out)
    files = rendered()
    if args.check:
        stale = list(_diff(out, files))
        for s in stale:
            print(s, file=sys.stderr)
        if stale:
            print("regenerate: python -m istiod_py.kube.crds --out deploy/crds", file=sys.stderr)
        return 1 if stale else 0
    out.mkdir(parents=True, exist_ok=True)
    for p in out.glob("*.yaml"):
        if p.name not in files:
            p.unlink()
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
