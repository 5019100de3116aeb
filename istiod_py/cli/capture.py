"""`istiod-py iptables`: the sidecar's traffic capture rules, as Istio's
`istio-iptables` init step writes them (istiod_py/inject/iptables.py): with
`--dry-run` the iptables-restore input is printed; otherwise it is applied with
`iptables-restore --noflush` (inside `--netns NAME` when given); running it again
with the same flags changes nothing, with other flags it replaces the old rules
(as istio-iptables reconciles); `--clean` removes them (istio-iptables `clean`). Flags are named
as istio-iptables'; `--annotations` takes a pod's `traffic.sidecar.istio.io/*`
annotations, which override them as the injector would."""

from __future__ import annotations

import argparse
import subprocess
import sys

from istiod_py.cli.common import EXIT_CODES_HELP, CliError, ExitCode, SubParsers
from istiod_py.inject import iptables


def register(sub: SubParsers) -> None:
    p = sub.add_parser(
        "iptables",
        help="write (or print with --dry-run) the sidecar's traffic capture rules, as istio-iptables",
        description=__doc__,
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    iptables.add_arguments(p)
    p.set_defaults(func=run_iptables)


def run_iptables(args: argparse.Namespace) -> int:
    try:
        cfg = iptables.config_from_args(args)
    except iptables.CaptureConfigError as e:
        raise CliError(str(e), ExitCode.USAGE) from None
    except OSError as e:
        raise CliError(f"--annotations: {e}", ExitCode.INPUT) from None
    if args.dry_run:
        sys.stdout.write(iptables.dry_run_text(cfg, args.netns))
        return int(ExitCode.OK)
    try:
        if args.clean:
            done = iptables.clean(cfg, args.netns)
            print(f"iptables: cleaned ({len(done)} changes)", file=sys.stderr)
        else:
            outcome = iptables.apply(cfg, args.netns)
            print(f"iptables: {outcome}", file=sys.stderr)
    except FileNotFoundError as e:
        msg = f"{e.filename}: not installed (Debian: apt-get install iptables iproute2)"
        raise CliError(msg, ExitCode.UNAVAILABLE) from None
    except (RuntimeError, subprocess.CalledProcessError) as e:
        detail = (getattr(e, "stderr", "") or "").strip()
        raise CliError(f"{e} {detail}".strip()) from None
    return int(ExitCode.OK)
