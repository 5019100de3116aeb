"""Leader election with a coordination.k8s.io/v1 Lease, for the singleton duties
(root-certificate publishing; status writing later). Every replica serves xDS
and the CA; only the leader does these.

As client-go's leaderelection: the holder renews every `retry` seconds; another
replica takes the Lease when it has seen no change to it for `lease_duration`
seconds (its own clock only, so clock skew between replicas does not matter);
every write carries the resourceVersion read, so two candidates cannot both
win. On a clean stop the leader releases the Lease, and a successor takes it at
its next try instead of waiting out the lease."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

from .client import KubeApiError, KubeClient

log = logging.getLogger("istiod_py.kube.leader")


def _micro_time(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_identity() -> str:
    return f"{socket.gethostname()}_{os.getpid()}_{secrets.token_hex(3)}"


class LeaderElector:
    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        name: str = "istiod-py-leader",
        identity: str | None = None,
        *,
        lease_duration: float = 15.0,
        retry: float = 2.0,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity or default_identity()
        self.lease_duration = lease_duration
        self.retry = retry
        self.on_change = on_change
        self.is_leader = False
        self.leader_changed = asyncio.Event()
        self._observed: tuple[str, float] = ("", 0.0)  # (record, when we saw it change)
        self._task: asyncio.Task[None] | None = None

    @property
    def path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/{self.name}"

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.is_leader:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._release)
            self._set(False)

    def _set(self, leader: bool) -> None:
        if leader != self.is_leader:
            self.is_leader = leader
            log.info("%s leadership of Lease %s/%s", "took" if leader else "lost", self.namespace, self.name)
            self.leader_changed.set()
            if self.on_change is not None:
                self.on_change(leader)

    async def _run(self) -> None:
        last_error = ""
        while True:
            try:
                leader = await asyncio.to_thread(self._try_acquire_or_renew)
            except Exception as e:  # the API server is away: keep trying; a leader that cannot renew steps down
                if str(e) != last_error:  # once per distinct problem, not every retry
                    log.warning("Lease %s/%s: %s; retrying every %ss", self.namespace, self.name, e, self.retry)
                last_error = str(e)
                leader = self.is_leader and time.monotonic() - self._observed[1] < self.lease_duration
            else:
                last_error = ""
            self._set(leader)
            await asyncio.sleep(self.retry)

    def _spec(self, now: float, transitions: int, acquire: str | None = None) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
            "acquireTime": acquire or _micro_time(now),
            "renewTime": _micro_time(now),
            "leaseTransitions": transitions,
        }

    def _try_acquire_or_renew(self) -> bool:
        now = time.time()
        try:
            lease = self.client.get(self.path)
        except KubeApiError as e:
            if e.status != 404:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(now, 0),
            }
            try:
                self.client.create(self.path.rsplit("/", 1)[0], body)
            except KubeApiError as e2:
                if e2.status == 409:
                    return False  # someone else created it first
                raise
            self._observed = (repr(body["spec"]), time.monotonic())
            return True
        spec = lease.get("spec") or {}
        record = repr(spec)
        if record != self._observed[0]:
            self._observed = (record, time.monotonic())
        holder = spec.get("holderIdentity") or ""
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        expired = time.monotonic() - self._observed[1] > duration
        if holder and holder != self.identity and not expired:
            return False
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if holder == self.identity else 1)
        acquire = spec.get("acquireTime") if holder == self.identity else None
        lease["spec"] = self._spec(now, transitions, acquire)
        try:
            self.client.replace(self.path, lease)  # carries the resourceVersion we read
        except KubeApiError as e:
            if e.status == 409:
                return False  # another candidate wrote first
            raise
        self._observed = (repr(lease["spec"]), time.monotonic())
        return True

    def _release(self) -> None:
        lease = self.client.get(self.path)
        spec = lease.get("spec") or {}
        if spec.get("holderIdentity") != self.identity:
            return
        spec["holderIdentity"] = ""
        spec["leaseDurationSeconds"] = 1
        lease["spec"] = spec
        self.client.replace(self.path, lease)
