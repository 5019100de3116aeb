"""The payloads of istiod's debug xDS types, for tools that ask istiod over xDS
(istioctl proxy-status talks to istiod this way):

- `istio.io/debug/syncz`: one envoy.service.status.v3.ClientConfig per connected
  proxy (node id and metadata, and per xDS type a GenericXdsConfig whose
  config_status is SYNCED / STALE / NOT_SENT by istiod's rule);
- `istio.io/debug/config_dump`: the ConfigDump (debug/config_dump.py) of the proxy
  named in the request's resource_names.

`server.py` registers `resources_for` in `XdsServer.debug_types`, so both are
answered on the xDS ports (15010, 15012) on request, as istiod answers them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from envoy.config.core.v3 import base_pb2
from envoy.service.status.v3 import csds_pb2
from google.protobuf import struct_pb2
from google.protobuf.message import Message

from istiod_py.debug.config_dump import config_dump
from istiod_py.xds.types import TypeUrl

if TYPE_CHECKING:
    from istiod_py.debug.xds_views import XdsViews
    from istiod_py.xds.connection import Watch

SYNCZ = "istio.io/debug/syncz"
CONFIG_DUMP = "istio.io/debug/config_dump"
TYPES = (SYNCZ, CONFIG_DUMP)


def config_status(w: Watch | None) -> int:
    if w is None or not w.nonce_sent:
        return int(csds_pb2.NOT_SENT)
    if w.nonce_sent == w.nonce_acked:
        return int(csds_pb2.SYNCED)
    return int(csds_pb2.STALE)


def syncz(views: XdsViews) -> list[tuple[str, Message]]:
    out: list[tuple[str, Message]] = []
    for s in views.connected():
        info = s.info
        assert info is not None
        md = struct_pb2.Struct()
        # Through JSON: metadata values are whatever the node sent (strings, maps, lists).
        md.update(json.loads(json.dumps(dict(info.proxy.metadata), default=str)))
        cc = csds_pb2.ClientConfig(node=base_pb2.Node(id=info.proxy.node_id, metadata=md))
        for t in TypeUrl.PUSH_ORDER:
            cc.generic_xds_configs.add(type_url=t, config_status=config_status(info.watches.get(t)))
        out.append((info.proxy.node_id, cc))
    return out


def resources_for(views: XdsViews, type_url: str, names: Sequence[str]) -> list[tuple[str, Message]]:
    """What the xDS server answers for a debug type (XdsServer.debug_types)."""
    return resources(views, type_url, names) or []


def resources(views: XdsViews, type_url: str, names: Sequence[str]) -> list[tuple[str, Message]] | None:
    if type_url == SYNCZ:
        return syncz(views)
    if type_url == CONFIG_DUMP:
        out: list[tuple[str, Message]] = []
        for name in names:
            s = views.find(name)
            if s is not None and s.info is not None:
                out.append((name, config_dump(views.recorder.of(s.info.conn_id))))
        return out
    return None
