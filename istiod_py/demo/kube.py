"""The capture demo: the seeds' journey on this host with real transparent capture.

    python -m istiod_py.demo --mode kube            # or ./demo.sh on a root Linux host

It starts a real Kubernetes control plane on loopback (istiod_py/demo/cluster.py:
etcd, kube-apiserver, kube-controller-manager, kube-scheduler) and the one-host node
(`istiod-py node`: Pods as network namespaces), then does what a user does with Istio:

    istiod-py install --set profile=demo
    kubectl create namespace bookinfo; kubectl label namespace bookinfo istio-injection=enabled
    kubectl apply -f deploy/samples/bookinfo-platform/bookinfo.yaml      (Istio's bookinfo)
    kubectl apply -f bookinfo-gateway.yaml destination-rule-all.yaml virtual-service-reviews-80-20.yaml

waits for every bookinfo Pod 2/2 Ready (app + injected istio-proxy, istio-init having
written the iptables rules), sends requests to the ingress gateway's ClusterIP from a
Pod without a sidecar, prints which reviews version answered and how many connections
the iptables rules in productpage's Pod redirected to its Envoy, then removes
everything (namespaces, the install, the node's network namespaces and rules, the
processes) on exit and on Ctrl-C.

With --kubeconfig it uses that (running) cluster instead of starting one (tests)."""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from istiod_py.demo.cluster import ROOT, ClusterError, LocalCluster, build, cached_bin_dir
from istiod_py.kube import apply as kapply
from istiod_py.kube.client import JsonObj, KubeApiError, KubeClient
from istiod_py.node.netns import pod_netns

BOOKINFO = ROOT / "deploy" / "samples" / "bookinfo-platform" / "bookinfo.yaml"
ROUTING = ROOT / "deploy" / "samples" / "bookinfo"
ROUTING_FILES = ("bookinfo-gateway.yaml", "destination-rule-all.yaml", "virtual-service-reviews-80-20.yaml")
APP_IMAGE = "ghcr.io/istiod-py/app:latest"
CLIENT_NS = "demo-client"
T = TypeVar("T")

