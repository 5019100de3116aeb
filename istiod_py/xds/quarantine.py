"""NACK to origin, and quarantine of the config a proxy rejects.

When a proxy NACKs, the rejected resources are the ones whose names Envoy's
error message mentions (all of the response's when it names none); their
provenance (translate/provenance.py, kept on the cache Parts) gives the Istio
configs that produced them, with field paths for EnvoyFilter patches. One
suspect is the culprit at once; several are bisected: the proxy is served its
config without half of them, an ACK keeps the culprit in that half, a NACK
moves it to the other half. The culprit is then quarantined for that proxy:
its config is generated from the state without the culprit (a separate
translator, so the shared memo of everyone else is untouched), so the proxy's
other updates keep flowing. The quarantine ends when the culprit's content
changes (or it is deleted): the proxy gets the normal config again, and a
still-broken fix is simply NACKed and quarantined anew.

The culprit is named in the log, in `/debug/syncz` (the NACK's `origins`), in
the metric `pilot_xds_config_rejects{kind,namespace,name,type}`, in the
control plane's errors (configz), and in `/debug/quarantinez`.

Quarantine changes what a proxy is served, which istiod never does; it is on
by default in `serve` (issue 16: one bad resource must not freeze a proxy's
other updates) and `serve --no-nack-quarantine` gives istiod's behaviour: a
NACK is only traced, its suspects named (EnvoyFilter patches first), and the
proxy stays STALE. In Kubernetes the leader writes the culprit's status
(kube/nack_status.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter

from istiod_py.cache.resources import Resources
from istiod_py.model import MeshState, Proxy

from .connection import PushRequest, Watch
from .types import TypeUrl

if TYPE_CHECKING:
    from .stream import Stream

log = logging.getLogger("istiod_py.xds")

Generator = Callable[[MeshState, Proxy, str], Resources]

# Kinds most likely to produce config that passes validation but Envoy rejects come first.
_SUSPECT_ORDER = ("EnvoyFilter", "DestinationRule", "VirtualService", "Sidecar")


_REGISTRY_KINDS = frozenset({"ServiceEntry", "WorkloadEntry", "WorkloadGroup", "Service", "EndpointSlice"})


def _config_ref(ref: str) -> str:
    return ref.partition(":")[0]


def _split(ref: str) -> tuple[str, str, str]:
    kind, _, rest = ref.partition("/")
    ns, _, name = rest.partition("/")
    return kind, ns, name


def rejected_names(res: Resources, message: str) -> tuple[str, ...]:
    """The resources of `res` that Envoy's error message names (as whole tokens)."""
    found = []
    for name in res.index:
        if name in message and re.search(rf"(?<![\w.|:-]){re.escape(name)}(?![\w.|-])", message):
            found.append(name)
    return tuple(sorted(found))


def suspects_of(res: Resources, names: tuple[str, ...]) -> tuple[list[str], dict[str, list[str]]]:
    """Configs behind `names` (ordered, most likely first) and their field paths."""
    fields: dict[str, list[str]] = {}
    for n in names:
        for ref in res.origins_of(n):
            cfg, _, path = ref.partition(":")
            paths = fields.setdefault(cfg, [])
            if path and path not in paths:
                paths.append(path)

    def rank(ref: str) -> tuple[int, str]:
        kind = ref.partition("/")[0]
        return (_SUSPECT_ORDER.index(kind) if kind in _SUSPECT_ORDER else len(_SUSPECT_ORDER), ref)

    return sorted(fields, key=rank), fields


def config_digest(state: MeshState, ref: str) -> str:
    """Content digest of a config in `state` ("" when it is gone)."""
    kind, ns, name = _split(ref)
    for c in state.of_kind(kind):
        if c.meta.namespace == ns and c.meta.name == name:
            body = c.spec.SerializeToString(deterministic=True)
            return hashlib.blake2b(body + repr(sorted(c.meta.labels.items())).encode(), digest_size=8).hexdigest()
    return ""


def without(state: MeshState, excluded: frozenset[str]) -> MeshState:
    """`state` minus the configs in `excluded` (same version: it is that state, filtered)."""
    configs = {
        kind: tuple(c for c in items if f"{kind}/{c.meta.namespace}/{c.meta.name}" not in excluded)
        for kind, items in state.configs.items()
    }
    return dataclasses.replace(state, configs=configs)


@dataclass
class Case:
    proxy_id: str
    type_url: str
    rejected: tuple[str, ...]
    message: str
    fields: dict[str, list[str]]
    suspects: list[str]
    phase: str = "bisecting"  # bisecting | quarantined | unresolved | suspected (quarantine off)
    trial: frozenset[str] = frozenset()
    culprits: frozenset[str] = frozenset()
    digests: dict[str, str] = field(default_factory=dict)
    tried_first: bool = False
    since: float = field(default_factory=time.time)

    @property
    def excluded(self) -> frozenset[str]:
        return self.culprits | self.trial

    def origins(self) -> list[str]:
        refs = self.culprits or frozenset(self.suspects)
        return [f"{r}:{p}" if p else r for r in sorted(refs) for p in (self.fields.get(r) or [""])]

    def debug(self) -> dict[str, Any]:
        return {
            "proxy": self.proxy_id,
            "type": TypeUrl.SHORT.get(self.type_url, self.type_url),
            "phase": self.phase,
            "rejected_resources": list(self.rejected),
            "message": self.message,
            "culprits": [{"config": r, "fields": self.fields.get(r, [])} for r in sorted(self.culprits)],
            "suspects": self.suspects,
            "trial_excluded": sorted(self.trial),
            "since": self.since,
        }


