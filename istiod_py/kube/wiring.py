"""Kubernetes as a source of `istiod-py serve` (`--kubeconfig PATH`, or
`--kubeconfig in-cluster`), beside or instead of the config directory.

Kept apart from server.py so the control plane's wiring needs one call to add
the cluster: `attach(control_plane, kubeconfig)` syncs every informer before
anything listens (the first proxy sees the whole cluster) and then routes each
change through the push pipeline like the file source's."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from istiod_py.model import MeshConfig
from istiod_py.registry.aggregate import SourceSnapshot

from .client import KubeClient
from .leader import LeaderElector
from .source import KubeSource

log = logging.getLogger("istiod_py.kube")

IN_CLUSTER = "in-cluster"


class KubeAttachment:
    def __init__(self, cp: Any, source: KubeSource, client: KubeClient) -> None:
        self.cp = cp
        self.source = source
        self.client = client
        self.base_mesh: MeshConfig = cp.aggregator.mesh
        self.publisher: Any = None
        self.secrets: Any = None  # secrets.SecretStore: gateway credentials
        self.credentials: Any = None  # credentials.GatewayCredentials: their SDS
        self.webhooks: Any = None  # webhook_server.WebhookServer
        self.ca_bundle: Any = None  # webhook_server.CaBundlePatcher (leader only)
        self.status: Any = None  # status.StatusWriter (leader only)
        self.cacerts_copy: Path | None = None  # the cacerts Secret's files, removed on stop
        # Singleton duties (root-cert publishing) run on the Lease holder only.
        self.leader = LeaderElector(
            client,
            cp.aggregator.mesh.root_namespace,
            lease_duration=float(os.environ.get("ISTIOD_PY_LEASE_DURATION", "15")),
            retry=float(os.environ.get("ISTIOD_PY_LEASE_RETRY", "2")),
            on_change=self._leadership,
        )

    def _leadership(self, leader: bool) -> None:
        if leader and self.publisher is not None:
            self.publisher.resync()
        if leader and self.ca_bundle is not None:
            self.ca_bundle.resync()

    def on_change(self, snap: SourceSnapshot) -> None:
        if self.cp.pipeline is not None:
            self.cp.pipeline.source_changed(self.source.name, snap)
        else:
            self.cp.aggregator.set_source(self.source.name, snap)

    def on_mesh(self, mesh: MeshConfig | None) -> None:
        """The `istio` ConfigMap wins over --mesh-config while it exists."""
        new = mesh if mesh is not None else self.base_mesh
        if new == self.cp.aggregator.mesh:
            return
        log.info("mesh config from the cluster changed: %s", new)
        self.cp.aggregator.mesh = new
        self.cp.mesh = new
        self.on_change(self.source.snapshot)  # the rebuild sees the new mesh: a full push

    async def start_credentials(self, sync_timeout: float) -> None:
        """Secrets for credentialName, synced before the first proxy asks."""
        from .credentials import GatewayCredentials
        from .secrets import SecretAuthorizer, SecretStore

        self.secrets = SecretStore(self.client)
        self.credentials = GatewayCredentials(self.secrets, SecretAuthorizer(self.client), self._push_secrets)
        self.secrets.start()
        try:
            await asyncio.wait_for(self.secrets.synced.wait(), sync_timeout)
        except TimeoutError:
            log.warning("Secrets not listed within %.0fs: credentialName certificates follow later", sync_timeout)

    def _push_secrets(self, reason: str) -> None:
        """A full push of the current state: only SDS content differs, the other
        types are the memoized results of the same state (nothing sent)."""
        from istiod_py.xds.connection import PushRequest

        if self.cp.xds is not None and self.cp.pipeline is not None:
            self.cp.xds.push(PushRequest(self.cp.pipeline.current(), True, reason=reason))

    def start_status(self) -> None:
        from istiod_py.config.gatewayapi import GROUP as GATEWAY_API_GROUP

        from .nack_status import NackStatus
        from .status import StatusWriter

        def stored() -> dict[tuple[str, str, str], Any]:
            return {
                (inf.resource.kind, ns, name): obj.messages
                for inf in self.source.istio
                if inf.resource.group != GATEWAY_API_GROUP
                for (ns, name), obj in inf.store.items()
            }

        def state() -> Any:
            return self.cp.pipeline.current() if self.cp.pipeline is not None else None

        def gateway_stored() -> dict[tuple[str, str, str], tuple[str, str]]:
            return {
                (inf.resource.kind, ns, name): (inf.version, obj.status)
                for inf in self.source.istio
                if inf.resource.group == GATEWAY_API_GROUP
                for (ns, name), obj in inf.store.items()
            }

        def conditions() -> dict[tuple[str, str, str], tuple[str, str]]:
            return {
                (inf.resource.kind, ns, name): (inf.version, obj.conditions)
                for inf in self.source.istio
                if inf.resource.group != GATEWAY_API_GROUP
                for (ns, name), obj in inf.store.items()
            }

        def cases() -> list[Any]:  # the xDS server starts after this: read it when asked
            xds = self.cp.xds
            if xds is None or not xds.quarantine.cases:
                return []
            # Only connected proxies count: a deleted pod's rejection is not a current one.
            connected = {s.info.proxy.id for s in list(xds.streams.values()) if s.info is not None}
            return [c for c in list(xds.quarantine.cases.values()) if c.proxy_id in connected]

        self.status = StatusWriter(
            self.client,
            state,
            stored,
            lambda: self.leader.is_leader,
            gateway_stored=gateway_stored,
            nack=NackStatus(self.client, cases, conditions),
        )
        self.status.start()

    def wrap_generator(self, generate: Any) -> Any:
        return self.credentials.wrap(generate) if self.credentials is not None else generate

    def extend_ca(self, ca_runtime: Any) -> None:
        from .rootcert import RootCertPublisher
        from .tokenreview import add_to_ca

        add_to_ca(ca_runtime, self.client)
        self.publisher = RootCertPublisher(
            self.client, lambda: str(ca_runtime.ca.root_pem), lambda: self.leader.is_leader
        )
        self.publisher.start()

    async def start_webhooks(self, ca_runtime: Any, host: str, port: int) -> int:
        """/validate and /inject on one HTTPS server (certificate from the CA) on
        `port` (15017; 0: off), and the leader's caBundle patching of the webhook
        configurations of the injector's revision (labelled istio.io/rev)."""
        if not port:
            return 0
        from istiod_py.inject.values import InjectionValues
        from istiod_py.inject.webhook import add_routes

        from .webhook_server import CaBundlePatcher, WebhookServer

        inj = InjectionValues.from_env()
        namespace = os.environ.get("POD_NAMESPACE") or inj.istio_namespace
        service = f"istiod-{inj.revision}" if inj.revision else "istiod"
        self.webhooks = WebhookServer(ca_runtime.ca, host, port, namespace, service)
        self.webhooks.mount(add_routes)  # /inject (istiod_py/inject/webhook.py)
        bound = int(await self.webhooks.start())  # OSError (port in use) is the caller's to report
        self.ca_bundle = CaBundlePatcher(
            self.client,
            lambda: str(ca_runtime.ca.root_pem),
            lambda: self.leader.is_leader,
            revision=inj.revision or "default",
            interval=float(os.environ.get("ISTIOD_PY_WEBHOOK_RESYNC", "5")),
        )
        self.ca_bundle.start()
        return bound

    async def stop(self) -> None:
        if self.status is not None:
            await self.status.stop()
        if self.ca_bundle is not None:
            await self.ca_bundle.stop()
        if self.webhooks is not None:
            await self.webhooks.stop()
        if self.publisher is not None:
            await self.publisher.stop()
        if self.secrets is not None:
            await self.secrets.stop()
        await self.leader.stop()  # releases the Lease: a successor need not wait it out
        await self.source.stop()
        await asyncio.to_thread(self.client.close)
        if self.cacerts_copy is not None:
            shutil.rmtree(self.cacerts_copy, ignore_errors=True)


async def attach(cp: Any, kubeconfig: str, sync_timeout: float = 60.0) -> KubeAttachment:
    path = None if kubeconfig == IN_CLUSTER else kubeconfig
    client = await asyncio.to_thread(KubeClient.from_kubeconfig, path)
    root_ns = cp.aggregator.mesh.root_namespace
    att = KubeAttachment(cp, KubeSource(client, lambda snap: None, root_namespace=root_ns), client)
    if cp.opts.enable_ca and not cp.opts.cacerts_dir:  # the CA starts after this: plug-in CA from the cluster
        from .cacerts import fetch_cacerts

        plugin = await asyncio.to_thread(fetch_cacerts, client, root_ns)
        if plugin is not None:
            cp.opts.cacerts_dir = str(plugin)
            att.cacerts_copy = plugin
    source = att.source
    source.on_change = att.on_change
    source.on_mesh = att.on_mesh
    snap = await source.start(sync_timeout)
    cp.aggregator.set_source(source.name, snap)
    await att.start_credentials(sync_timeout)
    att.leader.start()
    att.start_status()
    log.info("kubernetes source: %s (%s)", client.host, client.description)
    return att
