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

Exit status, as istioctl: 0 no message at or above --failure-threshold; 79 some;
2 bad usage; 3 an input cannot be read."""

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
    add_output_flag(p)
    p.set_defaults(func=run_analyze)


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
    if not paths:
        raise CliError("give at least one FILE or DIR (-f FILE, or as an argument)", ExitCode.USAGE)
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
    agg.set_source(
        "files", SourceSnapshot(tuple(merged.configs), tuple(merged.services), tuple(merged.endpoint_slices))
    )
    state = agg.build()
    ctx = Context(list(merged.configs), state.services, state.endpoints, state.mesh.trust_domain,
                  state.mesh.root_namespace, tuple(state.gateway_api_status))  # fmt: skip
    found = run(ctx, merged.errors, suppressions)
    shown = at_least(found, args.output_threshold)
    failing = at_least(found, args.failure_threshold)
    report: dict[str, Any] = {
        "mode": "one mesh",
        "files": len(inputs),
        "resources": len(merged.configs) + len(merged.services) + len(merged.endpoint_slices),
        "messages": [m.to_json() for m in shown],
        # The loader's own errors, located by file/document/field (also reported as IST0106 above).
        "errors": [_error_dict(e) for e in merged.errors],
    }
    if args.output == "table":
        lines = [str(m) for m in shown]
        if not shown:
            lines.append(f"\u2714 No validation issues found when analyzing {len(inputs)} file(s).")
        print("\n".join(lines))
    else:
        emit(report, args.output)
    return EXIT_ISSUES if failing else ExitCode.OK