class Quarantine:
    def __init__(self, host: Any, isolated: Callable[[], Generator] | None = None, enabled: bool = True) -> None:
        self.host = host  # the XdsServer: generate(), state(), streams, metrics
        # Off (`serve --no-nack-quarantine`, as istiod): NACKs are traced to their suspects
        # (named, most likely first) but nothing else is served.
        self.enabled = enabled
        self.cases: dict[str, Case] = {}
        self._isolated = isolated
        self._generate: Generator | None = None
        self._derived: dict[frozenset[str], tuple[MeshState, MeshState]] = {}
        self._logged: dict[tuple[str, str], float] = {}
        self.rejects = Counter(
            "pilot_xds_config_rejects",
            "xDS NACKs traced to the Istio config that caused them",
            ["kind", "namespace", "name", "type"],
            registry=host.metrics.registry,
        )

    # --- generation ---------------------------------------------------------

    def applies(self, proxy: Proxy) -> bool:
        case = self.cases.get(proxy.id)
        return case is not None and bool(case.excluded)

    def generate(self, state: MeshState, proxy: Proxy, type_url: str, main: Generator) -> Resources:
        case = self.cases[proxy.id]
        if case.phase == "quarantined" and any(config_digest(state, r) != d for r, d in case.digests.items()):
            log.info("%s: %s changed; quarantine lifted", proxy.id, ", ".join(sorted(case.culprits)))
            del self.cases[proxy.id]
            self._mark(proxy.id, False)
            return main(state, proxy, type_url)
        excluded = case.excluded
        hit = self._derived.get(excluded)
        if hit is None or hit[0] is not state:
            hit = (state, without(state, excluded))
            self._derived = {k: v for k, v in self._derived.items() if k in self._live_exclusions()}
            self._derived[excluded] = hit
        if self._generate is None:
            self._generate = self._isolated() if self._isolated is not None else main
        return self._generate(hit[1], proxy, type_url)

    def _live_exclusions(self) -> set[frozenset[str]]:
        return {c.excluded for c in self.cases.values()}

    # --- ACK / NACK -------------------------------------------------------------

    def on_nack(self, stream: Stream, w: Watch) -> None:
        nack = w.last_nack
        if nack is None or stream.info is None:
            return
        proxy = stream.proxy
        case = self.cases.get(proxy.id)
        if case is not None and case.phase == "bisecting" and case.type_url == w.type_url and case.trial:
            # Still rejected without the trial half: the culprit is among the others.
            case.suspects = [s for s in case.suspects if s not in case.trial]
            case.trial = frozenset()
            self._next(stream, case)
            nack.origins = tuple(case.origins())
            return
        res = self.host.generate(stream.state, proxy, w.type_url)
        names = rejected_names(res, nack.message)
        if not names:
            return  # Envoy's message names none of the resources sent: nothing to trace, no guessing
        suspects, fields = suspects_of(res, names)
        # Only what serving without is possible for: configs the translator reads
        # (a Service or ServiceEntry is named in `fields` but becomes the registry).
        state = stream.state
        suspects = [s for s in suspects if _split(s)[0] in state.configs and _split(s)[0] not in _REGISTRY_KINDS]
        earlier = case.culprits if case is not None else frozenset()
        fresh = [s for s in suspects if s not in earlier]
        if case is not None and case.phase == "quarantined" and not fresh:
            # Rejected even without the culprit, and nothing else explains it.
            case.phase = "unresolved"
            case.culprits = frozenset()
            if self._should_log(proxy.id, "unresolved"):
                log.warning("%s still rejects %s without %s; serving its normal config", proxy.id, names, earlier)
            self._push(stream)
            return
        case = Case(proxy.id, w.type_url, names, nack.message, fields, fresh)
        case.culprits = earlier  # an earlier quarantine stays
        self.cases[proxy.id] = case
        if not self.enabled:
            self._suspect(case)
        else:
            self._next(stream, case)
        nack.origins = tuple(case.origins())

    def _suspect(self, case: Case) -> None:
        """Tracing only: name the suspects, most likely first; serve nothing else."""
        case.phase = "suspected"
        if case.suspects:
            kind, ns, name = _split(case.suspects[0])
            self.rejects.labels(kind, ns, name, TypeUrl.SHORT.get(case.type_url, case.type_url)).inc()
        if self._should_log(case.proxy_id, "suspect"):
            log.warning(
                "%s rejected %s %s; built from %s (most likely first): %s",
                case.proxy_id,
                TypeUrl.SHORT.get(case.type_url, case.type_url),
                ", ".join(case.rejected),
                ", ".join(case.origins()) or "no Istio config",
                case.message[:500],
            )

    def _should_log(self, proxy_id: str, what: str, interval: float = 10.0) -> bool:
        """At most one line per proxy and kind of event per interval (a NACK loop
        must not flood the log; nacklog.py has the same rule for raw NACKs)."""
        now = time.monotonic()
        key = (proxy_id, what)
        if now - self._logged.get(key, -interval) < interval:
            return False
        if len(self._logged) > 10_000:
            self._logged.clear()
        self._logged[key] = now
        return True

    def on_ack(self, stream: Stream, w: Watch) -> None:
        if stream.info is None:
            return
        case = self.cases.get(stream.proxy.id)
        if case is not None and case.phase in ("suspected", "unresolved") and case.type_url == w.type_url:
            del self.cases[stream.proxy.id]  # accepted again: the rejection is over
            return
        if case is None or case.phase != "bisecting" or not case.trial or case.type_url != w.type_url:
            return
        # Accepted without the trial half: the culprit is in it.
        case.suspects = sorted(case.trial, key=case.suspects.index)
        case.trial = frozenset()
        self._next(stream, case)

    def _next(self, stream: Stream, case: Case) -> None:
        if not case.suspects:
            case.phase = "unresolved"
            if self._should_log(case.proxy_id, "unresolved"):
                log.warning(
                    "%s rejected %s (%s): no single Istio config explains it: %s",
                    case.proxy_id,
                    TypeUrl.SHORT.get(case.type_url, case.type_url),
                    ", ".join(case.rejected),
                    case.message[:300],
                )
            self._push(stream)
            return
        if len(case.suspects) == 1:
            self._convict(stream, case, case.suspects[0])
            return
        # The most likely suspect alone first (an EnvoyFilter patch: the one input
        # that is not generated by the translator), then halves.
        first = case.suspects[0]
        if first.startswith("EnvoyFilter/") and not case.tried_first:
            case.tried_first = True
            case.trial = frozenset({first})
        else:
            case.trial = frozenset(case.suspects[: len(case.suspects) // 2])
        log.info("%s: bisecting %d suspects of a rejected %s", case.proxy_id, len(case.suspects), case.type_url)
        self._push(stream)

    def _convict(self, stream: Stream, case: Case, ref: str) -> None:
        state = self.host.state()
        case.culprits = case.culprits | {ref}
        case.digests[ref] = config_digest(state, ref)
        case.phase = "quarantined"
        case.suspects = [ref]
        self._mark(case.proxy_id, True, tuple(case.origins()))
        short = TypeUrl.SHORT.get(case.type_url, case.type_url)
        kind, ns, name = _split(ref)
        self.rejects.labels(kind, ns, name, short).inc()
        if self._should_log(case.proxy_id, "convict " + ref):
            log.warning(
                "%s rejected %s %s because of %s%s: %s; quarantined for this proxy until it changes",
                case.proxy_id,
                short,
                ", ".join(case.rejected),
                ref,
                f" ({', '.join(case.fields.get(ref, []))})" if case.fields.get(ref) else "",
                case.message[:500],
            )
        self._push(stream)

    def _mark(self, proxy_id: str, on: bool, origins: tuple[str, ...] = ()) -> None:
        """Flag the proxy's recorded NACKs (shown by /debug/syncz and proxy-status)."""
        for s in list(self.host.streams.values()):
            if s.info is None or s.info.proxy.id != proxy_id:
                continue
            for w in s.info.watches.values():
                if w.last_nack is not None and (not on or w.last_nack.origins):
                    w.last_nack.quarantined = on
                    if origins:
                        w.last_nack.origins = origins

    def _push(self, stream: Stream) -> None:
        stream.request_push(PushRequest(self.host.state(), True, reason="quarantine"))

    # --- reporting ----------------------------------------------------------------

    def errors(self) -> list[str]:
        """One line per quarantined config, for configz's errors (file mode status)."""
        by_ref: dict[str, list[Case]] = {}
        for c in self.cases.values():
            for r in c.culprits:
                by_ref.setdefault(r, []).append(c)
        out = []
        for ref, cases in sorted(by_ref.items()):
            kind, ns, name = _split(ref)
            paths = sorted({p for c in cases for p in c.fields.get(ref, [])})
            first = cases[0]
            out.append(
                f"{kind} {ns}/{name}{' ' + ', '.join(paths) if paths else ''}: rejected by "
                f"{len(cases)} prox{'y' if len(cases) == 1 else 'ies'} ({first.proxy_id}: "
                f"{TypeUrl.SHORT.get(first.type_url, '')} {', '.join(first.rejected)}: {first.message[:300]}); "
                "quarantined for them until it changes"
            )
        return out

    def debug(self) -> list[dict[str, Any]]:
        return [c.debug() for c in self.cases.values()]
