"""`install --set profile=demo` against the real API server, and the real API
server calling the injector for Pods of a labelled namespace: the loopback
/inject handler (with the caBundle set by inject/cabundle.py), then `serve
--kubeconfig`, which serves /inject and /validate on its webhook port and sets
the caBundle itself.

The installed configurations call istiod's Service; with no node to run istiod,
the tests point `clientConfig.url` at the loopback server instead."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from istiod_py.inject import webhook
from istiod_py.inject.cabundle import patch_ca_bundle
from istiod_py.inject.kube_inject import kube_inject
from istiod_py.inject.values import InjectionValues
from istiod_py.install.manifests import render
from istiod_py.install.profiles import resolve
from tests.support.envoy import EnvoyFactory, envoy_factory_context
from tests.support.kube import KubeCluster
from tests.support.mesh import Mesh
from tests.support.net import free_port

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "istiod_py.cli", *args], capture_output=True, text=True, cwd=REPO,
                       timeout=180)  # fmt: skip
    assert "Traceback" not in r.stderr, r.stderr
    return r


def _api(kubeconfig: str) -> Any:
    from kubernetes import client as kclient
    from kubernetes import config as kconfig

    cfg = kclient.Configuration()
    kconfig.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    return kclient.ApiClient(cfg)


class _Webhook:
    """/inject over HTTPS on 127.0.0.1 in a thread with its own event loop."""

    def __init__(self) -> None:
        from istiod_py.ca.bundle import CAKeyCertBundle, create_self_signed_root
        from istiod_py.ca.signer import CertificateAuthority

        key, root = create_self_signed_root(key_type="ec-p256")
        self.ca = CertificateAuthority(CAKeyCertBundle(key, root, (root,), True))
        chain, key = self.ca.issue_serving_cert(("istiod.istio-system.svc",), ("127.0.0.1",))
        self.dir = tempfile.TemporaryDirectory()
        cert_path, key_path = Path(self.dir.name) / "c.pem", Path(self.dir.name) / "k.pem"
        cert_path.write_bytes(chain)
        key_path.write_bytes(key)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(cert_path), str(key_path))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.loop = asyncio.new_event_loop()
        self.calls = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        handler = webhook.make_handler(InjectionValues)

        async def counted(request: web.Request) -> web.StreamResponse:
            self.calls += 1
            resp: web.StreamResponse = await handler(request)
            return resp

        app.router.add_post(webhook.INJECT_PATH, counted)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", self.port, ssl_context=self.ctx)
        self.loop.run_until_complete(site.start())
        self._ready.set()
        self.loop.run_forever()

    def start(self) -> _Webhook:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.dir.cleanup()


@pytest.fixture
def injector() -> Iterator[_Webhook]:
    w = _Webhook().start()
    try:
        yield w
    finally:
        w.stop()


def _wait(pred: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "reviews", "version": "v1"}},
        "spec": {
            "containers": [
                {
                    "name": "reviews",
                    "image": "reviews:v1",
                    "ports": [{"containerPort": 9080, "name": "http"}],
                    "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}},
                }
            ]
        },
    }


def test_install_demo_then_webhook_injects_pods_of_labelled_namespaces(kube: KubeCluster, injector: _Webhook) -> None:
    from kubernetes import client as kclient
    from kubernetes.client.exceptions import ApiException

    kubeconfig = str(kube.kubeconfig)
    r = _cli("install", "--kubeconfig", kubeconfig, "--set", "profile=demo")
    assert r.returncode == 0, r.stderr
    api = _api(kubeconfig)
    core, apps = kclient.CoreV1Api(api), kclient.AppsV1Api(api)
    adm = kclient.AdmissionregistrationV1Api(api)
    try:
        # Every rendered object is stored, as rendered (a second install is a no-op apply).
        for name in ("istiod", "istio-ingressgateway", "istio-egressgateway"):
            dep = apps.read_namespaced_deployment(name, "istio-system")
            assert dep.spec.template.spec.containers[0].args[0] in ("serve", "agent")
        svc = core.read_namespaced_service("istiod", "istio-system")
        assert {(p.port, p.target_port) for p in svc.spec.ports} >= {(443, 15017), (15012, 15012)}
        mesh = core.read_namespaced_config_map("istio", "istio-system")
        assert "accessLogFile: /dev/stdout" in mesh.data["mesh"]
        assert _cli("install", "--kubeconfig", kubeconfig, "--set", "profile=demo").returncode == 0

        # Point the installed injector at the loopback webhook; caBundle as the control plane sets it.
        mwc = adm.read_mutating_webhook_configuration("istio-sidecar-injector")
        for hook in mwc.webhooks:
            hook.client_config = kclient.AdmissionregistrationV1WebhookClientConfig(
                url=f"https://127.0.0.1:{injector.port}{webhook.INJECT_PATH}"
            )
        adm.replace_mutating_webhook_configuration("istio-sidecar-injector", mwc)
        changed = patch_ca_bundle(api, injector.ca.root_pem, "istio-sidecar-injector", "istio-validator-istio-system")
        assert changed == ["istio-sidecar-injector", "istio-validator-istio-system"]
        assert patch_ca_bundle(api, injector.ca.root_pem, "istio-sidecar-injector", "") == []  # idempotent

        labelled, plain = "inj-on", "inj-off"
        for ns, labels in ((labelled, {"istio-injection": "enabled"}), (plain, {})):
            core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}})
            _wait(lambda ns=ns: _sa_exists(core, ns), 30, f"default ServiceAccount in {ns}")

        # Webhook configuration changes reach the API server's admission chain asynchronously.
        def created_injected() -> Any:
            name = f"reviews-{int(time.monotonic() * 1000) % 100000}"
            pod = core.create_namespaced_pod(labelled, _pod(name))
            if any(c.name == "istio-proxy" for c in pod.spec.containers):
                return pod
            core.delete_namespaced_pod(name, labelled, grace_period_seconds=0)
            return None

        pod = _wait(created_injected, 30, "a Pod created with the sidecar injected")
        assert [c.name for c in pod.spec.containers] == ["reviews", "istio-proxy"]
        assert [c.name for c in pod.spec.init_containers] == ["istio-init"]
        assert pod.spec.init_containers[0].args[0] == "iptables"
        assert pod.metadata.labels["security.istio.io/tlsMode"] == "istio"
        assert "sidecar.istio.io/status" in pod.metadata.annotations
        assert pod.spec.containers[0].readiness_probe.http_get.port == 15020
        token = next(v for v in pod.spec.volumes if v.name == "istio-token")
        assert token.projected.sources[0].service_account_token.audience == "istio-ca"

        # The same Deployment twice: as written, in the labelled namespace (its ReplicaSet's Pod
        # goes through the webhook), and through kube-inject, in the plain namespace. The two
        # stored Pods are the same, once the API server has defaulted both.
        src = (REPO / "tests" / "golden" / "inject" / "bookinfo-reviews.in.yaml").read_text()
        offline_src = kube_inject(src, InjectionValues(), namespace=plain)
        calls = injector.calls
        for ns, text in ((labelled, src), (plain, offline_src)):
            docs = list(yaml.safe_load_all(text))
            core.create_namespaced_service_account(ns, next(d for d in docs if d["kind"] == "ServiceAccount"))
            apps.create_namespaced_deployment(ns, next(d for d in docs if d["kind"] == "Deployment"))
        online_pod, offline_pod = (
            api.sanitize_for_serialization(
                _wait(
                    lambda ns=ns: core.list_namespaced_pod(ns, label_selector="app=reviews,pod-template-hash").items,
                    60,
                    f"Pod in {ns}",
                )[0]
            )
            for ns in (labelled, plain)
        )
        assert injector.calls == calls + 1  # the plain namespace's Pod was not sent
        assert _comparable(online_pod, labelled, plain) == _comparable(offline_pod, plain, plain)
        assert [c["name"] for c in online_pod["spec"]["containers"]] == ["reviews", "istio-proxy"]

        opted_out = _pod("no-sidecar")
        opted_out["metadata"]["labels"]["sidecar.istio.io/inject"] = "false"
        calls = injector.calls
        assert [c.name for c in core.create_namespaced_pod(labelled, opted_out).spec.containers] == ["reviews"]
        assert [c.name for c in core.create_namespaced_pod(plain, _pod("plain")).spec.containers] == ["reviews"]
        assert injector.calls == calls  # the selectors kept both away from the webhook

        # A webhook bug never blocks a pod: a bad annotation is answered "allowed".
        bad = _pod("bad-annotation")
        bad["metadata"]["annotations"] = {"sidecar.istio.io/interceptionMode": "SIDEWAYS"}
        assert [c.name for c in core.create_namespaced_pod(labelled, bad).spec.containers] == ["reviews"]
    finally:
        for ns in ("inj-on", "inj-off"):
            with contextlib.suppress(ApiException):
                core.delete_namespace(ns)
        r = _cli("uninstall", "--kubeconfig", kubeconfig, "--set", "profile=demo")
        assert r.returncode == 0, r.stderr
        api.close()
    leftovers = [o for o in render(resolve(["profile=demo"])) if o["kind"] in ("Deployment", "Service")]
    for o in leftovers:
        with pytest.raises(ApiException) as e:
            (apps.read_namespaced_deployment if o["kind"] == "Deployment" else core.read_namespaced_service)(
                o["metadata"]["name"], "istio-system"
            )
        assert e.value.status == 404


def _comparable(pod: dict[str, Any], ns: str, as_ns: str) -> Any:
    """A stored Pod without what differs between any two Pods (names, uids, times, the
    random service-account volume, the template hash) and with its namespace renamed."""
    import json

    spec = dict(pod["spec"])
    spec["volumes"] = [v for v in spec["volumes"] if not v["name"].startswith("kube-api-access-")]
    for key in ("containers", "initContainers"):
        spec[key] = [
            {
                **c,
                "volumeMounts": [
                    m for m in c.get("volumeMounts") or [] if not m["name"].startswith("kube-api-access-")
                ],
            }
            for c in spec.get(key) or []
        ]
    labels = {k: v for k, v in pod["metadata"]["labels"].items() if k != "pod-template-hash"}
    text = json.dumps({"spec": spec, "labels": labels, "annotations": pod["metadata"].get("annotations")})
    return json.loads(text.replace(f"/namespaces/{ns}/", f"/namespaces/{as_ns}/"))


def _sa_exists(core: Any, ns: str) -> bool:
    from kubernetes.client.exceptions import ApiException

    try:
        core.read_namespaced_service_account("default", ns)
        return True
    except ApiException as e:
        if e.status == 404:
            return False
        raise


@pytest.fixture
def envoy_factory(tmp_path: Path) -> Iterator[EnvoyFactory]:
    with envoy_factory_context(tmp_path / "envoy") as factory:
        yield factory


def test_serve_sets_the_ca_bundle_and_serves_inject_and_validate(
    kube: KubeCluster, tmp_path: Path, envoy_factory: EnvoyFactory
) -> None:
    """The control plane's own webhook port: /inject and /validate answered for the
    real API server, trusted through the caBundle serve patched in at start."""
    import base64

    from kubernetes import client as kclient
    from kubernetes.client.exceptions import ApiException

    kubeconfig = str(kube.kubeconfig)
    assert _cli("install", "--kubeconfig", kubeconfig, "--set", "profile=minimal").returncode == 0
    api = _api(kubeconfig)
    core, adm = kclient.CoreV1Api(api), kclient.AdmissionregistrationV1Api(api)
    custom = kclient.CustomObjectsApi(api)
    port = free_port()
    mesh = Mesh(tmp_path / "mesh", envoy_factory, extra_args=["--kubeconfig", kubeconfig, "--webhook-port", str(port)])
    ns = "inj-serve"
    try:
        # The configurations point at the (future) loopback server, with no caBundle yet.
        mwc = adm.read_mutating_webhook_configuration("istio-sidecar-injector")
        for hook in mwc.webhooks:
            hook.client_config = kclient.AdmissionregistrationV1WebhookClientConfig(
                url=f"https://{mesh.host}:{port}/inject"
            )
        adm.replace_mutating_webhook_configuration("istio-sidecar-injector", mwc)
        vwc = adm.read_validating_webhook_configuration("istio-validator-istio-system")
        vwc.webhooks[0].client_config = kclient.AdmissionregistrationV1WebhookClientConfig(
            url=f"https://{mesh.host}:{port}/validate"
        )
        vwc.webhooks[0].failure_policy = "Fail"
        vwc.webhooks[0].namespace_selector = kclient.V1LabelSelector(match_labels={"kubernetes.io/metadata.name": ns})
        adm.replace_validating_webhook_configuration("istio-validator-istio-system", vwc)

        mesh.start_with_ca()
        bundle = base64.b64encode(mesh.root_cert.read_bytes()).decode()
        _wait(
            lambda: (
                all(
                    h.client_config.ca_bundle == bundle
                    for h in adm.read_mutating_webhook_configuration("istio-sidecar-injector").webhooks
                )
                and adm.read_validating_webhook_configuration("istio-validator-istio-system")
                .webhooks[0]
                .client_config.ca_bundle
                == bundle
            ),
            20,
            "serve to set both caBundles",
        )
        core.create_namespace(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": ns, "labels": {"istio-injection": "enabled"}},
            }
        )
        _wait(lambda: _sa_exists(core, ns), 30, f"default ServiceAccount in {ns}")

        def created_injected() -> Any:
            name = f"web-{int(time.monotonic() * 1000) % 100000}"
            pod = core.create_namespaced_pod(ns, _pod(name))
            if any(c.name == "istio-proxy" for c in pod.spec.containers):
                return pod
            core.delete_namespaced_pod(name, ns, grace_period_seconds=0)
            return None

        pod = _wait(created_injected, 30, "a Pod injected by serve's /inject")
        assert [c.name for c in pod.spec.init_containers] == ["istio-init"]

        bad_vs = {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "bad", "namespace": ns},
            "spec": {
                "hosts": ["web"],
                "http": [{"match": [{"uri": {"regex": "(["}}], "route": [{"destination": {"host": "web"}}]}],
            },
        }
        with pytest.raises(ApiException) as e:
            custom.create_namespaced_custom_object("networking.istio.io", "v1", ns, "virtualservices", bad_vs)
        assert "spec.http[0].match[0].uri.regex" in str(e.value.body)
    finally:
        mesh.stop()
        with contextlib.suppress(ApiException):
            core.delete_namespace(ns)
        assert _cli("uninstall", "--kubeconfig", kubeconfig, "--set", "profile=minimal").returncode == 0
        api.close()
