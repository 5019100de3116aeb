"""A workload's proxy: `istiod-py bootstrap` (print an Envoy bootstrap) and
`istiod-py agent` (key + CSR + local SDS, then Envoy). Both take the same
workload identity and proxy flags."""

from __future__ import annotations

import argparse
import json
import os
import sys

import yaml

from istiod_py.agent.bootstrap import BootstrapOptions, build_bootstrap
from istiod_py.cli.common import EXIT_CODES_HELP, CliError, ExitCode, SubParsers


def _labels(text: str) -> dict[str, str]:
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        k, sep, v = part.partition("=")
        if not sep or not k:
            raise argparse.ArgumentTypeError(f"label {part!r} is not KEY=VALUE")
        out[k] = v
    return out


def add_bootstrap_flags(p: argparse.ArgumentParser) -> None:
    """Workload identity and proxy flags shared by `bootstrap` and `agent`."""
    p.add_argument("--type", choices=["sidecar", "router"], default="sidecar", help="sidecar, or router for a gateway")
    p.add_argument("--ip", default="127.0.0.1", help="the workload's address (its identity in the mesh)")
    p.add_argument("--name", required=True, help="pod/workload instance name")
    p.add_argument("--namespace", default="default")
    p.add_argument("--service-account", default="default")
    p.add_argument("--labels", type=_labels, default={}, help="workload labels: app=reviews,version=v1")
    p.add_argument(
        "--labels-file",
        default="",
        help='labels from a Kubernetes downward-API file (key="value" lines; the injected '
        "sidecar's /etc/istio/pod/labels), over --labels",
    )
    p.add_argument("--workload-name", default="", help="WORKLOAD_NAME metadata (default: --name)")
    p.add_argument("--interception-mode", default="NONE", choices=["NONE", "REDIRECT", "TPROXY"])
    p.add_argument("--discovery-address", default="127.0.0.1:15010", help="control plane HOST:PORT")
    p.add_argument("--xds-root-cert", default="", help="use TLS to the control plane, trusting this root PEM")
    p.add_argument("--xds-server-name", default="istiod.istio-system.svc", help="SAN expected on the control plane")
    p.add_argument("--sds-socket", default="", help="unix socket of the local SDS server (istiod-py agent)")
    p.add_argument("--admin-address", default="127.0.0.1")
    p.add_argument("--admin-port", type=int, default=15000)
    p.add_argument("--delta", action="store_true", help="use Delta xDS instead of state-of-the-world")


