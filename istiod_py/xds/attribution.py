"""Push attribution: which config changes trigger pushes, and what they cost.

Each state the server pushes is diffed against the previous one (only the
kinds whose digest changed are compared config by config, so the cost is per
changed kind, not per config): its triggers are `Kind/ns/name` of the changed
configs, `endpoints:HOST` of endpoint-only changes and `services` for registry
changes. A stream's push covers every state since its previous push (pushes
merge), so its cost (bytes, translation and total time) is charged to the union
of those states' triggers, split evenly. `top(window)` ranks triggers by cost
over the last `window` seconds: what /debug/push_status shows, so an operator
sees which resource causes push storms.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from istiod_py.model import MeshState
from istiod_py.model.mesh import changed_kinds, spec_bytes

from .connection import PushRequest

if TYPE_CHECKING:
    from .stream import Stream

MAX_HOSTS = 20


def triggers_between(old: MeshState | None, new: MeshState, eds_hosts: frozenset[str] = frozenset()) -> list[str]:
    if old is None:
        return ["initial"]
    out: list[str] = []
    for kind in sorted(changed_kinds(old, new)):
        a = {(c.meta.namespace, c.meta.name): c for c in old.of_kind(kind)}
        b = {(c.meta.namespace, c.meta.name): c for c in new.of_kind(kind)}
        for key in sorted(set(a) | set(b)):
            ca, cb = a.get(key), b.get(key)
            if ca is cb:
                continue
            if ca is None or cb is None or spec_bytes(ca) != spec_bytes(cb) or ca.meta.labels != cb.meta.labels:
                out.append(f"{kind}/{key[0]}/{key[1]}")
    if old.services_digest != new.services_digest:
        out.append("services")
    hosts = sorted(eds_hosts)
    out += [f"endpoints:{h}" for h in hosts[:MAX_HOSTS]]
    if len(hosts) > MAX_HOSTS:
        out.append(f"endpoints:+{len(hosts) - MAX_HOSTS} more hosts")
    return out


@dataclass
class PushRecord:
    version: int
    triggers: tuple[str, ...]
    at: float = field(default_factory=time.time)
    full: bool = True
    proxies: int = 0
    bytes: int = 0
    build_s: float = 0.0
    total_s: float = 0.0


class PushAttribution:
    def __init__(self, keep: int = 2000) -> None:
        self._last: MeshState | None = None
        # state version -> its triggers (what changed since the previous pushed state)
        self._triggers: collections.OrderedDict[int, tuple[str, ...]] = collections.OrderedDict()
        self.records: collections.deque[PushRecord] = collections.deque(maxlen=keep)
        self._by_key: dict[tuple[int, tuple[str, ...]], PushRecord] = {}
        # per stream: (state version, bytes sent) after its previous push
        self._seen: dict[str, tuple[int, int]] = {}
        # (previous version, version, reason) -> triggers (see _key_triggers)
        self._ranges: dict[tuple[int, int, str], tuple[str, ...]] = {}

    def on_push(self, req: PushRequest) -> None:
        """A new state is pushed to every stream: record what changed."""
        state = req.state
        if self._last is not None and state.version <= self._last.version:
            return
        self._triggers[state.version] = tuple(triggers_between(self._last, state, req.eds_hosts))
        while len(self._triggers) > 1000:
            self._triggers.popitem(last=False)
        self._last = state

    def on_registered(self, stream: Stream) -> None:
        if self._last is None:
            self._last = stream.state  # the state before any push: the base of the first diff
        if stream.info is not None:
            self._seen[stream.info.conn_id] = (stream.info.last_push_state, stream.info.bytes_sent)

    def on_pushed(self, stream: Stream, req: PushRequest) -> None:
        info = stream.info
        if info is None:
            return
        prev_version, prev_bytes = self._seen.get(info.conn_id, (req.state.version - 1, 0))
        self._seen[info.conn_id] = (req.state.version, info.bytes_sent)
        if len(self._seen) > 4 * max(len(getattr(stream.server, "streams", ())), 256):
            live = getattr(stream.server, "streams", {})
            self._seen = {k: v for k, v in self._seen.items() if k in live}
        key_triggers = self._key_triggers(prev_version, req)
        key = (req.state.version, key_triggers)
        rec = self._by_key.get(key)
        if rec is None:
            rec = PushRecord(req.state.version, key_triggers, full=req.full)
            if len(self.records) == self.records.maxlen:
                old = self.records[0]
                self._by_key.pop((old.version, old.triggers), None)
            self.records.append(rec)
            self._by_key[key] = rec
        build_s, total_s = getattr(stream, "push_cost", (0.0, 0.0))
        rec.proxies += 1
        rec.bytes += max(info.bytes_sent - prev_bytes, 0)
        rec.build_s += build_s
        rec.total_s += total_s

    def _key_triggers(self, prev_version: int, req: PushRequest) -> tuple[str, ...]:
        """The triggers of the states in (prev_version, req.state.version]: the same
        for every stream of a push wave, so computed once per (range, reason)
        rather than per stream over the whole trigger history."""
        ckey = (prev_version, req.state.version, req.reason)
        hit = self._ranges.get(ckey)
        if hit is not None:
            return hit
        trig: set[str] = set()
        for v, t in self._triggers.items():
            if prev_version < v <= req.state.version:
                trig.update(t)
        out = tuple(sorted(trig)) or (f"(reason: {req.reason or 'unknown'})",)
        if len(self._ranges) >= 4096:
            self._ranges.clear()
        self._ranges[ckey] = out
        return out

    def top(self, window: float = 600.0, limit: int = 10) -> list[dict[str, Any]]:
        """Triggers ranked by bytes pushed over the last `window` seconds."""
        since = time.time() - window
        agg: dict[str, dict[str, Any]] = {}
        for rec in self.records:
            if rec.at < since:
                continue
            share = 1.0 / len(rec.triggers)
            for t in rec.triggers:
                a = agg.setdefault(t, {"trigger": t, "pushes": set(), "proxies": 0, "bytes": 0.0, "build_s": 0.0})
                a["pushes"].add(rec.version)
                a["proxies"] += rec.proxies
                a["bytes"] += rec.bytes * share
                a["build_s"] += rec.build_s * share
                a.setdefault("send_s", 0.0)
                a["send_s"] += max(rec.total_s - rec.build_s, 0.0) * share
        out = []
        for a in agg.values():
            out.append(
                {
                    "trigger": a["trigger"],
                    "pushes": len(a["pushes"]),
                    "proxy_pushes": a["proxies"],
                    "bytes": int(a["bytes"]),
                    "build_s": round(a["build_s"], 4),
                    "send_s": round(a.get("send_s", 0.0), 4),
                }
            )
        out.sort(key=lambda x: (-x["bytes"], -x["build_s"], x["trigger"]))
        return out[:limit]

    def recent(self, limit: int = 20) -> list[dict[str, Any]]:
        return [
            {
                "version": r.version,
                "triggers": list(r.triggers),
                "full": r.full,
                "at": r.at,
                "proxies": r.proxies,
                "bytes": r.bytes,
                "build_s": round(r.build_s, 4),
                "send_s": round(max(r.total_s - r.build_s, 0.0), 4),
            }
            for r in list(self.records)[-limit:]
        ]
