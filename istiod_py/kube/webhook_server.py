"""istiod's admission webhook port (15017): ONE HTTPS server for every webhook
the control plane answers, and the leader's caBundle patching of the webhook
configurations that call it.

- `WebhookServer` serves /validate (kube/webhook.py) from the start; another
  webhook mounts its routes with one call before `start()`:
  `server.mount(istiod_py.inject.webhook.add_routes)` adds /inject. Its serving
  certificate comes from the built-in CA, for the istiod Service's DNS names
  (`istiod`, `istiod.NS`, `istiod.NS.svc`, `istiod.NS.svc.cluster.local`) and the
  listen address (the API server may call it by `clientConfig.url`), and is
  renewed at half its lifetime without a restart.
- `CaBundlePatcher`: as istiod's webhook controllers, the Lease holder sets
  `clientConfig.caBundle` of every webhook in the Validating/Mutating
  WebhookConfigurations labelled `istio.io/rev=<revision>` to the mesh root,
  and switches the validator's `failurePolicy` from Ignore to Fail once this
  server answers (install renders Ignore because no one can answer before the
  first start). It re-checks every few seconds, so a configuration created or
  edited later is repaired.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import ssl
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from .client import KubeApiError, KubeClient
from .webhook import WEBHOOK_PATH, handle_validate

log = logging.getLogger("istiod_py.kube.webhook_server")

DEFAULT_PORT = 15017
VALIDATING = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
MUTATING = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"


def service_dns_names(namespace: str, service: str = "istiod") -> tuple[str, ...]:
    return (
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
        "localhost",
    )


class WebhookServer:
    """HTTPS on host:port; /validate always, other routes by `mount`."""

    def __init__(
        self,
        ca: Any,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        namespace: str = "istio-system",
        service: str = "istiod",
    ):
        self.ca = ca
        self.host = host
        self.port = port
        self.dns_names = service_dns_names(namespace, service)
        self.app = web.Application()
        self.app.router.add_post(WEBHOOK_PATH, handle_validate)
        self._ctx: ssl.SSLContext | None = None
        self._runner: web.AppRunner | None = None
        self._renew: asyncio.Task[None] | None = None

    def mount(self, add_routes: Callable[[web.Application], None]) -> None:
        """Add another webhook's routes (before `start`): `server.mount(inject.webhook.add_routes)`."""
        add_routes(self.app)

    @property
    def paths(self) -> list[str]:
        return sorted({r.resource.canonical for r in self.app.router.routes() if r.resource is not None})

    def _load_cert(self, ctx: ssl.SSLContext) -> float:
        """(Re)load a fresh serving certificate; returns its lifetime in seconds.
        A loaded context applies a new chain to the handshakes that follow."""
        ips = ["127.0.0.1"]
        if self.host not in ("0.0.0.0", "::", "127.0.0.1", "localhost"):
            ips.append(self.host)
        chain, key = self.ca.issue_serving_cert(self.dns_names, tuple(ips))
        with tempfile.TemporaryDirectory() as d:  # ssl loads only from files
            cert_path, key_path = Path(d) / "cert.pem", Path(d) / "key.pem"
            cert_path.write_bytes(chain)
            key_path.write_bytes(key)
            ctx.load_cert_chain(str(cert_path), str(key_path))
        return float(self.ca.options.default_ttl.total_seconds())

    async def start(self) -> int:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        lifetime = self._load_cert(ctx)
        self._ctx = ctx
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=ctx)
        await site.start()
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.port = int(server.sockets[0].getsockname()[1])
        self._renew = asyncio.get_running_loop().create_task(self._renew_loop(lifetime))
        log.info("admission webhooks on https://%s:%d (%s)", self.host, self.port, ", ".join(self.paths))
        return self.port

    async def _renew_loop(self, lifetime: float) -> None:
        while True:
            await asyncio.sleep(max(60.0, lifetime / 2))
            assert self._ctx is not None
            try:
                lifetime = self._load_cert(self._ctx)
            except Exception:  # a failed renewal keeps the current certificate; retried next round
                log.exception("renewing the webhook serving certificate failed")

    async def stop(self) -> None:
        if self._renew is not None:
            self._renew.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renew
        if self._runner is not None:
            await self._runner.cleanup()


def patch_configuration(obj: dict[str, Any], bundle_b64: str, fail_closed: bool) -> bool:
    """Set caBundle on every webhook (and failurePolicy Fail for a validator);
    True if anything changed."""
    changed = False
    for hook in obj.get("webhooks") or []:
        cc = hook.setdefault("clientConfig", {})
        if cc.get("caBundle") != bundle_b64:
            cc["caBundle"] = bundle_b64
            changed = True
        if fail_closed and hook.get("failurePolicy") == "Ignore":
            hook["failurePolicy"] = "Fail"
            changed = True
    return changed


class CaBundlePatcher:
    """Leader-only: keeps the webhook configurations of this revision trusting the mesh root."""

    def __init__(
        self,
        client: KubeClient,
        root_pem: Callable[[], str],
        is_leader: Callable[[], bool],
        revision: str = "default",
        interval: float = 5.0,
    ) -> None:
        self.client = client
        self.root_pem = root_pem
        self.is_leader = is_leader
        self.selector = f"istio.io/rev={revision}"
        self.interval = interval
        self.writes = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    def resync(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            if self.is_leader():
                try:
                    await asyncio.to_thread(self.reconcile)
                except Exception:  # the API server may be away; the next round retries
                    log.exception("patching the webhook configurations' caBundle failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)

    def reconcile(self) -> list[str]:
        """One pass over both kinds; returns the names written."""
        bundle = base64.b64encode(self.root_pem().encode()).decode()
        written: list[str] = []
        kinds = (
            (VALIDATING, "ValidatingWebhookConfiguration", True),
            (MUTATING, "MutatingWebhookConfiguration", False),
        )
        for base, kind, fail_closed in kinds:
            listed = self.client.get(base, [("labelSelector", self.selector)])
            for item in listed.get("items") or []:
                item.update(apiVersion="admissionregistration.k8s.io/v1", kind=kind)  # list items carry neither
                name = str((item.get("metadata") or {}).get("name") or "")
                for _ in range(5):  # another writer may move the resourceVersion between read and write
                    if not patch_configuration(item, bundle, fail_closed):
                        break
                    try:
                        self.client.replace(f"{base}/{name}", item)
                    except KubeApiError as e:
                        if e.status != 409:
                            raise
                        item = self.client.get(f"{base}/{name}")
                        item.update(apiVersion="admissionregistration.k8s.io/v1", kind=kind)
                        continue
                    written.append(name)
                    self.writes += 1
                    log.info("caBundle of %s set to the mesh root", name)
                    break
        return written