def read_labels_file(path: str) -> dict[str, str]:
    """A downward-API labels file: one `key="value"` per line, values quoted as Go quotes them."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise CliError(f"--labels-file {path}: {e.strerror}", ExitCode.INPUT) from None
    out = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        key, sep, raw = line.partition("=")
        try:
            value = json.loads(raw) if raw.startswith('"') else raw
        except ValueError:
            value = None
        if not sep or not key or not isinstance(value, str):
            raise CliError(f'--labels-file {path}:{n}: expected key="value", got {line!r}', ExitCode.INPUT)
        out[key] = value
    return out


def bootstrap_options(args: argparse.Namespace) -> BootstrapOptions:
    labels = dict(args.labels)
    if getattr(args, "labels_file", ""):
        labels.update(read_labels_file(args.labels_file))
    return BootstrapOptions(
        proxy_type=args.type,
        ip=args.ip,
        name=args.name,
        namespace=args.namespace,
        service_account=args.service_account,
        labels=labels,
        workload_name=args.workload_name,
        interception_mode=args.interception_mode,
        discovery_address=args.discovery_address,
        admin_address=args.admin_address,
        admin_port=args.admin_port,
        delta=args.delta,
        xds_root_cert=args.xds_root_cert,
        xds_server_name=args.xds_server_name,
        sds_socket=args.sds_socket,
        stats_port=getattr(args, "stats_port", 0),
    )


def register(sub: SubParsers) -> None:
    p = sub.add_parser(
        "bootstrap",
        help="print an Envoy bootstrap for a sidecar or gateway",
        description="Writes an Envoy bootstrap: node id TYPE~IP~NAME.NS~NS.svc.cluster.local, Istio node "
        "metadata, the ADS cluster to the control plane and the admin address.",
        epilog=EXIT_CODES_HELP,
    )
    add_bootstrap_flags(p)
    p.add_argument("--format", choices=["yaml", "json"], default="yaml")
    # `-o` is a file here (it predates the shared `-o json|yaml|table` flag; scripts use it).
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    p.set_defaults(func=run_bootstrap)

    from istiod_py.agent.command import __doc__ as agent_doc

    a = sub.add_parser(
        "agent",
        help="run a workload's agent: key + CSR + local SDS, then Envoy",
        description=agent_doc,
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_bootstrap_flags(a)
    a.add_argument("--ca-address", default="127.0.0.1:15012", help="CA (and secure xDS) HOST:PORT")
    a.add_argument("--root-cert", required=True, help="the mesh root (the control plane writes <ca-dir>/root-cert.pem)")
    a.add_argument("--token", default="", help="bearer token for the CA")
    a.add_argument("--token-file", default="", help="file holding the bearer token (re-read at each renewal)")
    a.add_argument("--trust-domain", default="cluster.local")
    a.add_argument("--cert-ttl", type=float, default=24 * 3600, help="requested certificate lifetime in seconds")
    a.add_argument("--rotation-fraction", type=float, default=0.5, help="renew after this fraction of the lifetime")
    a.add_argument("--workdir", default="", help="where the socket and bootstrap go (default: a temp dir)")
    a.add_argument("--xds-tls", action="store_true", help="connect xDS over TLS to --ca-address, verified by the root")
    a.add_argument("--no-envoy", action="store_true", help="run only the certificate + SDS part")
    a.add_argument("--envoy-binary", default="envoy")
    a.add_argument("--envoy-log-level", default="warning")
    a.add_argument("--status-address", default="127.0.0.1", help="address of the status/readiness ports")
    a.add_argument(
        "--status-port",
        type=int,
        default=0,
        help="the agent's server (15020; 0 off): /healthz/ready, /app-health/..., merged /stats/prometheus, "
        "/quitquitquit",
    )
    a.add_argument(
        "--readiness-port", type=int, default=0, help="Envoy's readiness listener, /healthz/ready (15021; 0 off)"
    )
    a.add_argument("--stats-port", type=int, default=0, help="Envoy's own /stats/prometheus listener (15090; 0 off)")
    a.add_argument(
        "--app-probers",
        default=os.environ.get("ISTIO_KUBE_APP_PROBERS", ""),
        help="the app's rewritten probes, JSON path -> probe (default: $ISTIO_KUBE_APP_PROBERS, as injected)",
    )
    a.add_argument(
        "--prometheus-annotations",
        default=os.environ.get("ISTIO_PROMETHEUS_ANNOTATIONS", ""),
        help='the app\'s prometheus.io/* scrape settings, JSON {"scrape","path","port"}, merged into '
        "/stats/prometheus (default: $ISTIO_PROMETHEUS_ANNOTATIONS, as injected)",
    )
    a.add_argument(
        "--app-metrics-url", default="", help="the app's metrics URL to merge (overrides --prometheus-annotations)"
    )
    a.set_defaults(func=run_agent)


def run_bootstrap(args: argparse.Namespace) -> int:
    try:
        doc = build_bootstrap(bootstrap_options(args))
    except ValueError as e:  # e.g. --discovery-address not HOST:PORT
        raise CliError(str(e), ExitCode.USAGE) from e
    text = json.dumps(doc, indent=2) if args.format == "json" else yaml.safe_dump(doc, sort_keys=False)
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:
            raise CliError(f"cannot write {args.output}: {e.strerror}", ExitCode.INPUT) from e
    else:
        sys.stdout.write(text)
    return ExitCode.OK


def run_agent(args: argparse.Namespace) -> int:
    from istiod_py.agent.command import AgentOptions, run_agent
    from istiod_py.agent.metrics_merge import app_metrics_url

    try:  # a bad value fails here, in one line, before anything starts
        app_metrics_url(args.prometheus_annotations, args.status_port)
    except ValueError as e:
        raise CliError(str(e), ExitCode.USAGE) from None

    return run_agent(
        AgentOptions(
            bootstrap=bootstrap_options(args),
            ca_address=args.ca_address,
            root_cert=args.root_cert,
            token=args.token,
            token_file=args.token_file,
            trust_domain=args.trust_domain,
            cert_ttl=args.cert_ttl,
            rotation_fraction=args.rotation_fraction,
            workdir=args.workdir,
            xds_tls=args.xds_tls,
            envoy=not args.no_envoy,
            envoy_binary=args.envoy_binary,
            envoy_log_level=args.envoy_log_level,
            status_address=args.status_address,
            status_port=args.status_port,
            readiness_port=args.readiness_port,
            app_probers=args.app_probers,
            prometheus_annotations=args.prometheus_annotations,
            app_metrics_url=args.app_metrics_url,
        )
    )
