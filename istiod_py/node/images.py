"""Which container images the one-host node can run, and as what process.

No container runtime runs here: an image the node knows maps to a command on
this host, run inside the pod's network namespace.

  ghcr.io/istiod-py/proxy (any tag), docker.io/istio/proxyv2
        the injected containers: `istiod-py ARGS` (`iptables ...` for istio-init,
        `agent ...` for istio-proxy); the container's args are the CLI's.
  ghcr.io/istiod-py/pilot (any tag), docker.io/istio/pilot
        the control plane: `istiod-py ARGS` (`serve ...`) in the node's own network
        namespace (as a hostNetwork pod: it must reach the API server), its pod IP the
        node's bridge address; `--kubeconfig in-cluster` becomes the node's kubeconfig
        and `--listen-address` the bridge address, so nothing listens beyond it.
  ghcr.io/istiod-py/app
        the sample app (istiod_py/demo/app.py) with the container's args; without
        --name it is the pod's `app` label plus `-` its `version` label, without
        --listen it listens on 0.0.0.0 and the first containerPort (else 8080).
  docker.io/istio/examples-bookinfo-{productpage,details,reviews,ratings}-vN
        the sample app shaped like bookinfo on port 9080: productpage calls details
        and reviews for /productpage, reviews v2/v3 call ratings for /reviews; each
        answers with its name (e.g. reviews-v2) and version.

Any other image is refused with ErrImagePull (UnknownImage names the image).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PROXY_REPOS = ("ghcr.io/istiod-py/proxy", "docker.io/istio/proxyv2", "ghcr.io/istiod-py/proxyv2")
PILOT_REPOS = ("ghcr.io/istiod-py/pilot", "docker.io/istio/pilot")
APP_REPO = "ghcr.io/istiod-py/app"
BOOKINFO = re.compile(r"^docker\.io/istio/examples-bookinfo-(productpage|details|reviews|ratings)-(v\d+)$")
BOOKINFO_PORT = 9080
# Who each bookinfo service calls, and on which path (as Istio's sample apps do).
BOOKINFO_CALLS: dict[str, tuple[tuple[str, str], ...]] = {
    "productpage": (("details", "/details/0"), ("reviews", "/reviews/0")),
    "reviews": (("ratings", "/ratings/0"),),
}
BOOKINFO_CHAIN = {"productpage": "/productpage", "reviews": "/reviews"}


class UnknownImage(ValueError):
    """An image the node cannot run (becomes ErrImagePull in the container status)."""


def repository(image: str) -> str:
    """`nginx:1.2` -> `docker.io/library/nginx`; tag and digest dropped."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.split(":", 1)[0]
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    return name


@dataclass(frozen=True)
class ContainerInput:
    """What the image mapping needs from a pod's container (args already $(VAR)-expanded)."""

    image: str
    args: tuple[str, ...]
    ports: tuple[int, ...]
    env: Mapping[str, str]
    labels: Mapping[str, str]
    pod_name: str
    pod_ip: str = ""
    kubeconfig: str = ""  # the node's, for the control plane's `--kubeconfig in-cluster`


def _cli() -> list[str]:
    return [sys.executable, "-m", "istiod_py.cli"]


def _app() -> list[str]:
    return [sys.executable, "-m", "istiod_py.demo.app"]


def is_pilot(image: str) -> bool:
    return repository(image) in PILOT_REPOS


def pilot_args(args: Sequence[str], kubeconfig: str, listen: str) -> list[str]:
    out = list(args)
    for i, a in enumerate(out[:-1]):
        if a == "--kubeconfig" and out[i + 1] == "in-cluster" and kubeconfig:
            out[i + 1] = kubeconfig
        elif a == "--listen-address" and listen:
            out[i + 1] = listen
    return out


def _has(args: Sequence[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in args)


def command(c: ContainerInput) -> list[str]:
    """The argv that runs `c` on this host; raises UnknownImage."""
    repo = repository(c.image)
    if repo in PROXY_REPOS:
        if not c.args:
            raise UnknownImage(f"image {c.image}: the proxy image needs args (`agent ...` or `iptables ...`)")
        return _cli() + list(c.args)
    if repo in PILOT_REPOS:
        if not c.args:
            raise UnknownImage(f"image {c.image}: the control plane image needs args (`serve ...`)")
        return _cli() + pilot_args(c.args, c.kubeconfig, c.pod_ip)
    if repo == APP_REPO:
        args = list(c.args)
        if not _has(args, "--name"):
            app = c.labels.get("app") or c.pod_name
            args += ["--name", f"{app}-{c.labels['version']}" if c.labels.get("version") else app]
        if not _has(args, "--listen"):
            args += ["--listen", f"0.0.0.0:{c.ports[0] if c.ports else 8080}"]
        return _app() + args
    m = BOOKINFO.match(repo)
    if m:
        return _app() + bookinfo_args(m.group(1), m.group(2), c.env)
    raise UnknownImage(
        f"image {c.image}: not an image this node can run (known: {', '.join(PROXY_REPOS + PILOT_REPOS)}, "
        f"{APP_REPO}, "
        "docker.io/istio/examples-bookinfo-{productpage,details,reviews,ratings}-vN)"
    )


def bookinfo_args(service: str, version: str, env: Mapping[str, str]) -> list[str]:
    # Bookinfo's apps append SERVICES_DOMAIN to the names they call.
    domain = env.get("SERVICES_DOMAIN", "")
    args = ["--name", f"{service}-{version}", "--listen", f"0.0.0.0:{BOOKINFO_PORT}"]
    calls = BOOKINFO_CALLS.get(service, ())
    if service == "reviews" and version == "v1":
        calls = ()  # reviews-v1 shows no stars: it does not call ratings
    for upstream, path in calls:
        host = f"{upstream}.{domain}" if domain else upstream
        args += ["--upstream", f"{host}:{BOOKINFO_PORT}=http://{host}:{BOOKINFO_PORT}{path}"]
    if service in BOOKINFO_CHAIN:
        args += ["--chain-path", BOOKINFO_CHAIN[service]]
    return args


def describe(container: Mapping[str, Any]) -> str:
    return f"container {container.get('name')} (image {container.get('image')})"
