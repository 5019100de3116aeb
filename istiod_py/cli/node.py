"""`istiod-py node`: a one-host Kubernetes node for tests and the demo
(istiod_py/node). It registers a Node with the API server, runs the Pods the
scheduler binds to it as Linux network namespaces with processes (the images it
knows: the proxy image as `istiod-py agent`/`iptables`, the sample app and
Istio's bookinfo images as the sample app), reports their status, and plays
kube-proxy for Service ClusterIPs inside each pod. Needs root, `ip` and
`iptables-restore`. Runs until SIGTERM/SIGINT, then deletes every namespace it
made (and, unless --keep-node, the Node)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from istiod_py.cli.common import EXIT_CODES_HELP, CliError, ExitCode, SubParsers


def register(sub: SubParsers) -> None:
    p = sub.add_parser(
        "node",
        help="run Pods bound to a Node on this host, as network namespaces (tests and the demo)",
        description=__doc__,
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--kubeconfig", required=True, help="kubeconfig of the API server ('in-cluster' for the pod's own)")
    p.add_argument("--name", required=True, help="the Node's name")
    p.add_argument(
        "--service-cidr",
        default="10.96.0.0/16",
        help="the API server's --service-cluster-ip-range (scripts/kube/up.sh: KUBE_SERVICE_CIDR); "
        "routed on-link in each pod so ClusterIPs reach capture or the service rules",
    )
    p.add_argument("--state-dir", default="/run/istiod-py-node", help="pods' volumes and logs live under DIR/NAME")
    p.add_argument("--resync", type=float, default=2.0, help="seconds between full syncs (watches wake it sooner)")
    p.add_argument("--no-kube-proxy", action="store_true", help="no DNAT rules: ClusterIPs reach only through capture")
    p.add_argument("--keep-node", action="store_true", help="do not delete the Node object on exit")
    p.add_argument("--envoy-binary", default="envoy", help="the Envoy the proxy containers run (found on PATH)")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=run_node)


def run_node(args: argparse.Namespace) -> int:
    from istiod_py.kube.client import KubeApiError, KubeClient
    from istiod_py.node.kubelet import Node, NodeOptions
    from istiod_py.node.netns import NetnsUnavailable

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    client = KubeClient.from_kubeconfig("" if args.kubeconfig == "in-cluster" else args.kubeconfig)
    opts = NodeOptions(
        name=args.name,
        service_cidr=args.service_cidr,
        state_dir=Path(args.state_dir),
        resync=args.resync,
        delete_node_on_stop=not args.keep_node,
        kube_proxy=not args.no_kube_proxy,
        envoy_binary=args.envoy_binary,
        kubeconfig=str(Path(args.kubeconfig).resolve()) if args.kubeconfig != "in-cluster" else "in-cluster",
    )
    try:
        node = Node(client, opts)
    except NetnsUnavailable as e:
        raise CliError(str(e), ExitCode.UNAVAILABLE) from None
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    try:
        node.start()
        logging.getLogger("istiod_py.node").info(
            "node %s ready (pods on %s, services %s)", args.name, node.lab.subnet, args.service_cidr
        )
        done.wait()
    except KubeApiError as e:
        raise CliError(f"node {args.name}: API server {client.host}: {e}", ExitCode.UNAVAILABLE) from None
    finally:
        node.stop()
        client.close()
    return int(ExitCode.OK)
