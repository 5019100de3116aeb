"""Wires sources, the push pipeline, the ADS server, the CA and debug HTTP; owns
lifecycle and signals."""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
from dataclasses import dataclass, field
from typing import Any

import grpc
from aiohttp import web

from istiod_py.config.store import FileSource
from istiod_py.debug import preview as preview_debug
from istiod_py.debug import provenance as provenance_debug
from istiod_py.debug import xds_debug
from istiod_py.debug.http import DebugServer
from istiod_py.model import MeshConfig
from istiod_py.registry.aggregate import Aggregator, SourceSnapshot
from istiod_py.translate import envoyfilter
from istiod_py.translate.generate import Translator
from istiod_py.xds.metrics import XdsMetrics
from istiod_py.xds.pipeline import PushPipeline
from istiod_py.xds.server import XdsServer

log = logging.getLogger("istiod_py")


class StartError(Exception):
    """The control plane cannot start (a port is taken); the message names what and where."""


def grpc_server_options() -> list[tuple[str, Any]]:
    """Channel arguments of the xDS (and secure) gRPC servers."""
    return [
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ("grpc.max_receive_message_length", 16 * 1024 * 1024),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.max_concurrent_streams", 100_000),
        # A reconnect storm delivers thousands of new streams at once, faster
        # than the event loop takes them from gRPC core; past the core's default
        # pending-call limit (1,000) it cancelled the oldest waiting streams
        # (clients saw CANCELLED and reconnected, adding to the storm). Let them
        # wait instead: the initial-response gate (xds/slots.py) paces the work.
        ("grpc.server.max_pending_requests", 100_000),
        ("grpc.server.max_pending_requests_hard_limit", 100_000),
        ("grpc.server_max_unrequested_time_in_server", 300),
        # gRPC sets SO_REUSEPORT by default: a second `serve` on the same port would then
        # start without error and take a share of new proxy connections.
        ("grpc.so_reuseport", 0),
    ]


def _bind_grpc(server: grpc.aio.Server, what: str, address: str, port: int, creds: Any = None) -> int:
    """Bind one gRPC port, failing loudly. With SO_REUSEPORT off (see _GRPC_OPTIONS) a port in use
    is a bind error instead of two servers silently sharing the proxies' connections."""
    target = f"{address}:{port}"
    try:
        bound = server.add_secure_port(target, creds) if creds is not None else server.add_insecure_port(target)
    except RuntimeError as e:
        raise StartError(
            f"cannot listen on {target} for {what} (--{what}-port {port}): the address is already in use "
            "or not available on this host; stop the other process or choose another port"
        ) from e
    if bound == 0:  # older grpcio reports a failed bind as port 0
        raise StartError(f"cannot listen on {target} for {what} (--{what}-port {port})")
    return int(bound)


@dataclass
class ServeOptions:
    config_dir: str | None = None
    mesh_config: str | None = None
    listen_address: str = "127.0.0.1"
    xds_port: int = 15010
    secure_port: int = 15012
    debug_port: int = 15014
    debounce_quiet: float = 0.1
    debounce_max: float = 10.0
    # Endpoint-only changes under steady churn wait at most this long (see pipeline.py).
    debounce_max_eds: float = 0.3
    # > 0: the process's GC is tuned so full collections run between pushes
    # (gc_policy.py). `istiod-py serve` sets 60; library users keep Python's GC.
    gc_idle_interval: float = 0.0
    # > 0: glibc serves blocks this large from their own mmap, returned when
    # freed (malloc_policy.py); 0: malloc's default (a CPU-for-memory trade, off by default).
    malloc_mmap_threshold: int = 0
    # Config dir rescans: every poll_interval while file notifications are unavailable
    # or failed, every safety_poll_interval while they work (config/notify.py).
    poll_interval: float = 0.1
    safety_poll_interval: float = 2.0
    send_timeout: float = 30.0
    max_concurrent_pushes: int = 1000
    # First responses to newly connected streams, capped apart from pushes so a
    # reconnect storm is served in arrival order without starving config pushes.
    max_concurrent_initial: int = 50
    # New streams' first translations wait up to this long to be made in a batch (xds/first_batch.py).
    first_batch_ms: float = 10.0
    # Bytes of responses being written at once over all streams (xds/slots.py ByteBudget).
    max_send_bytes: int = 64 * 2**20
    max_connection_age: float = 1800.0
    # Serve a proxy without the config it rejects, found by bisecting (xds/quarantine.py);
    # on by default (issue 16), off for istiod's behaviour (keep resending what was rejected).
    nack_quarantine: bool = True
    # On stop (SIGTERM): how long streams get to finish their push and close.
    drain_timeout: float = 5.0
    # CA: where the self-signed root is kept; or a plug-in CA directory (cacerts).
    ca_dir: str | None = None
    cacerts_dir: str | None = None
    token_file: str | None = None
    enable_ca: bool = True
    # Kubernetes source: a kubeconfig path, or "in-cluster" (istiod_py/kube/wiring.py)
    kubeconfig: str | None = None
    # With kubeconfig: the admission webhooks (/validate, /inject) over TLS; 0: off.
    webhook_port: int = 15017
    extra: dict[str, Any] = field(default_factory=dict)


