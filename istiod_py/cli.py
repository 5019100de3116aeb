"""`istiod-py` command line. Subcommands are pluggable: each module in COMMANDS
adds its parser and handler."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Callable, Sequence

import yaml

from istiod_py.agent.bootstrap import BootstrapOptions, build_bootstrap

Handler = Callable[[argparse.Namespace], int]
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []  # type: ignore[type-arg]


def command(fn: Callable[[argparse._SubParsersAction], None]) -> Callable[[argparse._SubParsersAction], None]:  # type: ignore[type-arg]
    COMMANDS.append(fn)
    return fn


def _labels(text: str) -> dict[str, str]:
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        k, sep, v = part.partition("=")
        if not sep or not k:
            raise argparse.ArgumentTypeError(f"label {part!r} is not KEY=VALUE")
        out[k] = v
    return out


@command
def _serve(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("serve", help="run the control plane")
    p.add_argument("--config-dir", help="directory of Istio YAML (and Kubernetes Service/EndpointSlice); watched")
    p.add_argument("--kubeconfig", help="watch this Kubernetes cluster too ('in-cluster': the pod's service account)")
    p.add_argument("--mesh-config", help="mesh config YAML (rootNamespace, trustDomain, outboundTrafficPolicy, ...)")
    p.add_argument("--listen-address", default="127.0.0.1", help="address every port binds (default 127.0.0.1)")
    p.add_argument("--xds-port", type=int, default=15010, help="plaintext xDS (default 15010)")
    p.add_argument("--secure-port", type=int, default=15012, help="xDS and CA over TLS (default 15012)")
    p.add_argument("--debug-port", type=int, default=15014, help="debug and /metrics HTTP (default 15014)")
    p.add_argument("--debounce-quiet", type=float, default=0.1, help="seconds of quiet before a push (default 0.1)")
    p.add_argument("--debounce-max", type=float, default=10.0, help="longest a push waits while events keep coming")
    p.add_argument(
        "--gc-idle-interval",
        type=float,
        default=60.0,
        help="full garbage collection every N s while no push runs (0: Python's default GC; see gc_policy.py)",
    )
    p.add_argument(
        "--poll-interval",
        type=float,
        default=0.1,
        help="rescan the config dir every N s besides file notifications (default 0.1)",
    )
    p.add_argument(
        "--debounce-max-eds",
        type=float,
        default=0.3,
        help="longest an endpoint-only change waits while events keep coming (default 0.3)",
    )
    p.add_argument("--max-connection-age", type=float, default=1800.0, help="recycle xDS streams after N s (±10%%)")
    p.add_argument("--send-timeout", type=float, default=30.0, help="close a stream whose send blocks N s")
    p.add_argument("--max-concurrent-pushes", type=int, default=100, help="pushes sent at once (default 100)")
    p.add_argument(
        "--max-concurrent-initial",
        type=int,
        default=50,
        help="first responses to new streams sent at once; a reconnect storm queues in order (default 50)",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=5.0,
        help="on SIGTERM, seconds streams get to finish their push and close with OK (default 5)",
    )
    p.add_argument("--ca-dir", default="./var/ca", help="where the self-signed root CA is created and kept")
    p.add_argument("--cacerts-dir", help="plug-in CA in Istio's layout (ca-cert.pem, ca-key.pem, ...)")
    p.add_argument("--token-file", help="YAML mapping bearer tokens to identities, for CSR authentication")
    p.add_argument("--no-ca", action="store_true", help="do not run the CA or the secure port")
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from istiod_py.server import ControlPlane, ServeOptions

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    opts = ServeOptions(
        config_dir=args.config_dir,
        mesh_config=args.mesh_config,
        listen_address=args.listen_address,
        xds_port=args.xds_port,
        secure_port=args.secure_port,
        debug_port=args.debug_port,
        debounce_quiet=args.debounce_quiet,
        debounce_max=args.debounce_max,
        debounce_max_eds=args.debounce_max_eds,
        poll_interval=args.poll_interval,
        max_connection_age=args.max_connection_age,
        send_timeout=args.send_timeout,
        max_concurrent_pushes=args.max_concurrent_pushes,
        max_concurrent_initial=args.max_concurrent_initial,
        drain_timeout=args.drain_timeout,
        ca_dir=args.ca_dir,
        cacerts_dir=args.cacerts_dir,
        token_file=args.token_file,
        enable_ca=not args.no_ca,
        gc_idle_interval=args.gc_idle_interval,
        kubeconfig=args.kubeconfig,
    )

    async def main() -> None:
        cp = ControlPlane(opts)
        await cp.start()
        await cp.run_forever()

    asyncio.run(main())
    return 0


def add_bootstrap_flags(p: argparse.ArgumentParser) -> None:
    """Workload identity and proxy flags shared by `bootstrap` and `agent`."""
    p.add_argument("--type", choices=["sidecar", "router"], default="sidecar", help="sidecar, or router for a gateway")
    p.add_argument("--ip", default="127.0.0.1", help="the workload's address (its identity in the mesh)")
    p.add_argument("--name", required=True, help="pod/workload instance name")
    p.add_argument("--namespace", default="default")
    p.add_argument("--service-account", default="default")
    p.add_argument("--labels", type=_labels, default={}, help="workload labels: app=reviews,version=v1")
    p.add_argument("--workload-name", default="", help="WORKLOAD_NAME metadata (default: --name)")
    p.add_argument("--interception-mode", default="NONE", choices=["NONE", "REDIRECT", "TPROXY"])
    p.add_argument("--discovery-address", default="127.0.0.1:15010", help="control plane HOST:PORT")
    p.add_argument("--xds-root-cert", default="", help="use TLS to the control plane, trusting this root PEM")
    p.add_argument("--xds-server-name", default="istiod.istio-system.svc", help="SAN expected on the control plane")
    p.add_argument("--sds-socket", default="", help="unix socket of the local SDS server (istiod-py agent)")
    p.add_argument("--admin-address", default="127.0.0.1")
    p.add_argument("--admin-port", type=int, default=15000)
    p.add_argument("--delta", action="store_true", help="use Delta xDS instead of state-of-the-world")


@command
def _bootstrap(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "bootstrap",
        help="print an Envoy bootstrap for a sidecar or gateway",
        description="Writes an Envoy bootstrap: node id TYPE~IP~NAME.NS~NS.svc.cluster.local, Istio node "
        "metadata, the ADS cluster to the control plane and the admin address.",
    )
    add_bootstrap_flags(p)
    p.add_argument("--format", choices=["yaml", "json"], default="yaml")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    p.set_defaults(func=run_bootstrap)


def bootstrap_options(args: argparse.Namespace) -> BootstrapOptions:
    return BootstrapOptions(
        proxy_type=args.type,
        ip=args.ip,
        name=args.name,
        namespace=args.namespace,
        service_account=args.service_account,
        labels=args.labels,
        workload_name=args.workload_name,
        interception_mode=args.interception_mode,
        discovery_address=args.discovery_address,
        admin_address=args.admin_address,
        admin_port=args.admin_port,
        delta=args.delta,
        xds_root_cert=args.xds_root_cert,
        xds_server_name=args.xds_server_name,
        sds_socket=args.sds_socket,
    )


def run_bootstrap(args: argparse.Namespace) -> int:
    doc = build_bootstrap(bootstrap_options(args))
    text = json.dumps(doc, indent=2) if args.format == "json" else yaml.safe_dump(doc, sort_keys=False)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


@command
def _validate(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("validate", aliases=["analyze"], help="check a directory or files of Istio YAML")
    p.add_argument("paths", nargs="+")
    p.set_defaults(func=run_validate)


def run_validate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from istiod_py.config.loader import LoadResult, load_directory, load_text
    from istiod_py.config.store import reject_duplicates

    merged = LoadResult()
    for path in args.paths:
        p = Path(path)
        merged.extend(load_directory(p) if p.is_dir() else load_text(p.read_text(encoding="utf-8"), str(p)))
    res = reject_duplicates(merged)
    errors = res.errors
    count = len(res.configs) + len(res.services) + len(res.endpoint_slices)
    from istiod_py.config.analysis import analyze
    from istiod_py.registry.aggregate import Aggregator, SourceSnapshot

    agg = Aggregator()
    agg.set_source("files", SourceSnapshot(tuple(res.configs), tuple(res.services), tuple(res.endpoint_slices)))
    state = agg.build()
    for w in analyze(list(res.configs), state.services, state.mesh.trust_domain):
        print(f"Warning: {w}")
    for e in errors:
        print(f"Error: {e}")
    print(f"{count} resources valid, {len(errors)} errors")
    return 1 if errors else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="istiod-py", description="An Istio-style control plane in Python.")
    sub = parser.add_subparsers(dest="command", required=True)
    with contextlib.suppress(ImportError):
        import istiod_py.agent.command  # noqa: F401  (registers `agent` once the agent exists)
    for add in COMMANDS:
        add(sub)
    args = parser.parse_args(argv)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    # Under `python -m istiod_py.cli` this module is `__main__`, while subcommand
    # modules (the agent) register with `istiod_py.cli`: run that one's main.
    from istiod_py.cli import main as _main

    sys.exit(_main())
