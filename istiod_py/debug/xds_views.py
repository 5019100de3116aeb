"""Per-connection debug views, as istiod serves them on :15014:
/debug/syncz, /debug/adsz, /debug/connections, /debug/config_dump?proxyID=,
/debug/force_disconnect?proxyID=.

They read the xDS server's public per-stream state (`XdsServer.streams`,
`Stream.info`) and the ACK record (debug/sent.py); they never regenerate config."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web

from istiod_py.debug.config_dump import config_dump_json
from istiod_py.debug.sent import Held, SentRecorder, sent_names
from istiod_py.xds.types import TypeUrl

if TYPE_CHECKING:
    from istiod_py.xds.server import Stream, XdsServer


def json_response(data: Any, status: int = 200) -> web.Response:
    import json

    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, indent=1, default=str))


def admin_address(metadata: Any) -> str:
    """host:port of the proxy's Envoy admin, from its node metadata: istiod_py's
    bootstrap sets ADMIN_ADDRESS; Istio's PROXY_CONFIG.proxyAdminPort gives the port
    (on the proxy's first INSTANCE_IPS address, as a port-forward would reach it)."""
    if metadata.get("ADMIN_ADDRESS"):
        return str(metadata["ADMIN_ADDRESS"])
    pc = metadata.get("PROXY_CONFIG") or {}
    port = pc.get("proxyAdminPort") if isinstance(pc, dict) else None
    ips = str(metadata.get("INSTANCE_IPS") or "").split(",")
    if port and ips[0]:
        return f"{ips[0]}:{port}"
    return ""


class XdsViews:
    def __init__(self, xds: XdsServer) -> None:
        self.xds = xds
        self.recorder = SentRecorder(xds)

    def routes(self) -> list[tuple[str, Any, str]]:
        return [
            ("/debug/syncz", self.handle_syncz, "per-proxy sync state per xDS type (sent/ACKed, NACKs)"),
            ("/debug/adsz", self.handle_adsz, "connected proxies with their subscriptions"),
            ("/debug/connections", self.handle_connections, "connected proxies (no subscriptions)"),
            (
                "/debug/config_dump",
                self.handle_config_dump,
                "?proxyID=[&current=true]: ACKed (or current) config, Envoy shape",
            ),
            ("/debug/force_disconnect", self.handle_force_disconnect, "?proxyID=: close that proxy's stream"),
        ]

    def connected(self) -> Iterator[Stream]:
        for s in list(self.xds.streams.values()):
            if s.info is not None:
                yield s

    def find(self, proxy_id: str) -> Stream | None:
        for s in self.connected():
            assert s.info is not None
            if proxy_id in (s.info.conn_id, s.info.proxy.id, s.info.proxy.node_id):
                return s
        return None

    def _unknown(self, pid: str) -> web.Response:
        known = [s.info.proxy.id for s in self.connected() if s.info]
        what = f"no connected proxy {pid!r}" if pid else "proxyID is required"
        return json_response({"error": f"{what}; connected: {known}"}, status=404 if pid else 400)

    def syncz_entry(self, s: Stream) -> dict[str, Any]:
        info = s.info
        assert info is not None
        md = info.proxy.metadata
        types: dict[str, Any] = {}
        for t, w in info.watches.items():
            d = w.debug()
            # Watch.sent is filled for Delta only; a SotW stream's count is what its last send carried.
            d["resources_sent"] = len(sent_names(s, w))
            types[TypeUrl.SHORT.get(t, t)] = d
        return {
            "proxy": info.proxy.id,
            "connection_id": info.conn_id,
            "node_id": info.proxy.node_id,
            "cluster_id": info.proxy.cluster_id or "Kubernetes",
            "proxy_type": info.proxy.type.value,
            "namespace": info.proxy.namespace,
            "ip": info.proxy.ip,
            "admin_address": admin_address(md),
            # Versions the proxy's agent put in its node metadata (`istiod-py version`).
            "istio_version": str(md.get("ISTIO_VERSION") or ""),
            "envoy_version": str(md.get("ENVOY_VERSION") or ""),
            "transport": "delta" if s.delta else "sotw",
            "peer": info.peer,
            "connected_at": info.connected_at,
            "pushes": info.pushes,
            "state_version": s.state.version,
            "types": types,
        }

    async def handle_syncz(self, _: web.Request) -> web.Response:
        return json_response([self.syncz_entry(s) for s in self.connected()])

    def _client(self, s: Stream, watches: bool) -> dict[str, Any]:
        info = s.info
        assert info is not None
        out: dict[str, Any] = {
            "connectionId": info.conn_id,
            "connectedAt": info.connected_at,
            "address": info.peer,
            "proxyId": info.proxy.id,
            "nodeId": info.proxy.node_id,
            "labels": dict(info.proxy.labels),
            "metadata": dict(info.proxy.metadata),
            "transport": "delta" if s.delta else "sotw",
        }
        if watches:
            out["watches"] = {t: ["*"] if w.wildcard else sorted(w.names) for t, w in info.watches.items()}
        return out

    async def handle_adsz(self, _: web.Request) -> web.Response:
        clients = [self._client(s, True) for s in self.connected()]
        return json_response({"totalClients": len(clients), "clients": clients})

    async def handle_connections(self, _: web.Request) -> web.Response:
        clients = [self._client(s, False) for s in self.connected()]
        return json_response({"totalClients": len(clients), "clients": clients})

    async def handle_config_dump(self, req: web.Request) -> web.Response:
        pid = req.query.get("proxyID", "")
        s = self.find(pid) if pid else None
        if s is None or s.info is None:
            return self._unknown(pid)
        if req.query.get("current", "") in ("1", "true"):
            return json_response(config_dump_json(self.current(s)))
        return json_response(config_dump_json(self.recorder.of(s.info.conn_id)))

    def current(self, s: Stream) -> dict[str, Held]:
        """What the control plane would send this proxy now (`current=true`): the
        translation of the newest state for the proxy's subscriptions, for
        `proxy-status PROXY` to diff against what the proxy holds."""
        assert s.info is not None
        state = self.xds.state()
        out: dict[str, Held] = {}
        for t, w in s.info.watches.items():
            res = self.xds.generate(state, s.info.proxy, t)
            index = res.index
            names = index.keys() if w.wildcard else [n for n in w.names if n in index]
            out[t] = Held(res.version, "", time.time(), built={n: index[n] for n in names})
        return out

    async def handle_force_disconnect(self, req: web.Request) -> web.Response:
        pid = req.query.get("proxyID", "")
        s = self.find(pid) if pid else None
        if s is None or s.info is None:
            return self._unknown(pid)
        # The stream's loop returns on any event once `closing` is set: the RPC ends
        # with OK and the proxy reconnects, as after istiod's force_disconnect.
        s.closing = True
        s.events.put_nowait(None)
        return json_response({"disconnected": s.info.conn_id})
