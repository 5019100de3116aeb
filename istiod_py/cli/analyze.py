"""`istiod-py analyze [-f FILE|DIR ...] [PATH ...]`: the given Istio YAML as one mesh,
as `serve --config-dir` loads it, checked the way `istioctl analyze` checks it.

Messages print as istioctl prints them:
  Error [IST0101] (VirtualService default/reviews FILE) Referenced host not found: "ratings"
Load errors (unknown fields, bad values, a resource defined twice) are IST0106.
Codes: IST0101 IST0104 IST0106 IST0108 IST0109 IST0110 IST0111 IST0112 IST0128 IST0129
IST0130 IST0131 IST0132 IST0134 IST0145 IST0149 IST0151-IST0155 IST0173 IST0174 IST0177,
and istiod_py's ISTPY codes (fields accepted without effect, delegation).

Suppress with -S "CODE=KIND NAME" (glob; `IST0101=VirtualService default/*`), repeatable,
or the resource annotation galley.istio.io/analyze-suppress: "IST0101,IST0130".

With --kubeconfig the cluster's resources are analyzed too, and the files are
applied on top of them (a file's resource replaces the cluster's of the same kind,
namespace and name), as istioctl analyze does with files and a live cluster.

Exit status, as istioctl: 0 no message at or above --failure-threshold; 79 some;
2 bad usage; 3 an input cannot be read; 4 the cluster cannot be listed."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from istiod_py.cli.common import CliError, ExitCode, SubParsers, add_output_flag, emit

# istioctl's exit code when analysis found issues at or above the failure threshold (for CI).
EXIT_ISSUES = 79
LEVEL_CHOICES = ("Error", "Warning", "Info")


def register(sub: SubParsers) -> None:
    p = sub.add_parser(
        "analyze",
        help="check Istio YAML as one mesh, as istioctl analyze (IST codes, suppression, exit 79 on issues)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="file, directory (every *.yaml/*.yml), or - (stdin)")
    p.add_argument("-f", "--file", action="append", default=[], metavar="FILE|DIR", help="as PATH; repeatable")
    p.add_argument("-S", "--suppress", action="append", default=[], metavar="CODE=KIND NAME",
                   help="drop messages of CODE (or *) on matching resources; repeatable")  # fmt: skip
    p.add_argument("--failure-threshold", choices=LEVEL_CHOICES, default="Error",
                   help="exit 79 when a message is at least this severe (default Error)")  # fmt: skip
    p.add_argument("--output-threshold", choices=LEVEL_CHOICES, default="Info",
                   help="print messages at least this severe (default Info)")  # fmt: skip
    p.add_argument("--kubeconfig", default="", metavar="PATH",
                   help="analyze this cluster's resources too ('in-cluster': the pod's service account)")  # fmt: skip
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to list the cluster (default 60)")
    add_output_flag(p)
    p.set_defaults(func=run_analyze)


def cluster_snapshot(kubeconfig: str, timeout: float) -> tuple[Any, Any]:
    """One list of everything the Kubernetes source reads (no watch kept): its
    snapshot and the mesh config from the cluster's `istio` ConfigMap (or None)."""
    import asyncio
    import logging

    from istiod_py.kube.client import KubeClient
    from istiod_py.kube.source import KubeSource

    async def once() -> tuple[Any, Any]:
        client = await asyncio.to_thread(KubeClient.from_kubeconfig, None if kubeconfig == "in-cluster" else kubeconfig)
        source = KubeSource(client, lambda snap: None)
        try:
            snap = await source.start(timeout)
            return snap, source.mesh
        finally:
            await source.stop()
            client.close()

    # The informers log each failed list; the one-line error below says what to do.
    logging.getLogger("istiod_py.kube").setLevel(logging.CRITICAL)
    try:
        return asyncio.run(once())
    except (OSError, RuntimeError, ValueError) as e:
        raise CliError(f"Kubernetes ({kubeconfig}): {e}", ExitCode.UNAVAILABLE) from None


def _overlay(snap: Any, merged: Any) -> Any:
    """The cluster's snapshot with the files' resources taking the place of theirs."""
    import dataclasses

    config_keys = {c.meta.key for c in merged.configs}
    service_keys = {(s.meta.namespace, s.meta.name) for s in merged.services}
    return dataclasses.replace(
        snap,
        configs=tuple(c for c in snap.configs if c.meta.key not in config_keys),
        services=tuple(s for s in snap.services if (s.meta.namespace, s.meta.name) not in service_keys),
    )


def _error_dict(e: Any) -> dict[str, Any]:
    d = {k: v for k, v in dataclasses.asdict(e).items() if v not in ("", None)}
    d["text"] = str(e)
    return d


def run_analyze(args: argparse.Namespace) -> int:
    from istiod_py.cli.validate import read_inputs
    from istiod_py.config.analyzers.context import Context
    from istiod_py.config.analyzers.runner import Suppression, SuppressionError, at_least, run
    from istiod_py.config.loader import LoadResult, load_text
    from istiod_py.config.store import reject_duplicates
    from istiod_py.registry.aggregate import Aggregator, SourceSnapshot

    paths = [*args.paths, *args.file]
    if not paths and not args.kubeconfig:
        raise CliError("give at least one FILE or DIR (-f FILE, or as an argument), or --kubeconfig", ExitCode.USAGE)
    try:
        suppressions = [Suppression.parse(s) for s in args.suppress]
    except SuppressionError as e:
        raise CliError(str(e), ExitCode.USAGE) from None
    inputs = list(read_inputs(paths))
    merged = LoadResult()
    for source, text in inputs:
        merged.extend(load_text(text, source))
    merged = reject_duplicates(merged)
    agg = Aggregator()
    configs = list(merged.configs)
    cluster_errors: list[Any] = []
    counted = len(merged.configs) + len(merged.services) + len(merged.endpoint_slices)
    if args.kubeconfig:
        snap, mesh = cluster_snapshot(args.kubeconfig, args.timeout)
        snap = _overlay(snap, merged)
        if mesh is not None:
            agg.mesh = mesh
        agg.set_source("kubernetes", snap)
        configs = [*snap.configs, *configs]
        cluster_errors = list(snap.errors)
        counted += len(snap.configs) + len(snap.services) + len(snap.endpoint_slices)
    agg.set_source(
        "files", SourceSnapshot(tuple(merged.configs), tuple(merged.services), tuple(merged.endpoint_slices))
    )
    state = agg.build()
    ctx = Context(configs, state.services, state.endpoints, state.mesh.trust_domain,
                  state.mesh.root_namespace, tuple(state.gateway_api_status))  # fmt: skip
    found = run(ctx, [*cluster_errors, *merged.errors], suppressions)
    shown = at_least(found, args.output_threshold)
    failing = at_least(found, args.failure_threshold)
    report: dict[str, Any] = {
        "mode": "one mesh",
        "files": len(inputs),
        "resources": counted,
        "messages": [m.to_json() for m in shown],
        # The loader's own errors, located by file/document/field (also reported as IST0106 above).
        "errors": [_error_dict(e) for e in merged.errors],
    }
    if args.output == "table":
        lines = [str(m) for m in shown]
        if not shown:
            where = f"{len(inputs)} file(s)" + (f" and the cluster ({args.kubeconfig})" if args.kubeconfig else "")
            lines.append(f"\u2714 No validation issues found when analyzing {where}.")
        print("\n".join(lines))
    else:
        emit(report, args.output)
    return EXIT_ISSUES if failing else ExitCode.OK
