"""/debug/config_dump?proxyID=: what a proxy was sent and ACKed, in Envoy's admin
`ConfigDump` shape (the same JSON `curl localhost:15000/config_dump` prints on the
proxy), so `istioctl proxy-status PROXY`-style diffs compare like with like.

The resources come from `SentRecorder` (debug/sent.py), never from regenerating
the current state. A type that was sent but never ACKed (a NACK on the first push)
has no entries, exactly as Envoy's own dump would show nothing dynamic for it."""

from __future__ import annotations

from typing import Any

from envoy.admin.v3 import config_dump_pb2, config_dump_shared_pb2
from google.protobuf import json_format, timestamp_pb2
from google.protobuf.message import Message

from istiod_py.debug.sent import Held
from istiod_py.xds.types import TypeUrl

ADMIN = "type.googleapis.com/envoy.admin.v3."


def _ts(at: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(at * 1e9))
    return ts


def _sorted(held: Held) -> list[tuple[str, Message]]:
    return [(n, held.resources[n].message()) for n in sorted(held.resources)]


def config_dump(held: dict[str, Held]) -> config_dump_pb2.ConfigDump:
    dump = config_dump_pb2.ConfigDump()
    h = held.get(TypeUrl.CLUSTER)
    if h is not None:
        cd = config_dump_shared_pb2.ClustersConfigDump(version_info=h.version)
        for _, msg in _sorted(h):
            dc = cd.dynamic_active_clusters.add(version_info=h.version, last_updated=_ts(h.at))
            dc.cluster.Pack(msg)
        dump.configs.add().Pack(cd)
    h = held.get(TypeUrl.ENDPOINT)
    if h is not None:
        ed = config_dump_shared_pb2.EndpointsConfigDump()
        for _, msg in _sorted(h):
            de = ed.dynamic_endpoint_configs.add(version_info=h.version, last_updated=_ts(h.at))
            de.endpoint_config.Pack(msg)
        dump.configs.add().Pack(ed)
    h = held.get(TypeUrl.LISTENER)
    if h is not None:
        ld = config_dump_shared_pb2.ListenersConfigDump(version_info=h.version)
        for name, msg in _sorted(h):
            dl = ld.dynamic_listeners.add(name=name)
            dl.active_state.version_info = h.version
            dl.active_state.last_updated.CopyFrom(_ts(h.at))
            dl.active_state.listener.Pack(msg)
        dump.configs.add().Pack(ld)
    h = held.get(TypeUrl.ROUTE)
    if h is not None:
        rd = config_dump_shared_pb2.RoutesConfigDump()
        for _, msg in _sorted(h):
            dr = rd.dynamic_route_configs.add(version_info=h.version, last_updated=_ts(h.at))
            dr.route_config.Pack(msg)
        dump.configs.add().Pack(rd)
    h = held.get(TypeUrl.SECRET)
    if h is not None:
        sd = config_dump_pb2.SecretsConfigDump()
        for name, msg in _sorted(h):
            ds = sd.dynamic_active_secrets.add(name=name, version_info=h.version, last_updated=_ts(h.at))
            ds.secret.Pack(msg)
        dump.configs.add().Pack(sd)
    return dump


def config_dump_json(held: dict[str, Held]) -> dict[str, Any]:
    out: dict[str, Any] = json_format.MessageToDict(config_dump(held), preserving_proto_field_name=True)
    out.setdefault("configs", [])
    return out
