"""Status write-back, by the Lease holder only (replicas would fight over it):
istiod's analysis messages on the Istio resources read from the cluster, as
`status.validationMessages` (istiod's status controller with analysis on):

    status:
      validationMessages:
      - type: {code: IST0101, name: ReferencedResourceNotFound}
        level: ERROR
        documentationUrl: https://istio.io/latest/docs/reference/config/analysis/ist0101/

Messages come from config/analysis.py (the same as `istiod-py analyze` and
/debug/configz). A resource whose problem is fixed gets its messages removed.
Only resources that need a change are written (merge patch on the `status`
subresource, which neither bumps `metadata.generation` nor touches the spec);
the writes run in a worker thread, never on the event loop.

Gateway API resources read from the cluster get the status the conversion
computes (config/gatewayapi/: MeshState.gateway_api_status, `ResourceStatus.as_dict()`:
conditions, listeners, route parents), with `lastTransitionTime` set when written;
compared without it (and `observedGeneration`), so an unchanged status is not
rewritten. A route's `parents` list is replaced whole (istiod keeps other
controllers' entries: not yet here).

NACK origins (issue 16): a resource that proxies reject gets a `Reconciled`
condition with status False and reason Rejected (kube/nack_status.py), written
in the same rounds, by the same leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

from istiod_py.config.model import KINDS, Config, ConfigError
from istiod_py.model import MeshState

from .client import KubeApiError, KubeClient, resource_path
from .convert import normalized_status, plural
from .nack_status import NackStatus

log = logging.getLogger("istiod_py.kube.status")

KUBE_SOURCE_PREFIX = "kubernetes "  # convert.py names a cluster object's source "kubernetes KIND NS/NAME"
_CODE = re.compile(r"^(IST\d{4}) (\w+)")
# istiod's levels for the messages it produces (galley/pkg/config/analysis/msg/messages.yaml).
LEVELS = {"IST0101": "ERROR"}
DOC_URL = "https://istio.io/latest/docs/reference/config/analysis/{code}/"

Key = tuple[str, str, str]  # kind, namespace, name
Status = tuple[tuple[str, str, str], ...]  # (code, name, level) per message, sorted


def validation_messages(errors: Iterable[ConfigError]) -> dict[Key, Status]:
    out: dict[Key, set[tuple[str, str, str]]] = {}
    for e in errors:
        m = _CODE.match(e.message)
        if m is None or not e.kind:
            continue
        code, name = m.group(1), m.group(2)
        out.setdefault((e.kind, e.namespace, e.name), set()).add((code, name, LEVELS.get(code, "WARNING")))
    return {k: tuple(sorted(v)) for k, v in out.items()}


def status_body(messages: Status) -> dict[str, Any]:
    if not messages:
        return {"status": {"validationMessages": None}}  # merge patch: removes the field
    return {
        "status": {
            "validationMessages": [
                {"type": {"code": c, "name": n}, "level": lvl, "documentationUrl": DOC_URL.format(code=c.lower())}
                for c, n, lvl in messages
            ]
        }
    }


class StatusWriter:
    """Leader-only: makes each cluster resource's stored validationMessages equal
    to the analysis of the current state. `stored(kind, ns, name)` is what the
    informers last saw (kube/convert.py keeps it), so a new leader writes only
    what differs, whoever wrote before it."""

    def __init__(
        self,
        client: KubeClient,
        state: Callable[[], MeshState | None],
        stored: Callable[[], dict[Key, Status]],
        is_leader: Callable[[], bool],
        interval: float = 0.5,
        gateway_stored: Callable[[], dict[Key, tuple[str, str]]] | None = None,
        nack: NackStatus | None = None,
    ) -> None:
        self.nack = nack
        # Gateway API: (kind, ns, name) -> (served version, normalized stored status)
        self.gateway_stored = gateway_stored or dict
        self.client = client
        self.state = state
        self.stored = stored
        self.is_leader = is_leader
        self.interval = interval
        self.writes = 0
        # Written but not yet seen back by the informers: not written twice.
        self._pending: dict[Key, Status] = {}
        self._gw_pending: dict[Key, str] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        seen: tuple[int, int] = (-1, -1)
        while True:
            await asyncio.sleep(self.interval)
            st = self.state()
            if st is None or not self.is_leader():
                seen = (-1, -1)
                continue
            if self.nack is not None:  # every round: NACKs change without a new state
                try:
                    await asyncio.to_thread(self.nack.sync, self.nack.desired())
                except Exception:  # retried with the next round
                    log.exception("writing NACK status failed")
            stored, gw_stored = self.stored(), self.gateway_stored()
            mark = (st.version, hash((frozenset(stored.items()), frozenset(gw_stored.items()))))
            if mark == seen:
                continue
            try:
                await asyncio.to_thread(self.reconcile, self.desired(st), stored)
                await asyncio.to_thread(self.reconcile_gateway_api, st, gw_stored)
                seen = mark
            except Exception:  # retried with the next round
                log.exception("writing status failed")

    def desired(self, st: MeshState) -> dict[Key, tuple[Config, Status]]:
        from istiod_py.config.analysis import analyze

        configs = [c for items in st.configs.values() for c in items]
        messages = validation_messages(analyze(configs, st.services, st.mesh.trust_domain))
        out: dict[Key, tuple[Config, Status]] = {}
        for c in configs:
            if c.meta.source.startswith(KUBE_SOURCE_PREFIX) and c.meta.kind in KINDS:
                out[c.meta.key] = (c, messages.get(c.meta.key, ()))
        return out

    def reconcile(self, desired: dict[Key, tuple[Config, Status]], stored: dict[Key, Status]) -> int:
        n = 0
        for key, (cfg, msgs) in desired.items():
            have = stored.get(key, ())
            if have == msgs:
                self._pending.pop(key, None)
                continue
            if self._pending.get(key) == msgs:
                continue
            info = KINDS[cfg.meta.kind]
            version = cfg.meta.api_version.rpartition("/")[2]
            path = resource_path(info.group, version, plural(info.kind), cfg.meta.namespace, cfg.meta.name)
            try:
                self.client.patch(path + "/status", status_body(msgs))
            except KubeApiError as e:
                if e.status == 404:  # deleted meanwhile
                    continue
                raise
            self._pending[key] = msgs
            self.writes += 1
            n += 1
            log.info("status of %s %s/%s: %d validation message(s)", *key, len(msgs))
        return n

    def reconcile_gateway_api(self, st: MeshState, stored: dict[Key, tuple[str, str]]) -> int:
        import datetime

        from istiod_py.config.gatewayapi import GROUP

        n = 0
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for rs in st.gateway_api_status:
            key = (rs.kind, rs.namespace, rs.name)
            have = stored.get(key)
            if have is None or not have[0]:
                continue  # not a cluster object (a file), or its kind is no longer served
            want = rs.as_dict()
            norm = normalized_status(want)
            if have[1] == norm:
                self._gw_pending.pop(key, None)
                continue
            if self._gw_pending.get(key) == norm:
                continue
            ns = None if rs.kind == "GatewayClass" else rs.namespace
            path = resource_path(GROUP, have[0], plural(rs.kind), ns, rs.name) + "/status"
            try:
                self.client.patch(path, {"status": _stamped(want, now)})
            except KubeApiError as e:
                if e.status == 404:
                    continue
                raise
            self._gw_pending[key] = norm
            self.writes += 1
            n += 1
            log.info("status of %s %s/%s written", *key)
        return n


def _stamped(v: Any, now: str) -> Any:
    """Every condition gets lastTransitionTime (required by the Gateway API schema)."""
    if isinstance(v, dict):
        out = {k: _stamped(x, now) for k, x in v.items()}
        if "type" in out and "status" in out and "reason" in out:
            out.setdefault("lastTransitionTime", now)
        return out
    if isinstance(v, list):
        return [_stamped(x, now) for x in v]
    return v
