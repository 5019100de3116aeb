"""NACK origins in the Kubernetes `status` of the resource responsible (issue 16).

istiod's only status about config reaching proxies is the `Reconciled` condition
of its distribution tracking (pilot/pkg/status/distribution: `status.conditions`
`{type: Reconciled, status: "True"|"False", message: "N/M proxies up to date."}`).
A rejected resource is the case where that condition is False for a known reason,
so the leader writes the same condition type with `reason: Rejected` and a message
naming how many proxies rejected it, what they rejected (xDS type, resources,
the resource's fields) and Envoy's error:

    status:
      conditions:
      - type: Reconciled
        status: "False"
        reason: Rejected
        message: 'rejected by 1 proxy (LDS 10.0.0.1_9080; configPatches[0]): Error
          adding/updating listener(s) ...; quarantined: served without it until it changes'

Which resources: the culprits that quarantine convicted (xds/quarantine.py);
with quarantine off (`--no-nack-quarantine`) the most likely suspect when the
trace is unambiguous (one suspect, or an EnvoyFilter that patched the rejected
resources): an innocent VirtualService never gets a Rejected condition because
it shares a listener with a bad EnvoyFilter. Only connected proxies count
(kube/wiring.py). The condition goes away when the rejection ends (the resource
changed, the proxy accepts again, or it disconnected). Only a
Reconciled condition with reason Rejected is ours; any other condition is kept.

A NACK storm (2,000 proxies rejecting the same resource within seconds) makes
one write per resource: a resource's desired condition is written once it has
not changed for `quiet` seconds (the proxy count settles), or `max_delay` after
it first differed from what is stored.

Limitation: each replica knows the NACKs of the proxies connected to it, and
only the Lease holder writes: NACKs seen only by a follower are not written
(istiod shares such reports through ConfigMaps; not done here).
"""

from __future__ import annotations

import datetime
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from .client import KubeApiError, KubeClient, resource_path
from .convert import plural

log = logging.getLogger("istiod_py.kube.status")

CONDITION = "Reconciled"
REASON = "Rejected"
MAX_MESSAGE = 1000  # Envoy's errors can be long; the condition stays readable
_TYPES = {
    "type.googleapis.com/envoy.config.listener.v3.Listener": "LDS",
    "type.googleapis.com/envoy.config.cluster.v3.Cluster": "CDS",
    "type.googleapis.com/envoy.config.route.v3.RouteConfiguration": "RDS",
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment": "EDS",
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret": "SDS",
}

Key = tuple[str, str, str]  # kind, namespace, name


class RejectionCase(Protocol):
    """What this module reads of xds/quarantine.py's `Case` (kube/ does not import xds/)."""

    proxy_id: str
    type_url: str
    rejected: tuple[str, ...]
    message: str
    fields: dict[str, list[str]]
    suspects: list[str]
    phase: str
    culprits: frozenset[str]
    since: float


@dataclass(frozen=True)
class Rejection:
    proxies: int
    type: str
    resources: tuple[str, ...]
    fields: tuple[str, ...]
    message: str
    quarantined: bool

    def condition_message(self) -> str:
        what = " ".join(x for x in (self.type, ", ".join(self.resources[:3])) if x)
        if len(self.resources) > 3:
            what += f" and {len(self.resources) - 3} more"
        if self.fields:
            what += "; " + ", ".join(self.fields)
        held = (
            "; quarantined: served without it until it changes"
            if self.quarantined
            else "; the proxies keep their earlier config until it changes"
        )
        n = self.proxies
        text = f"rejected by {n} prox{'y' if n == 1 else 'ies'} ({what}): {self.message.strip()}"
        return text[: MAX_MESSAGE - len(held)] + held


def _ref_key(ref: str) -> Key:
    kind, _, rest = ref.partition(":")[0].partition("/")
    ns, _, name = rest.partition("/")
    return kind, ns, name


def blamed(case: RejectionCase) -> frozenset[str]:
    """The configs a case is written on: convicted culprits, or (tracing only) an
    unambiguous suspect."""
    refs = set(case.culprits)
    if case.phase == "suspected" and case.suspects:
        top = case.suspects[0]
        if len(case.suspects) == 1 or top.startswith("EnvoyFilter/"):
            refs.add(top)
    return frozenset(refs)


def rejections(cases: Iterable[RejectionCase]) -> dict[Key, Rejection]:
    """Per config, the rejection to write: proxies counted, the earliest case's
    details (stable while the storm grows, so the message changes only by count)."""
    by_ref: dict[str, list[RejectionCase]] = {}
    for c in cases:
        for ref in blamed(c):
            by_ref.setdefault(ref, []).append(c)
    out: dict[Key, Rejection] = {}
    for ref, group in by_ref.items():
        first = min(group, key=lambda c: (c.since, c.proxy_id))
        out[_ref_key(ref)] = Rejection(
            proxies=len({c.proxy_id for c in group}),
            type=_TYPES.get(first.type_url, first.type_url.rpartition(".")[2]),
            resources=first.rejected,
            fields=tuple(sorted({p for c in group for p in c.fields.get(ref, [])})),
            message=first.message,
            quarantined=any(ref in c.culprits and c.phase != "suspected" for c in group),
        )
    return out


