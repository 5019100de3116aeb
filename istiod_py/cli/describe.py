"""`istiod-py describe workload|pod NAME` and `istiod-py describe service NAME`:
the VirtualServices, DestinationRules, PeerAuthentications and AuthorizationPolicies
that apply, the routes they produced and the effective mTLS mode.

NAME is name.namespace, namespace/name, or a name in -n NAMESPACE (default
"default"); a service may also be given by its FQDN. Against the running control
plane (--debug-address, its /debug/describez), or offline on files (-f FILE|DIR),
computed by the same translator either way."""

from __future__ import annotations

import argparse

from istiod_py.cli.common import EXIT_CODES_HELP, CliError, ExitCode, SubParsers, add_output_flag, emit


def register(sub: SubParsers) -> None:
    p = sub.add_parser(
        "describe",
        help="what applies to a workload or service: routing, DestinationRule, mTLS mode, authorization",
        description=__doc__,
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("kind", choices=["pod", "workload", "service", "svc"], help="what to describe")
    p.add_argument("name", help="name.namespace, namespace/name, or name (with -n)")
    p.add_argument("-n", "--namespace", default="default", help="namespace of NAME (default: default)")
    p.add_argument("-f", "--file", action="append", default=[], metavar="FILE|DIR",
                   help="describe from these files instead of a running control plane; repeatable")  # fmt: skip
    p.add_argument("--debug-address", default="127.0.0.1:15014", metavar="HOST:PORT",
                   help="the control plane's debug HTTP (default 127.0.0.1:15014); unused with -f")  # fmt: skip
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the control plane (default 5)")
    add_output_flag(p)
    p.set_defaults(func=run_describe)


def run_describe(args: argparse.Namespace) -> int:
    from istiod_py.debug import describe

    kind = "service" if args.kind in ("service", "svc") else "workload"
    if args.file:
        report = _offline(args, kind)
    else:
        from istiod_py.debug import client

        path = f"/debug/describez?kind={kind}&name={client.quote(args.name)}&namespace={client.quote(args.namespace)}"
        try:
            report = client.get_json(args.debug_address, path, args.timeout)
        except client.ClientError as e:
            code = ExitCode.FAILED if "HTTP 404" in str(e) else ExitCode.UNAVAILABLE
            raise CliError(str(e), code) from None
    if args.output == "table":
        print(describe.text(report), end="")
    else:
        emit(report, args.output)
    return ExitCode.OK


def _offline(args: argparse.Namespace, kind: str) -> dict[str, object]:
    from istiod_py.cli.validate import read_inputs
    from istiod_py.config.loader import LoadResult, load_text
    from istiod_py.config.store import reject_duplicates
    from istiod_py.debug import describe
    from istiod_py.registry.aggregate import Aggregator, SourceSnapshot
    from istiod_py.translate.generate import Translator

    merged = LoadResult()
    for source, text in read_inputs(args.file):
        merged.extend(load_text(text, source))
    merged = reject_duplicates(merged)
    if merged.errors:
        raise CliError(f"{merged.errors[0]} (and {len(merged.errors) - 1} more); run `istiod-py analyze` first")
    agg = Aggregator()
    agg.set_source(
        "files", SourceSnapshot(tuple(merged.configs), tuple(merged.services), tuple(merged.endpoint_slices))
    )
    state = agg.build()
    fn = describe.describe_service if kind == "service" else describe.describe_workload
    try:
        return fn(Translator(), state, args.name, args.namespace)
    except describe.DescribeError as e:
        raise CliError(str(e)) from None
