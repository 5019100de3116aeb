"""`./demo.sh [--mode auto|kube|loopback] [ARGS]`: which demo runs.

  kube      the capture demo (istiod_py/demo/kube.py): a real Kubernetes control plane,
            the one-host node, `istiod-py install --set profile=demo`, Istio's bookinfo
            injected and captured by iptables. Needs root on Linux with `ip`,
            `iptables-restore` and `setpriv`, and builds the Kubernetes binaries if they
            are not cached yet (once per machine, 8-9 min on 2 cores).
  loopback  the sample mesh on 127.0.0.x with real Envoy sidecars, no capture
            (istiod_py/demo/run.py); runs anywhere.
  auto      (default) kube when it can run here (root on Linux with the tools), as
            issue 12 asks: the capture demo on a host that can capture. On a fresh
            machine that first builds the Kubernetes binaries (said before it starts,
            8-9 min once); if the build fails (no Go, no module proxy) it falls back to
            loopback saying why. Otherwise loopback, saying in one line why. A
            loopback-only flag (--delta, --xds-port, --debug-port) also picks loopback;
            `--mode loopback` is the quick demo anywhere.

The other ARGS go to the chosen demo (see --mode kube --help, --mode loopback --help)."""

from __future__ import annotations

import os
import shutil
import sys


def capture_unavailable() -> str:
    """Why the capture demo cannot run here ("" if it can, binaries aside)."""
    if not sys.platform.startswith("linux"):
        return f"not Linux ({sys.platform})"
    if os.geteuid() != 0:
        return "not root (the node creates network namespaces, veths, a bridge and iptables rules)"
    for tool in ("ip", "iptables", "iptables-restore", "setpriv"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (scripts/install_netns_tools.sh)"
    return ""


LOOPBACK_ONLY = ("--delta", "--xds-port", "--debug-port")


def choose(mode: str, args: list[str] | None = None) -> tuple[str, str]:
    """(mode to run, one line on why when auto fell back to loopback)."""
    if mode != "auto":
        return mode, ""
    flag = next((a for a in args or [] if a.split("=", 1)[0] in LOOPBACK_ONLY), "")
    if flag:
        return "loopback", f"{flag.split('=', 1)[0]} is a loopback demo flag; running the loopback demo"
    why = capture_unavailable()
    if why:
        return "loopback", f"capture demo unavailable: {why}; running the loopback demo"
    return "kube", ""


def build_for_auto() -> str:
    """auto mode on a capable host: builds the Kubernetes binaries if they are not
    cached yet, saying so first; "" when they are ready, else one line on why not."""
    from istiod_py.demo.cluster import ClusterError, build, cached_bin_dir

    if cached_bin_dir() is not None:
        return ""
    print(
        "capture demo: building the Kubernetes binaries once (scripts/kube/build.sh, 8-9 min on 2 cores, "
        "cached in ~/.cache/istiod_py/kube); `./demo.sh --mode loopback` is the quick demo",
        flush=True,
    )
    try:
        build(show_progress=True)
    except ClusterError as e:
        first = (str(e).strip().splitlines() or ["no output"])[0]
        return f"capture demo: building the Kubernetes binaries failed ({first}); running the loopback demo"
    return ""


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    mode = "auto"
    for i, a in enumerate(args):
        if a == "--mode" and i + 1 < len(args):
            mode = args[i + 1]
            del args[i : i + 2]
            break
        if a.startswith("--mode="):
            mode = a.split("=", 1)[1]
            del args[i]
            break
    if mode not in ("auto", "kube", "loopback"):
        print(f"demo: --mode {mode!r}: must be auto, kube or loopback", file=sys.stderr)
        return 2
    if mode == "auto" and any(a in ("-h", "--help") for a in args):
        print(__doc__)
        return 0
    chosen, why = choose(mode, args)
    if chosen == "kube" and mode == "auto":
        why = build_for_auto()
        if why:
            chosen = "loopback"
    if why:
        print(why, flush=True)
    if chosen == "kube":
        why = capture_unavailable()
        if why:
            print(f"demo: --mode kube: {why}", file=sys.stderr)
            return 2
        from istiod_py.demo import kube

        return kube.run(args)
    from istiod_py.demo import run

    return run.main(args)


if __name__ == "__main__":
    sys.exit(main())