def ours(conditions: str) -> str:
    """The message of our Rejected condition among stored conditions ("" if none)."""
    for c in json.loads(conditions) if conditions else []:
        if isinstance(c, dict) and c.get("type") == CONDITION and c.get("reason") == REASON:
            return str(c.get("message") or "")
    return ""


def patched_conditions(conditions: str, message: str, now: str) -> list[Any] | None:
    """The stored conditions with ours set to `message` (removed when ""); None:
    no conditions left (the merge patch removes the field)."""
    others = [
        c
        for c in (json.loads(conditions) if conditions else [])
        if not (isinstance(c, dict) and c.get("type") == CONDITION and c.get("reason") == REASON)
    ]
    if message:
        others = [c for c in others if not (isinstance(c, dict) and c.get("type") == CONDITION)]
        others.append(
            {
                "type": CONDITION,
                "status": "False",
                "reason": REASON,
                "message": message,
                "lastProbeTime": now,
                "lastTransitionTime": now,
            }
        )
    return others or None


@dataclass
class _Pending:
    message: str
    first: float
    changed: float


class NackStatus:
    """Leader-only writer of Rejected conditions; `sync()` runs in a worker thread
    each round of kube/status.py's loop."""

    def __init__(
        self,
        client: KubeClient,
        cases: Callable[[], Iterable[RejectionCase]],
        stored: Callable[[], dict[Key, tuple[str, str]]],
        *,
        quiet: float = 1.0,
        max_delay: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.cases = cases
        # (kind, ns, name) -> (served API version, stored conditions JSON): cluster objects only
        self.stored = stored
        self.quiet = quiet
        self.max_delay = max_delay
        self.clock = clock
        self.writes = 0
        self._waiting: dict[Key, _Pending] = {}
        self._written: dict[Key, str] = {}  # written, not yet seen back by the informer

    def desired(self) -> dict[Key, str]:
        return {k: r.condition_message() for k, r in rejections(list(self.cases())).items()}

    def sync(self, want: dict[Key, str] | None = None) -> int:
        """Write what has settled; returns the number of writes. `want`: `desired()`
        computed on the event loop, where the quarantine's cases change."""
        from istiod_py.config.model import KINDS

        now = self.clock()
        want = self.desired() if want is None else want
        stored = self.stored()
        n = 0
        for key in set(want) | {k for k, (_, conds) in stored.items() if ours(conds)}:
            have = stored.get(key)
            if have is None or key[0] not in KINDS:
                self._waiting.pop(key, None)
                continue  # not a cluster object (a file, a registry kind): configz shows it
            msg = want.get(key, "")
            if ours(have[1]) == msg:
                self._waiting.pop(key, None)
                self._written.pop(key, None)
                continue
            if self._written.get(key) == msg:
                continue  # written; the informer has not seen it yet
            p = self._waiting.get(key)
            if p is None:
                p = self._waiting[key] = _Pending(msg, now, now)
            elif p.message != msg:
                p.message, p.changed = msg, now
            if now - p.changed < self.quiet and now - p.first < self.max_delay:
                continue
            if self._write(key, have, msg):
                n += 1
            self._waiting.pop(key, None)
        for gone in [k for k in self._waiting if k not in want and k not in stored]:
            del self._waiting[gone]
        for gone in [k for k in self._written if k not in stored]:
            del self._written[gone]
        return n

    def _write(self, key: Key, have: tuple[str, str], msg: str) -> bool:
        kind, ns, name = key
        from istiod_py.config.model import KINDS

        info = KINDS[kind]
        path = resource_path(info.group, have[0], plural(info.kind), ns, name) + "/status"
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            self.client.patch(path, {"status": {"conditions": patched_conditions(have[1], msg, stamp)}})
        except KubeApiError as e:
            if e.status != 404:  # 404: deleted meanwhile
                log.warning("writing the Rejected condition of %s %s/%s failed: %s", kind, ns, name, e)
            return False
        except Exception as e:  # a write failure is logged and retried next round, never fatal
            log.warning("writing the Rejected condition of %s %s/%s failed: %r", kind, ns, name, e)
            return False
        self._written[key] = msg
        self.writes += 1
        if msg:
            log.info("status of %s %s/%s: Reconciled False (Rejected): %s", kind, ns, name, msg[:200])
        else:
            log.info("status of %s %s/%s: Rejected condition removed", kind, ns, name)
        return True
