"""Propagation status: for each Istio config, which proxies it affects and which
of them hold, ACKed, the resources its current content produced.

Exact, from ACK state: a config affects a proxy when it is in the provenance of
a resource the proxy is to get now (the current state's translation for it);
the proxy holds it when, for each such resource, the Resources the proxy last
ACKed have the same version of it (content hash). A proxy that never ACKed, or
ACKed an older version, or NACKed, is pending; so is one that is served
without the config because it rejected it (quarantined).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from istiod_py.cache.resources import Resources
from istiod_py.model import MeshState

from .connection import Watch
from .quarantine import config_digest
from .types import TypeUrl

if TYPE_CHECKING:
    from .server import XdsServer


def _names(w: Watch, res: Resources) -> Iterable[str]:
    if w.wildcard or (w.type_url in TypeUrl.WILDCARD_TYPES and not w.names):
        return res.index.keys()
    return (n for n in w.names if n in res.index)


def _held(acked: Any, cur: Resources, name: str) -> bool:
    if acked is None:
        return False
    if acked is cur:
        return True
    old = acked.get(name)
    new = cur.get(name)
    return old is not None and new is not None and old.version == new.version


def propagation(server: XdsServer, state: MeshState, only: str = "") -> dict[str, dict[str, Any]]:
    """config ref -> {"proxies": [...affected], "pending": [...not yet holding it]}.
    `only` (a `Kind/ns/name`) restricts the answer to one config."""
    affected: dict[str, set[str]] = {}
    pending: dict[str, set[str]] = {}
    # Resources objects are shared by proxies of a kind: their name -> configs map once.
    origins_memo: dict[int, dict[str, frozenset[str]]] = {}
    for stream in list(server.streams.values()):
        if stream.info is None:
            continue
        pid = stream.info.proxy.id
        for t, w in list(stream.info.watches.items()):
            cur = server.generate(state, stream.info.proxy, t)
            by_name = origins_memo.get(id(cur))
            if by_name is None:
                by_name = origins_memo[id(cur)] = {
                    n: frozenset(r.partition(":")[0] for r in cur.origins_of(n)) for n in cur.index
                }
            acked = w.acked_res
            for n in _names(w, cur):
                refs = by_name.get(n, frozenset())
                if only:
                    if only not in refs:
                        continue
                    refs = frozenset({only})
                if not refs:
                    continue
                held = _held(acked, cur, n)
                for r in refs:
                    affected.setdefault(r, set()).add(pid)
                    if not held:
                        pending.setdefault(r, set()).add(pid)
    # A proxy serving without a config it rejected (quarantine.py) does not hold it.
    quarantined: dict[str, set[str]] = {}
    for case in list(server.quarantine.cases.values()):
        if case.phase == "quarantined":
            for ref in case.culprits:
                if not only or ref == only:
                    quarantined.setdefault(ref, set()).add(case.proxy_id)
                    affected.setdefault(ref, set()).add(case.proxy_id)
                    pending.setdefault(ref, set()).add(case.proxy_id)
    out: dict[str, dict[str, Any]] = {}
    for ref in sorted(affected if not only else {only}):
        procs = sorted(affected.get(ref, ()))
        late = sorted(pending.get(ref, ()))
        out[ref] = {
            "generation": config_digest(state, ref),
            "proxies": len(procs),
            "live": len(procs) - len(late),
            "pending": late,
            "quarantined": sorted(quarantined.get(ref, ())),
            "affected": procs,
        }
    return out
