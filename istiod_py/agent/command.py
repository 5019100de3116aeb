"""`istiod-py agent`: the pilot-agent role for one workload.

Generates the workload key locally, gets it signed by the CA (bearer token), serves
SDS `default` and `ROOTCA` to Envoy over a unix socket, rotates at half the
lifetime, writes an Envoy bootstrap that uses that socket and runs Envoy."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import tempfile
from pathlib import Path

import yaml

from istiod_py.cli import add_bootstrap_flags, bootstrap_options, command

log = logging.getLogger("istiod_py.agent")


@command
def _agent(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "agent",
        help="run a workload's agent: key + CSR + local SDS, then Envoy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_bootstrap_flags(p)
    p.add_argument("--ca-address", default="127.0.0.1:15012", help="CA (and secure xDS) HOST:PORT")
    p.add_argument("--root-cert", required=True, help="the mesh root (the control plane writes <ca-dir>/root-cert.pem)")
    p.add_argument("--token", default="", help="bearer token for the CA")
    p.add_argument("--token-file", default="", help="file holding the bearer token (re-read at each renewal)")
    p.add_argument("--trust-domain", default="cluster.local")
    p.add_argument("--cert-ttl", type=float, default=24 * 3600, help="requested certificate lifetime in seconds")
    p.add_argument("--rotation-fraction", type=float, default=0.5, help="renew after this fraction of the lifetime")
    p.add_argument("--workdir", default="", help="where the socket and bootstrap go (default: a temp dir)")
    p.add_argument("--xds-tls", action="store_true", help="connect xDS over TLS to --ca-address, verified by the root")
    p.add_argument("--no-envoy", action="store_true", help="run only the certificate + SDS part")
    p.add_argument("--envoy-binary", default="envoy")
    p.add_argument("--envoy-log-level", default="warning")
    p.set_defaults(func=run_agent)


def run_agent(args: argparse.Namespace) -> int:
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    import datetime as dt

    from istiod_py.agent.bootstrap import build_bootstrap
    from istiod_py.agent.certs import WorkloadCertManager
    from istiod_py.agent.sds import SDSServer
    from istiod_py.ca.spiffe import Identity

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix=f"istiod-py-agent-{args.name}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    socket_path = workdir / "sds.sock"
    mgr = WorkloadCertManager(
        args.ca_address,
        args.root_cert,
        Identity(args.namespace, args.service_account),
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
    log.info("agent for %s/%s: SDS on %s", args.namespace, args.service_account, socket_path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    envoy: asyncio.subprocess.Process | None = None
    rc = 0
    try:
        if not args.no_envoy:
            opts = bootstrap_options(args)
            opts.sds_socket = str(socket_path)
            if args.xds_tls:
                opts.discovery_address = args.ca_address
                opts.xds_root_cert = os.path.abspath(args.root_cert)
            boot_path = workdir / "envoy.yaml"
            boot_path.write_text(yaml.safe_dump(build_bootstrap(opts), sort_keys=False))
            binary = shutil.which(args.envoy_binary) or args.envoy_binary
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
            await stop.wait()
    finally:
        if envoy is not None and envoy.returncode is None:
            envoy.terminate()
            try:
                await asyncio.wait_for(envoy.wait(), 10)
            except TimeoutError:
                envoy.kill()
        await sds.stop()
        await mgr.stop()
    return rc
