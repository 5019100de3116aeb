"""`istiod-py agent`: the pilot-agent role for one workload.

Generates the workload key locally, gets it signed by the CA (bearer token), serves
SDS `default` and `ROOTCA` to Envoy over a unix socket, rotates at half the
lifetime, writes an Envoy bootstrap that uses that socket and runs Envoy."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from istiod_py.agent.bootstrap import BootstrapOptions, build_bootstrap

if TYPE_CHECKING:
    from istiod_py.agent.status import StatusServer

log = logging.getLogger("istiod_py.agent")


@dataclass(frozen=True)
class AgentOptions:
    """What `istiod-py agent` runs with (istiod_py/cli/workload.py parses the flags)."""

    bootstrap: BootstrapOptions
    root_cert: str
    ca_address: str = "127.0.0.1:15012"
    token: str = ""
    token_file: str = ""
    trust_domain: str = "cluster.local"
    cert_ttl: float = 24 * 3600
    rotation_fraction: float = 0.5
    workdir: str = ""
    xds_tls: bool = False
    envoy: bool = True
    envoy_binary: str = "envoy"
    envoy_log_level: str = "warning"
    # pilot-agent's status port (15020: /healthz/ready, /app-health/..., /stats/prometheus,
    # /quitquitquit), the agent's one server; 0: off (a free loopback port when only
    # readiness is asked for). The readiness port (15021) is an Envoy listener forwarding
    # /healthz/ready to it (agent/bootstrap.py); 0: off.
    status_address: str = "127.0.0.1"
    status_port: int = 0
    readiness_port: int = 0
    # ISTIO_KUBE_APP_PROBERS and ISTIO_PROMETHEUS_ANNOTATIONS as the injector sets them (JSON).
    app_probers: str = ""
    prometheus_annotations: str = ""
    # The app's metrics URL for the merge; overrides prometheus_annotations ("": from them).
    app_metrics_url: str = ""


def run_agent(opts: AgentOptions) -> int:
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(_run(opts))


async def _run(args: AgentOptions) -> int:
    import datetime as dt

    from istiod_py.agent.certs import WorkloadCertManager
    from istiod_py.agent.sds import SDSServer
    from istiod_py.ca.spiffe import Identity

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix=f"istiod-py-agent-{args.bootstrap.name}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    socket_path = workdir / "sds.sock"
    mgr = WorkloadCertManager(
        args.ca_address,
        args.root_cert,
        Identity(args.bootstrap.namespace, args.bootstrap.service_account),
        trust_domain=args.trust_domain,
        token=args.token or None,
        token_path=args.token_file or None,
        ttl=dt.timedelta(seconds=args.cert_ttl),
        rotation_fraction=args.rotation_fraction,
        server_name="istiod.istio-system.svc",
    )
    await mgr.start()
    sds = SDSServer(mgr)
    await sds.start(str(socket_path))
    log.info("agent for %s/%s: SDS on %s", args.bootstrap.namespace, args.bootstrap.service_account, socket_path)
    stop = asyncio.Event()
    status = None
    if args.status_port or args.readiness_port:
        try:
            status = await _start_status(args, lambda: mgr.current is not None, stop.set)
        except BaseException:
            await sds.stop()
            await mgr.stop()
            raise
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    envoy: asyncio.subprocess.Process | None = None
    rc = 0
    try:
        if args.envoy:
            binary = shutil.which(args.envoy_binary) or args.envoy_binary
            versions = {"ISTIO_VERSION": _own_version(), "ENVOY_VERSION": await _envoy_version(binary)}
            meta = {**{k: v for k, v in versions.items() if v}, **args.bootstrap.extra_metadata}
            opts = replace(args.bootstrap, sds_socket=str(socket_path), extra_metadata=meta)
            if args.xds_tls:
                opts = replace(opts, discovery_address=args.ca_address, xds_root_cert=os.path.abspath(args.root_cert))
            if status is not None and args.readiness_port:
                wildcard = not args.status_port or args.status_address in ("", "0.0.0.0", "::")
                agent_host = "127.0.0.1" if wildcard else args.status_address
                opts = replace(
                    opts,
                    readiness_port=args.readiness_port,
                    readiness_address=args.status_address,
                    agent_address=f"{agent_host}:{status.port}",
                )
            boot_path = workdir / "envoy.yaml"
            boot_path.write_text(yaml.safe_dump(build_bootstrap(opts), sort_keys=False))
            envoy = await asyncio.create_subprocess_exec(
                binary, "-c", str(boot_path), "--use-dynamic-base-id", "--concurrency", "1",
                "-l", args.envoy_log_level,
            )  # fmt: skip
            waiter = asyncio.create_task(envoy.wait())
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if waiter in done:
                rc = waiter.result()
                log.error("envoy exited with %s", rc)
            stopper.cancel()
        else:
            if args.readiness_port:
                log.warning("--readiness-port is an Envoy listener: not served with --no-envoy")
            await stop.wait()
    finally:
        if envoy is not None and envoy.returncode is None:
            envoy.terminate()
            try:
                await asyncio.wait_for(envoy.wait(), 10)
            except TimeoutError:
                envoy.kill()
        if status is not None:
            await status.stop()
        await sds.stop()
        await mgr.stop()
    return rc


async def _start_status(args: AgentOptions, cert_ready: Callable[[], bool], quit: Callable[[], None]) -> StatusServer:
    """The agent's one HTTP server (agent/status.py) on the status port."""
    from istiod_py.agent.metrics_merge import MergedMetrics, app_metrics_url
    from istiod_py.agent.status import StatusServer, parse_probers

    b = args.bootstrap
    admin = f"{b.admin_address}:{b.admin_port}" if args.envoy else None
    app_url = args.app_metrics_url
    # As pilot-agent: the app's metrics are merged for sidecars only (a gateway's 15020 is exposed by its Service).
    if not app_url and b.proxy_type == "sidecar":
        app_url = app_metrics_url(args.prometheus_annotations, args.status_port)
    status = StatusServer(
        cert_ready, admin, parse_probers(args.app_probers), metrics=MergedMetrics(admin, app_url), on_quit=quit
    )
    # Readiness alone still needs the server Envoy forwards to: a free loopback port then.
    address, port = (args.status_address, args.status_port) if args.status_port else ("127.0.0.1", 0)
    try:
        await status.start(address, port)
    except BaseException:
        await status.stop()
        raise
    log.info("status server on %s:%s (app metrics: %s)", address, status.port, app_url or "none")
    return status


def _own_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("istiod_py")
    except PackageNotFoundError:
        return ""


async def _envoy_version(binary: str) -> str:
    """`envoy --version` prints `envoy  version: SHA/1.36.2/Clean/RELEASE/BoringSSL`: the
    release, put in node metadata so `istiod-py version` can list proxies' versions."""
    try:
        proc = await asyncio.create_subprocess_exec(
            binary, "--version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 10)
    except (OSError, TimeoutError):
        return ""
    m = re.search(r"version: [0-9a-f]+/([^/\s]+)", out.decode(errors="replace"))
    return m.group(1) if m else ""
