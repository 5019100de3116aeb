"""Installation commands, as istioctl's: `manifest generate` prints the objects
for a profile and `--set` values; `profile dump` prints the values; `install`
and `uninstall` apply or delete them through the API server (--kubeconfig)."""

from __future__ import annotations

import argparse
import sys

from istiod_py.cli.common import EXIT_CODES_HELP, CliError, ExitCode, SubParsers


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-s",
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="profile=default|demo|minimal|empty, or a value path (pilot.replicas=2, meshConfig.accessLogFile=...)",
    )


def register(sub: SubParsers) -> None:
    m = sub.add_parser("manifest", help="installation manifests", epilog=EXIT_CODES_HELP)
    msub = m.add_subparsers(dest="manifest_command", required=True)
    g = msub.add_parser("generate", help="print the Kubernetes objects of an installation", epilog=EXIT_CODES_HELP)
    _add_set(g)
    g.set_defaults(func=run_generate)

    pr = sub.add_parser("profile", help="installation profiles", epilog=EXIT_CODES_HELP)
    psub = pr.add_subparsers(dest="profile_command", required=True)
    d = psub.add_parser("dump", help="print a profile's values (with --set applied)", epilog=EXIT_CODES_HELP)
    d.add_argument("profile", nargs="?", default=None, help="profile name (default: default)")
    _add_set(d)
    d.set_defaults(func=run_dump)
    ls = psub.add_parser("list", help="list the profiles", epilog=EXIT_CODES_HELP)
    ls.set_defaults(func=run_list)

    for name, helptext in (("install", "apply an installation to a cluster"), ("uninstall", "remove it")):
        i = sub.add_parser(name, help=helptext, description=__doc__, epilog=EXIT_CODES_HELP)
        _add_set(i)
        i.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
        i.add_argument("--context", default=None, help="kubeconfig context")
        if name == "uninstall":
            i.add_argument("--purge", action="store_true", help="also delete the CRDs (and every Istio resource)")
        else:
            i.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for CRDs (default 60)")
        i.set_defaults(func=run_install if name == "install" else run_uninstall)


def _values(sets: list[str]) -> dict[str, object]:
    from istiod_py.install.profiles import ValuesError, resolve

    try:
        return resolve(sets)
    except ValuesError as e:
        raise CliError(str(e), ExitCode.USAGE) from None


def run_generate(args: argparse.Namespace) -> int:
    from istiod_py.install.manifests import render, to_yaml

    sys.stdout.write(to_yaml(render(_values(args.set))))
    return int(ExitCode.OK)


def run_dump(args: argparse.Namespace) -> int:
    import yaml

    sets = ([f"profile={args.profile}"] if args.profile else []) + args.set
    sys.stdout.write(yaml.safe_dump(_values(sets), sort_keys=False))
    return int(ExitCode.OK)


def run_list(args: argparse.Namespace) -> int:
    from istiod_py.install.profiles import PROFILES

    sys.stdout.write("".join(f"{p}\n" for p in PROFILES))
    return int(ExitCode.OK)


def _connect(args: argparse.Namespace) -> object:
    from istiod_py.install.apply import client

    try:
        return client(args.kubeconfig, args.context)
    except Exception as e:  # the kubernetes client raises ConfigException, OSError, TypeError...
        raise CliError(f"kubeconfig {args.kubeconfig or '(default)'}: {e}", ExitCode.INPUT) from None


def _run(args: argparse.Namespace, action: str) -> int:
    import urllib3.exceptions

    from istiod_py.install import apply
    from istiod_py.install.manifests import render

    objs = render(_values(args.set))
    dyn = _connect(args)

    def log(line: str) -> None:
        print(line, file=sys.stderr)

    try:
        if action == "install":
            apply.install(dyn, objs, log, args.timeout)
        else:
            apply.uninstall(dyn, objs, args.purge, log)
    except apply.InstallError as e:
        raise CliError(str(e)) from None
    except urllib3.exceptions.HTTPError as e:
        raise CliError(f"API server unreachable: {e}", ExitCode.UNAVAILABLE) from None
    print(f"{action}: {len(objs)} objects" if action == "install" else "uninstalled", file=sys.stderr)
    return int(ExitCode.OK)


def run_install(args: argparse.Namespace) -> int:
    return _run(args, "install")


def run_uninstall(args: argparse.Namespace) -> int:
    return _run(args, "uninstall")
