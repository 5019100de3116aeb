"""The one-host node's pure parts: image mapping, $(VAR) expansion, volume path
rewriting, kube-proxy rules and the hosts file (istiod_py/node)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from istiod_py.node import images, services
from istiod_py.node.volumes import expand, rewrite_path


def _input(image: str, args: tuple[str, ...] = (), **kw: object) -> images.ContainerInput:
    base: dict[str, object] = {"ports": (), "env": {}, "labels": {}, "pod_name": "p-1"}
    base.update(kw)
    return images.ContainerInput(image=image, args=args, **base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("image", "repo"),
    [
        ("nginx", "docker.io/library/nginx"),
        ("nginx:1.27", "docker.io/library/nginx"),
        ("istio/proxyv2:1.24.0", "docker.io/istio/proxyv2"),
        ("ghcr.io/istiod-py/proxy:latest", "ghcr.io/istiod-py/proxy"),
        ("localhost:5000/app@sha256:abc", "localhost:5000/app"),
        ("docker.io/istio/examples-bookinfo-reviews-v2:1.20.2", "docker.io/istio/examples-bookinfo-reviews-v2"),
    ],
)
def test_repository(image: str, repo: str) -> None:
    assert images.repository(image) == repo


def test_proxy_image_runs_the_cli_with_the_container_args() -> None:
    argv = images.command(_input("ghcr.io/istiod-py/proxy:latest", ("iptables", "-p", "15001")))
    assert argv == [sys.executable, "-m", "istiod_py.cli", "iptables", "-p", "15001"]
    with pytest.raises(images.UnknownImage, match="needs args"):
        images.command(_input("docker.io/istio/proxyv2:1.24.0"))


def test_app_image_defaults_name_from_labels_and_port() -> None:
    argv = images.command(_input(images.APP_REPO + ":1", labels={"app": "web", "version": "v2"}, ports=(8080,)))
    assert argv[-4:] == ["--name", "web-v2", "--listen", "0.0.0.0:8080"]
    argv = images.command(_input(images.APP_REPO, ("--name", "x", "--listen=0.0.0.0:1")))
    assert argv.count("--name") == 1 and "--listen" not in argv


def test_bookinfo_images_are_shaped_like_bookinfo() -> None:
    page = images.command(_input("docker.io/istio/examples-bookinfo-productpage-v1:1.20.2"))
    assert "details:9080=http://details:9080/details/0" in page
    assert "reviews:9080=http://reviews:9080/reviews/0" in page
    assert page[page.index("--chain-path") + 1] == "/productpage"
    assert not any("ratings" in a for a in images.command(_input("istio/examples-bookinfo-reviews-v1:1")))
    v3 = images.command(_input("istio/examples-bookinfo-reviews-v3:1", env={"SERVICES_DOMAIN": "ns.svc"}))
    assert "ratings.ns.svc:9080=http://ratings.ns.svc:9080/ratings/0" in v3
    assert v3[v3.index("--name") + 1] == "reviews-v3"


def test_unknown_image_names_it() -> None:
    with pytest.raises(images.UnknownImage, match=r"image nginx:1\.27: not an image this node can run"):
        images.command(_input("nginx:1.27"))


def test_expand_follows_kubernetes() -> None:
    env = {"POD_NAME": "p", "A": "x"}
    assert expand("$(POD_NAME).$(A)", env) == "p.x"
    assert expand("$(MISSING)", env) == "$(MISSING)"
    assert expand("$$(POD_NAME)", env) == "$(POD_NAME)"


def test_rewrite_path_longest_mount_first() -> None:
    mounts = [("/var/run/secrets/tokens", Path("/s/tok")), ("/var/run/secrets", Path("/s/all"))]
    assert rewrite_path("/var/run/secrets/tokens/istio-token", mounts) == "/s/tok/istio-token"
    assert rewrite_path("/var/run/secrets/istio/root-cert.pem", mounts) == "/s/all/istio/root-cert.pem"
    assert rewrite_path("/var/run/secretsX", mounts) == "/var/run/secretsX"
    assert rewrite_path("0.0.0.0", mounts) == "0.0.0.0"


def _svc(ns: str, name: str, vip: str, ports: list[dict[str, object]]) -> dict[str, object]:
    return {"metadata": {"namespace": ns, "name": name}, "spec": {"clusterIP": vip, "ports": ports}}


def _slice(ns: str, svc: str, port: int, eps: list[tuple[str, bool]], port_name: str = "http") -> dict[str, object]:
    return {
        "metadata": {"namespace": ns, "labels": {"kubernetes.io/service-name": svc}},
        "ports": [{"name": port_name, "port": port}],
        "endpoints": [{"addresses": [a], "conditions": {"ready": r}} for a, r in eps],
    }


def test_service_rules_dnat_to_ready_endpoints_with_equal_odds() -> None:
    svcs = [
        _svc("a", "web", "10.96.0.10", [{"name": "http", "port": 80}]),
        _svc("a", "headless", "None", [{"name": "http", "port": 80}]),
    ]
    slices = [
        _slice("a", "web", 8080, [("10.244.1.10", True), ("10.244.1.11", True), ("10.244.1.12", False)]),
        _slice("a", "headless", 8080, [("10.244.1.13", True)]),
    ]
    rules = services.service_rules(svcs, slices).splitlines()  # type: ignore[arg-type]
    assert rules[:2] == ["*nat", ":KUBE-SERVICES - [0:0]"] and rules[-1] == "COMMIT"
    dnat = [r for r in rules if "DNAT" in r]
    assert dnat == [
        "-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -m statistic --mode random "
        "--probability 0.50000 -j DNAT --to-destination 10.244.1.10:8080",
        "-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.244.1.11:8080",
    ]


def test_hosts_file_short_names_only_in_the_pods_namespace() -> None:
    svcs = [_svc("a", "web", "10.96.0.10", []), _svc("b", "db", "10.96.0.11", []), _svc("a", "h", "None", [])]
    text = services.hosts_file(svcs, "a", "10.244.1.5", "pod-1")  # type: ignore[arg-type]
    lines = text.splitlines()
    assert "10.96.0.10 web.a.svc.cluster.local web.a.svc web.a web" in lines
    assert "10.96.0.11 db.b.svc.cluster.local db.b.svc db.b" in lines
    assert "10.244.1.5 pod-1" in lines and not any(line.startswith("None") for line in lines)
