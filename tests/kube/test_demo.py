"""The capture demo (`./demo.sh --mode kube`, istiod_py/demo/kube.py) end to end, on the
session's real API server, scheduler and controller-manager (--kubeconfig: the demo
starts no control plane of its own, everything else is its own: the one-host node,
`istiod-py install --set profile=demo`, Istio's bookinfo injected and captured by
iptables, an 80/20 VirtualService, traffic through the ingress gateway from a Pod
without a sidecar). Run with --serve and stopped by Ctrl-C (SIGINT to its process
group, as a terminal sends it), so one run checks the printed traffic counts, the
printed iptables counters and the teardown on Ctrl-C."""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from istiod_py.kube.client import KubeApiError
from tests.support.kube import ROOT, KubeCluster, wait


def _netns() -> set[str]:
    """Network namespaces, and their /etc/netns dirs (the node writes pods' hosts files there)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    etc = Path("/etc/netns")
    dirs = {f"/etc/netns/{d.name}" for d in etc.iterdir()} if etc.is_dir() else set()
    return {line.split()[0] for line in out.splitlines() if line.strip()} | dirs


def _host_capture_rules() -> list[str]:
    """Host (not pod) iptables rules that capture or the node could have left: none expected."""
    out = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if "ISTIO" in line or "KUBE-SERVICES" in line or "ipyb" in line]


def _gone(kube: KubeCluster, path: str) -> bool:
    try:
        obj = kube.get(path)
    except KubeApiError as e:
        return e.status == 404
    return obj.get("status", {}).get("phase") == "Terminating"


@pytest.mark.timeout(300)
def test_capture_demo_prints_counts_and_tears_down_on_ctrl_c(kube: KubeCluster) -> None:
    netns_before = _netns()
    host_rules_before = _host_capture_rules()
    demo = subprocess.Popen(
        [sys.executable, "-m", "istiod_py.demo", "--mode", "kube", "--kubeconfig", str(kube.kubeconfig),
         "--requests", "200", "--serve"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    assert demo.stdout is not None
    out: list[str] = []
    try:
        deadline = time.monotonic() + 240
        for line in demo.stdout:
            out.append(line)
            if line.startswith("running;") or time.monotonic() > deadline:
                break
        text = "".join(out)
        assert any(line.startswith("running;") for line in out), f"the demo did not get to serving:\n{text}"
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C in its terminal
        rest, _ = demo.communicate(timeout=180)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    text += rest

    # Six bookinfo Pods, each 2/2 with istio-init done.
    ready = re.findall(r"^\s+(\S+-v\d)-\S+\s+2/2 Ready\s+10\.244\.\S+\s+init: istio-init$", text, re.M)
    assert sorted(ready) == ["details-v1", "productpage-v1", "ratings-v1", "reviews-v1", "reviews-v2",
                             "reviews-v3"], text  # fmt: skip
    # The counts it printed: every request answered by v1 or v2, v2 within 4 sigma of 20%.
    counts = {name: int(n) for n, name in re.findall(r"^\s+(\d+)\s+(reviews-v\d|failed.*)$", text, re.M)}
    assert set(counts) <= {"reviews-v1", "reviews-v2"} and sum(counts.values()) == 200, text
    bound = 4 * math.sqrt(200 * 0.2 * 0.8)
    assert abs(counts.get("reviews-v2", 0) - 40) <= bound, f"{counts}: v2 outside 40 +- {bound:.1f}"
    # iptables in productpage's Pod redirected its inbound and (each app call) outbound connections.
    inbound = re.search(r"^\s+(\d+)\s+inbound connections redirected to its Envoy :15006", text, re.M)
    outbound = re.search(r"outbound connections redirected to its Envoy :15001 \(ISTIO_REDIRECT; (\d+) of them", text)
    assert inbound and int(inbound.group(1)) >= 1, text
    assert outbound and int(outbound.group(1)) >= 400, text  # details + reviews per request

    # Ctrl-C: a clean teardown, nothing left behind.
    assert "SIGINT: tearing down" in text and "teardown:" not in text, text
    assert demo.returncode == 130, text
    node = re.search(r"--name (demo-[0-9a-f]+)", text)
    assert node, text
    wait(lambda: _gone(kube, f"/api/v1/nodes/{node.group(1)}"), 10, "the demo's Node deleted")
    for ns in ("bookinfo", "demo-client"):
        assert _gone(kube, f"/api/v1/namespaces/{ns}"), ns
    assert not kube.client.get("/api/v1/namespaces/istio-system/pods").get("items"), "istio-system Pods left"
    assert _netns() <= netns_before, f"network namespaces left: {_netns() - netns_before}"
    assert _host_capture_rules() == host_rules_before  # all capture happened inside the Pods' namespaces
