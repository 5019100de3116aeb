"""`istiod-py kube-inject -f FILE [-o OUT]`: add the sidecar to the pod templates
of manifests offline (as `istioctl kube-inject`); the pods are the ones the
injection webhook stores for the same workloads and settings."""

from __future__ import annotations

import argparse
import sys

from istiod_py.cli.common import EXIT_CODES_HELP, CliError, ExitCode, SubParsers


def register(sub: SubParsers) -> None:
    p = sub.add_parser(
        "kube-inject",
        help="add the sidecar to Kubernetes manifests offline (as the injection webhook would)",
        description=__doc__,
        epilog=EXIT_CODES_HELP,
    )
    p.add_argument("-f", "--filename", required=True, help="manifest file (multi-document YAML), or - for stdin")
    p.add_argument("-o", "--output", default="", help="write here instead of stdout")
    p.add_argument(
        "-n",
        "--namespace",
        default="",
        help="namespace of documents without one (as kubectl apply -n; default: default)",
    )
    p.add_argument("--hub", default=None, help="image registry of the proxy image")
    p.add_argument("--tag", default=None, help="tag of the proxy image")
    p.add_argument("--revision", default=None, help="control plane revision (istiod-<revision>)")
    p.add_argument("--istio-namespace", default=None, help="namespace of the control plane (istio-system)")
    p.set_defaults(func=run_kube_inject)


def run_kube_inject(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from istiod_py.inject.kube_inject import kube_inject
    from istiod_py.inject.template import InjectionError
    from istiod_py.inject.values import InjectionValues

    values = InjectionValues()
    for flag in ("hub", "tag", "revision", "istio_namespace"):
        if getattr(args, flag) is not None:
            values = replace(values, **{flag: getattr(args, flag)})
    try:
        if args.filename == "-":
            text, where = sys.stdin.read(), "stdin: "
        else:
            with open(args.filename, encoding="utf-8") as f:
                text, where = f.read(), f"{args.filename}: "
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(f"cannot read {args.filename}: {e}", ExitCode.INPUT) from None
    import yaml

    try:
        out = kube_inject(text, values, where, args.namespace)
    except yaml.YAMLError as e:
        raise CliError(f"{args.filename}: not YAML: {e}", ExitCode.INPUT) from None
    except InjectionError as e:
        raise CliError(str(e)) from None
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(out)
        except OSError as e:
            raise CliError(f"cannot write {args.output}: {e.strerror}", ExitCode.INPUT) from None
    else:
        sys.stdout.write(out)
    return int(ExitCode.OK)