# Runs inside the client Pod's network namespace: N GETs, the reviews version each
# productpage showed (the bookinfo apps answer JSON naming themselves and nesting
# their upstreams' answers), or why there is none.
BATCH = r"""
import http.client, json, sys
host, port, path, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
out = []
for _ in range(n):
    c = http.client.HTTPConnection(host, port, timeout=5)
    try:
        c.request("GET", path)
        r = c.getresponse()
        page = json.loads(r.read().decode(errors="replace")) if r.status == 200 else {}
        ups = {u.get("upstream"): u for u in page.get("upstreams") or []}
        rev = ups.get("reviews:9080") or {}
        name = (rev.get("response") or {}).get("name")
        ok = r.status == 200 and (ups.get("details:9080") or {}).get("status") == 200 and name
        out.append(name if ok else f"failed ({r.status})")
    except Exception as e:
        out.append(f"failed ({type(e).__name__})")
    finally:
        c.close()
print(json.dumps(out))
"""


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and shows the relevant log."""


class Interrupted(Exception):
    """SIGINT, SIGTERM or SIGHUP: unwind so the `finally` tears everything down."""


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum: int, _frame: object) -> None:
    for sig in STOP_SIGNALS:  # a second Ctrl-C must not cut the teardown short
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signal.Signals(signum).name)


def wait_for(cond: Callable[[], T | None], timeout: float, what: str, log: Callable[[], str] = str) -> T:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            got = cond()
            if got:
                return got
            last = got
        except (KubeApiError, OSError, KeyError, ValueError, subprocess.SubprocessError) as e:
            last = e
        time.sleep(0.25)
    raise DemoError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})\n{log()}")


def _cli(*args: str, timeout: float = 180) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "istiod_py.cli", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise DemoError(f"istiod-py {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc.stdout


def _pods(client: KubeClient, ns: str, selector: str = "") -> list[JsonObj]:
    query = [("labelSelector", selector)] if selector else []
    return list(client.get(f"/api/v1/namespaces/{ns}/pods", query).get("items") or [])


def _ready(pod: JsonObj) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def _ready_pods(client: KubeClient, ns: str, selector: str, n: int) -> list[JsonObj]:
    got = [p for p in _pods(client, ns, selector) if _ready(p) and not p["metadata"].get("deletionTimestamp")]
    return got if len(got) >= n else []


class KubeDemo:
    def __init__(self, workdir: Path, kubeconfig: str, namespace: str, requests: int) -> None:
        self.workdir = workdir
        self.namespace = namespace
        self.requests = requests
        self.cluster: LocalCluster | None = None
        self.kubeconfig = kubeconfig
        self._client: KubeClient | None = None
        self.node_name = f"demo-{secrets.token_hex(3)}"
        self.node: subprocess.Popen[bytes] | None = None
        self.node_log = workdir / "node.log"
        self.installed = False
        self.t0 = time.monotonic()

    def say(self, msg: str) -> None:
        print(f"[{time.monotonic() - self.t0:5.1f}s] {msg}", flush=True)

    @property
    def client(self) -> KubeClient:
        if self._client is None:
            self._client = KubeClient.from_kubeconfig(self.kubeconfig)
        return self._client

    def node_tail(self, lines: int = 40) -> str:
        if not self.node_log.exists():
            return ""
        return "--- node log ---\n" + "\n".join(self.node_log.read_text(errors="replace").splitlines()[-lines:])

    # ------------------------------------------------------------ bring-up

    def start_cluster(self) -> None:
        if self.kubeconfig:
            self.say(f"using the running cluster of {self.kubeconfig}")
            return
        try:
            if cached_bin_dir() is None:
                self.say("building the Kubernetes binaries once (scripts/kube/build.sh: 8-9 min on 2 cores, "
                         "cached in ~/.cache/istiod_py/kube for every later run)")  # fmt: skip
                build(show_progress=True)
            self.say("starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler (scripts/kube/up.sh)")
            self.cluster = LocalCluster(self.workdir / "kube")
            self.cluster.start()
        except ClusterError as e:
            raise DemoError(str(e)) from None
        self.kubeconfig = str(self.cluster.kubeconfig)
        self.say(f"kube-apiserver {self.client.host} ready")

    def start_node(self) -> None:
        self.say(f"starting the one-host node `istiod-py node --name {self.node_name}` (Pods as network namespaces)")
        with open(self.node_log, "wb") as log:
            # Its own session: Ctrl-C reaches the demo only, which stops the node after the Pods.
            self.node = subprocess.Popen(
                [sys.executable, "-m", "istiod_py.cli", "node", "--kubeconfig", self.kubeconfig,
                 "--name", self.node_name, "--state-dir", str(self.workdir / "node"), "--resync", "1"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

        def schedulable() -> bool:
            if self.node is not None and self.node.poll() is not None:
                raise DemoError(f"istiod-py node exited ({self.node.returncode})\n{self.node_tail()}")
            obj = self.client.get(f"/api/v1/nodes/{self.node_name}")
            conds = (obj.get("status") or {}).get("conditions") or []
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conds)
            return ready and not (obj.get("spec") or {}).get("taints")

        wait_for(schedulable, 60, f"Node {self.node_name} Ready", self.node_tail)

    def install(self) -> None:
        self.say("istiod-py install --set profile=demo")
        self.installed = True  # even a half-done install is uninstalled
        _cli("install", "--kubeconfig", self.kubeconfig, "--set", "profile=demo")
        wait_for(lambda: _ready_pods(self.client, "istio-system", "app=istiod", 1), 120, "istiod Ready", self.node_tail)
        self.say("istiod Ready")

    def _injects(self) -> bool:
        """A server-side dry run goes through the admission chain: True once the webhook
        (its caBundle patched in by istiod) injects Pods in the namespace."""
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "inject-probe", "namespace": self.namespace},
               "spec": {"containers": [{"name": "probe", "image": APP_IMAGE}]}}  # fmt: skip
        out = self.client.request("POST", f"/api/v1/namespaces/{self.namespace}/pods", [("dryRun", "All")], pod)
        return any(c.get("name") == "istio-proxy" for c in (out.get("spec") or {}).get("containers") or [])

    def _apply_file(self, path: Path, ns: str) -> None:
        for doc in kapply.documents(path.read_text()):
            doc.setdefault("metadata", {})["namespace"] = ns
            kapply.apply(self.client, doc)

    def deploy(self) -> None:
        ns = self.namespace
        self.say(f"namespace {ns} labelled istio-injection=enabled")
        kapply.apply(self.client, {"apiVersion": "v1", "kind": "Namespace",
                                   "metadata": {"name": ns, "labels": {"istio-injection": "enabled"}}})  # fmt: skip
        wait_for(self._injects, 90, f"the injection webhook answering for {ns}", self.node_tail)
        self.say(f"kubectl apply -n {ns} -f {BOOKINFO.relative_to(ROOT)}")
        self._apply_file(BOOKINFO, ns)
        for f in ROUTING_FILES:
            self.say(f"kubectl apply -n {ns} -f {(ROUTING / f).relative_to(ROOT)}")
            self._apply_file(ROUTING / f, ns)
        # The client: a namespace without the injection label, a Pod without a sidecar.
        kapply.apply(self.client, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": CLIENT_NS}})
        wait_for(lambda: self.client.get(f"/api/v1/namespaces/{CLIENT_NS}/serviceaccounts/default"), 30, "client SA")
        labels = {"app": "client"}
        kapply.apply(self.client, {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "client", "namespace": CLIENT_NS},
            "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": {
                "nodeSelector": {"kubernetes.io/hostname": self.node_name},
                "containers": [{"name": "client", "image": APP_IMAGE, "ports": [{"containerPort": 8080}]}]}}},
        })  # fmt: skip

    def wait_ready(self) -> list[JsonObj]:
        running: list[JsonObj] = wait_for(
            lambda: _ready_pods(self.client, self.namespace, "app", 6), 180, "the 6 bookinfo Pods Ready", self.node_tail
        )
        wait_for(lambda: _ready_pods(self.client, "istio-system", "app=istio-ingressgateway", 1), 120,
                 "the ingress gateway Ready", self.node_tail)  # fmt: skip
        self.say("Pods (every bookinfo Pod: istio-init ran the iptables step, then app + istio-proxy):")
        for p in sorted(running, key=lambda p: str(p["metadata"]["name"])):
            st = p["status"]
            ready = sum(1 for s in st.get("containerStatuses") or [] if s.get("ready"))
            init = ",".join(s["name"] for s in st.get("initContainerStatuses") or [])
            print(f"    {p['metadata']['name']:34} {ready}/{len(p['spec']['containers'])} Ready  "
                  f"{st.get('podIP', ''):14} init: {init or '-'}")  # fmt: skip
        return running

    # ------------------------------------------------------------ traffic

    def netns(self, pod: JsonObj) -> str:
        assert self.node is not None
        return pod_netns(self.node.pid, str(pod["metadata"]["uid"]))

    def batch(self, client_pod: JsonObj, host: str, n: int) -> list[str]:
        proc = subprocess.run(
            ["ip", "netns", "exec", self.netns(client_pod), sys.executable, "-c", BATCH, host, "80", "/productpage",
             str(n)],
            capture_output=True, text=True, timeout=30 + 6 * n, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise DemoError(f"requests from the client Pod failed: {proc.stderr[-800:]}")
        out: list[str] = json.loads(proc.stdout)
        return out

    def redirected(self, pod: JsonObj) -> dict[str, int]:
        """Connections the pod's nat rules sent to Envoy since it started: inbound (-> 15006), outbound (-> 15001)."""
        out = subprocess.run(
            ["ip", "netns", "exec", self.netns(pod), "iptables", "-t", "nat", "-L", "-n", "-v", "-x"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip
        counts = {"ISTIO_IN_REDIRECT": 0, "ISTIO_REDIRECT": 0}
        chain = ""
        for line in out.splitlines():
            m = re.match(r"Chain (\S+)", line)
            if m:
                chain = m.group(1)
            elif chain in counts and "REDIRECT" in line and line.split()[0].isdigit():
                counts[chain] += int(line.split()[0])
        return {"inbound": counts["ISTIO_IN_REDIRECT"], "outbound": counts["ISTIO_REDIRECT"]}

    def traffic(self, bookinfo: list[JsonObj]) -> collections.Counter[str]:
        client_pod = wait_for(lambda: _ready_pods(self.client, CLIENT_NS, "app=client", 1), 60, "client Ready",
                              self.node_tail)[0]  # fmt: skip
        gw = str(self.client.get("/api/v1/namespaces/istio-system/services/istio-ingressgateway")["spec"]["clusterIP"])
        url = f"http://{gw}:80/productpage"
        # The routing (80/20) is in place once v1 and v2 answer and v3 no longer does.
        wait_for(lambda: set(self.batch(client_pod, gw, 10)) <= {"reviews-v1", "reviews-v2"}, 90,
                 f"{url} answering with the 80/20 routing", self.node_tail)  # fmt: skip
        productpage = next(p for p in bookinfo if p["metadata"]["labels"].get("app") == "productpage")
        before = self.redirected(productpage)
        counts = collections.Counter(self.batch(client_pod, gw, self.requests))
        after = self.redirected(productpage)
        print(f"\n{self.requests} requests from {CLIENT_NS}/client (no sidecar) to the ingress gateway {url}")
        print("  gateway Envoy -> productpage -> details + reviews (v1 80% / v2 20%) -> ratings; mTLS hop by hop:")
        for name, count in sorted(counts.items()):
            print(f"  {count:4d}  {name}")
        during = after["outbound"] - before["outbound"]
        # nat rules see a connection's first packet only: the counters count connections.
        print(f"iptables capture in {productpage['metadata']['name']}'s Pod (nat counters, one per connection):\n"
              f"  {after['inbound']:4d}  inbound connections redirected to its Envoy :15006 (ISTIO_IN_REDIRECT; "
              f"the gateway's Envoy keeps its mTLS connections open)\n"
              f"  {after['outbound']:4d}  outbound connections redirected to its Envoy :15001 (ISTIO_REDIRECT; "
              f"{during} of them the app's calls to details and reviews during these requests)",
              flush=True)  # fmt: skip
        counts["_inbound_redirected"] = after["inbound"]
        counts["_outbound_redirected"] = during
        return counts

    # ------------------------------------------------------------ teardown

    def teardown(self) -> list[str]:
        """Removes everything the demo made, every step tried; returns what failed."""
        problems: list[str] = []

        def step(what: str, fn: Callable[[], Any]) -> None:
            try:
                fn()
            except Exception as e:
                problems.append(f"{what}: {e}")

        if self.node is not None and self.kubeconfig:
            self.say(f"removing namespaces {self.namespace} and {CLIENT_NS}, then the install")
            for ns in (self.namespace, CLIENT_NS):
                step(f"delete namespace {ns}", functools.partial(self._delete_namespace, ns))
            # The Pods go while the node runs, so it tears their network namespaces down itself.
            step("Pods gone", lambda: wait_for(
                lambda: (not _pods(self.client, self.namespace) and not _pods(self.client, CLIENT_NS)) or None,
                90, "the demo's Pods gone", self.node_tail))  # fmt: skip
            if self.installed:
                step("uninstall", lambda: _cli("uninstall", "--kubeconfig", self.kubeconfig, "--set", "profile=demo"))
                step("istio-system Pods gone", lambda: wait_for(
                    lambda: not _pods(self.client, "istio-system") or None, 90, "istio-system Pods gone",
                    self.node_tail))  # fmt: skip
        if self.node is not None:
            self.say("stopping the node (it deletes its network namespaces, bridge and rules)")
            step("stop node", self._stop_node)
        if self._client is not None:
            self._client.close()
        if self.cluster is not None:
            self.say("stopping the Kubernetes control plane")
            step("stop cluster", self.cluster.stop)
        return problems

    def _delete_namespace(self, ns: str) -> None:
        kapply.delete(self.client, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    def _stop_node(self) -> None:
        assert self.node is not None
        with contextlib.suppress(ProcessLookupError):
            self.node.terminate()
        try:
            self.node.wait(90)
        except subprocess.TimeoutExpired:
            self.node.kill()
            self.node.wait()
            raise DemoError(f"istiod-py node did not stop in 90s (killed)\n{self.node_tail()}") from None
        left = [d.name for d in Path("/var/run/netns").glob(f"ipy{self.node.pid}-*")]
        if left:
            raise DemoError(f"network namespaces left after the node stopped: {left}")
        if self.node.returncode != 0:
            raise DemoError(f"istiod-py node exited {self.node.returncode}\n{self.node_tail()}")


def run(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="demo.sh --mode kube", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--kubeconfig", default="", help="use this running cluster (no control plane started)")
    ap.add_argument("--namespace", default="bookinfo", help="where bookinfo runs (created, labelled, deleted)")
    ap.add_argument("--serve", action="store_true", help="after the traffic, keep everything running until Ctrl-C")
    args = ap.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="istiod-py-capture-demo-"))
    os.chmod(workdir, 0o755)  # the proxies run as UID 1337 and read their volumes under it
    demo = KubeDemo(workdir, args.kubeconfig, args.namespace, args.requests)
    for sig in STOP_SIGNALS:
        signal.signal(sig, _interrupt)
    rc = 0
    try:
        demo.start_cluster()
        demo.start_node()
        demo.install()
        demo.deploy()
        counts = demo.traffic(demo.wait_ready())
        ok = counts["reviews-v1"] + counts["reviews-v2"]
        captured = counts["_inbound_redirected"] > 0 and counts["_outbound_redirected"] >= ok
        rc = 0 if ok >= args.requests * 9 // 10 and captured else 1
        if args.serve:
            print(f"running; kubeconfig {demo.kubeconfig}; Ctrl-C tears everything down", flush=True)
            while True:
                signal.pause()
    except Interrupted as e:
        print(f"\n{e}: tearing down", flush=True)
        rc = 130 if str(e) == "SIGINT" else 143
    except DemoError as e:
        print(f"demo: {e}", file=sys.stderr, flush=True)
        rc = 1
    finally:
        problems = demo.teardown()
        for p in problems:
            print(f"demo: teardown: {p}", file=sys.stderr)
        if problems:
            print(f"logs kept in {workdir}", file=sys.stderr)
            rc = rc or 1
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        demo.say("done")
    return rc


if __name__ == "__main__":
    sys.exit(run())