class ControlPlane:
    def __init__(self, opts: ServeOptions) -> None:
        self.opts = opts
        mesh = MeshConfig.load(opts.mesh_config) if opts.mesh_config else MeshConfig()
        self.mesh = mesh
        self.aggregator = Aggregator(mesh=mesh)
        self.translator = Translator()
        self.metrics = XdsMetrics()
        self.metrics.rejected_source = lambda: self.aggregator.errors
        self.pipeline: PushPipeline | None = None
        self.xds: XdsServer | None = None
        self.sources: list[FileSource] = []
        self.grpc_server: grpc.aio.Server | None = None
        self.secure_server: grpc.aio.Server | None = None
        self.web_runner: web.AppRunner | None = None
        self.gc: Any = None  # gc_policy.IdleCollector when --gc-idle-interval > 0
        self.kube: Any = None  # kube.wiring.KubeAttachment with --kubeconfig
        self.ca: Any = None
        self.ports: dict[str, int] = {}
        self._ready = False
        self._stopped = asyncio.Event()
        self._stopping: asyncio.Task[None] | None = None

    def _on_source(self, name: str) -> Any:
        def cb(snap: SourceSnapshot) -> None:
            assert self.pipeline is not None
            self.pipeline.source_changed(name, snap)

        return cb

    def errors(self) -> list[Any]:
        if self.pipeline is None:
            return self.aggregator.errors
        ctx = self.translator.context(self.pipeline.state)
        quarantined = self.xds.quarantine.errors() if self.xds is not None else []
        return [*self.aggregator.errors, *envoyfilter.translation_errors(ctx), *quarantined]

    async def start(self) -> None:
        o = self.opts
        if o.malloc_mmap_threshold > 0:  # before the config load's allocations
            from istiod_py import malloc_policy

            malloc_policy.configure(o.malloc_mmap_threshold)
        # Initial load happens before anything listens, so the first proxy sees
        # the whole config rather than an empty mesh.
        if o.config_dir:
            src = FileSource(o.config_dir, lambda snap: None, o.poll_interval, o.safety_poll_interval)
            self.aggregator.set_source(src.name, src.load())
            self.sources.append(src)
        if o.kubeconfig:  # Kubernetes as a source, synced before anything listens
            from istiod_py.kube.wiring import attach

            self.kube = await attach(self, o.kubeconfig)
        self.pipeline = PushPipeline(
            self.aggregator,
            self._push,
            quiet=o.debounce_quiet,
            max_delay=o.debounce_max,
            eds_max_delay=o.debounce_max_eds,
        )
        generate = self.translator.generate
        if self.kube is not None:  # SDS for credentialName from the cluster's Secrets
            generate = self.kube.wrap_generator(generate)
        self.xds = XdsServer(
            generate,
            self.pipeline.current,
            metrics=self.metrics,
            send_timeout=o.send_timeout,
            max_concurrent_pushes=o.max_concurrent_pushes,
            max_concurrent_initial=o.max_concurrent_initial,
            first_batch_s=o.first_batch_ms / 1000,
            max_send_bytes=o.max_send_bytes,
            max_connection_age=o.max_connection_age,
            isolated=lambda: Translator().generate,
            nack_quarantine=o.nack_quarantine,
        )
        options = grpc_server_options()
        self.grpc_server = grpc.aio.server(options=options)
        self.grpc_server.add_generic_rpc_handlers((self.xds.rpc_handler(),))
        self.ports["xds"] = _bind_grpc(self.grpc_server, "xds", o.listen_address, o.xds_port)
        await self._start_secure(options)
        await self.grpc_server.start()
        for src in self.sources:
            src.on_change = self._on_source(src.name)
            src._task = asyncio.get_running_loop().create_task(src._watch())
        registries = [self.metrics.registry]
        if self.ca is not None and getattr(self.ca, "registry", None) is not None:
            registries.append(self.ca.registry)
        debug = DebugServer(self.xds, self.pipeline, registries, self.errors, lambda: self._ready)
        provenance_debug.register(debug, self.xds)
        preview_debug.register(debug, self.xds, lambda: Translator().generate)
        # istiod's debug types over xDS, so tools that ask istiod over ADS work unchanged.
        for t in xds_debug.TYPES:
            self.xds.debug_types[t] = functools.partial(xds_debug.resources_for, debug.xds_views, t)
        self.web_runner = web.AppRunner(debug.app(), access_log=None)
        await self.web_runner.setup()
        # aiohttp leaves SO_REUSEPORT off, so a port in use is an OSError here.
        site = web.TCPSite(self.web_runner, o.listen_address, o.debug_port, reuse_port=False)
        try:
            await site.start()
        except OSError as e:
            raise StartError(
                f"cannot listen on {o.listen_address}:{o.debug_port} for debug HTTP (--debug-port {o.debug_port}): "
                f"{e.strerror or e}; stop the other process or choose another port"
            ) from e
        sockets = getattr(site, "_server", None)
        if sockets is not None and sockets.sockets:
            self.ports["debug"] = sockets.sockets[0].getsockname()[1]
        if o.gc_idle_interval > 0:
            from istiod_py import gc_policy

            gc_policy.configure()
            self.gc = gc_policy.IdleCollector(self._idle, o.gc_idle_interval)
            self.gc.start()
        self._ready = True
        log.info(
            "istiod-py serving: xDS %s:%s, debug %s:%s, %d services, %d configs, %d errors",
            o.listen_address,
            self.ports["xds"],
            o.listen_address,
            self.ports.get("debug"),
            len(self.pipeline.state.services),
            sum(len(v) for v in self.pipeline.state.configs.values()),
            len(self.errors()),
        )

    async def _start_secure(self, options: list[tuple[str, Any]]) -> None:
        """The CA and xDS over TLS on the secure port, when the CA is enabled."""
        o = self.opts
        if not o.enable_ca:
            return
        from istiod_py.ca.runtime import start_ca  # the CA is optional at import time

        self.ca = start_ca(
            self.mesh,
            ca_dir=o.ca_dir,
            cacerts_dir=o.cacerts_dir,
            token_file=o.token_file,
            listen_address=o.listen_address,
        )
        if self.kube is not None:  # CSRs with service-account tokens, checked by TokenReview
            self.kube.extend_ca(self.ca)
            try:
                self.ports["webhook"] = await self.kube.start_webhooks(self.ca, o.listen_address, o.webhook_port)
            except OSError as e:
                raise StartError(
                    f"cannot listen on {o.listen_address}:{o.webhook_port} for the webhooks "
                    f"(--webhook-port {o.webhook_port}): {e.strerror or e}"
                ) from e
        creds = self.ca.server_credentials()
        self.secure_server = grpc.aio.server(options=options)
        assert self.xds is not None
        self.secure_server.add_generic_rpc_handlers((self.xds.rpc_handler(),))
        self.ca.register(self.secure_server)
        self.ports["secure"] = _bind_grpc(self.secure_server, "secure", o.listen_address, o.secure_port, creds)
        await self.secure_server.start()

    def _idle(self) -> bool:
        """No change waiting to be pushed and no push or first response being sent."""
        if self.pipeline is None or self.xds is None:
            return True
        return (
            self.pipeline.idle.is_set() and self.xds.push_slots.inflight == 0 and self.xds.initial_slots.inflight == 0
        )

    def _push(self, req: Any) -> None:
        if self.xds is not None:
            self.xds.push(req)

    async def stop(self, grace: float | None = None) -> None:
        """Graceful drain, at most `grace` seconds (default `drain_timeout`):
        stop accepting streams, let each stream finish the push in flight, close
        every stream with OK (proxies keep their config and reconnect), then exit.
        Idempotent: a second call waits for the first."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop(self.opts.drain_timeout if grace is None else grace))
        await asyncio.shield(self._stopping)

    async def _stop(self, grace: float) -> None:
        self._ready = False  # /ready fails first: load balancers stop sending proxies here
        log.info("draining: closing xDS streams within %ss", grace)
        for src in self.sources:
            await src.stop()
        if self.kube is not None:
            await self.kube.stop()
        if self.gc is not None:
            await self.gc.stop()
        if self.pipeline is not None:
            await self.pipeline.stop()
        # Stopping the gRPC servers refuses new connections and streams at once;
        # the streams already open stay until they end (or the grace runs out).
        servers = [srv for srv in (self.grpc_server, self.secure_server) if srv is not None]
        stopping = [asyncio.ensure_future(srv.stop(grace)) for srv in servers]
        if self.xds is not None:
            await self.xds.close(grace)
        if stopping:
            await asyncio.gather(*stopping, return_exceptions=True)
        if self.web_runner is not None:
            await self.web_runner.cleanup()
        log.info("stopped")
        self._stopped.set()

    async def run_forever(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(self.stop()))
        await self._stopped.wait()
