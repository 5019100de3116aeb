"""The injected pod, per annotation: what Istio's injection template does with
each `sidecar.istio.io/*` / `traffic.sidecar.istio.io/*` annotation, the policy
(namespace and pod labels), and the probe rewrite."""

from __future__ import annotations

import json
from typing import Any

import pytest

from istiod_py.inject.pod import inject_pod, workload_of_pod
from istiod_py.inject.policy import injection_required, namespace_selected
from istiod_py.inject.template import InjectionError, WorkloadMeta
from istiod_py.inject.values import InjectionValues

WL = WorkloadMeta("reviews-v1", "default", "Deployment", "apps/v1")


def pod(annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    containers = spec.pop(
        "containers",
        [{"name": "reviews", "image": "reviews:v1", "ports": [{"containerPort": 9080, "name": "http"}]}],
    )
    return {
        "metadata": {"labels": {"app": "reviews", "version": "v1"}, "annotations": annotations or {}},
        "spec": {"containers": containers, **spec},
    }


def injected(annotations: dict[str, str] | None = None, values: InjectionValues | None = None, **spec: Any) -> Any:
    return inject_pod(pod(annotations, **spec), values or InjectionValues(), WL)


def container(p: dict[str, Any], name: str, init: bool = False) -> dict[str, Any]:
    items = p["spec"]["initContainers" if init else "containers"]
    found = [c for c in items if c["name"] == name]
    assert len(found) == 1, [c["name"] for c in items]
    return found[0]


def flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def env(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}


def test_default_pod_gets_istio_init_and_istio_proxy_as_istio() -> None:
    p = injected()
    names = [c["name"] for c in p["spec"]["containers"]]
    assert names == ["reviews", "istio-proxy"]  # proxy last: kubectl exec/logs default to the app
    init = container(p, "istio-init", init=True)
    assert init["args"][:1] == ["iptables"]
    assert flag(init["args"], "-p") == "15001" and flag(init["args"], "-z") == "15006"
    assert flag(init["args"], "-u") == "1337" and flag(init["args"], "-m") == "REDIRECT"
    assert flag(init["args"], "-i") == "*" and flag(init["args"], "-x") == ""
    assert flag(init["args"], "-b") == "*" and flag(init["args"], "-d") == "15090,15021,15020"
    assert "-o" not in init["args"] and "-q" not in init["args"]
    assert init["securityContext"]["capabilities"]["add"] == ["NET_ADMIN", "NET_RAW"]
    assert init["securityContext"]["runAsUser"] == 0

    proxy = container(p, "istio-proxy")
    assert proxy["args"][0] == "agent"
    assert flag(proxy["args"], "--type") == "sidecar"
    assert flag(proxy["args"], "--ip") == "$(INSTANCE_IP)" and flag(proxy["args"], "--name") == "$(POD_NAME)"
    assert flag(proxy["args"], "--interception-mode") == "REDIRECT"
    assert flag(proxy["args"], "--ca-address") == "istiod.istio-system.svc:15012"
    assert flag(proxy["args"], "--token-file") == "/var/run/secrets/tokens/istio-token"
    assert flag(proxy["args"], "--root-cert") == "/var/run/secrets/istio/root-cert.pem"
    e = env(proxy)
    for name, path in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace"),
                       ("INSTANCE_IP", "status.podIP"), ("SERVICE_ACCOUNT", "spec.serviceAccountName")):  # fmt: skip
        assert e[name]["fieldRef"]["fieldPath"] == path
    assert e["ISTIO_META_WORKLOAD_NAME"] == "reviews-v1"
    assert e["ISTIO_META_OWNER"] == "kubernetes://apis/apps/v1/namespaces/default/deployments/reviews-v1"
    assert e["ISTIO_META_INTERCEPTION_MODE"] == "REDIRECT"
    assert e["ISTIO_META_APP_CONTAINERS"] == "reviews"
    assert json.loads(e["ISTIO_META_POD_PORTS"]) == [{"containerPort": 9080, "name": "http", "protocol": "TCP"}]
    assert proxy["ports"] == [{"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}]
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/healthz/ready", "port": 15021, "scheme": "HTTP"}
    sc = proxy["securityContext"]
    assert (sc["runAsUser"], sc["runAsGroup"], sc["runAsNonRoot"]) == (1337, 1337, True)
    assert proxy["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"},
                                  "limits": {"cpu": "2000m", "memory": "1024Mi"}}  # fmt: skip

    vols = {v["name"]: v for v in p["spec"]["volumes"]}
    assert vols["istio-envoy"] == {"name": "istio-envoy", "emptyDir": {"medium": "Memory"}}
    token = vols["istio-token"]["projected"]["sources"][0]["serviceAccountToken"]
    assert token["audience"] == "istio-ca" and token["path"] == "istio-token"
    assert vols["istiod-ca-cert"]["configMap"]["name"] == "istio-ca-root-cert"
    assert {i["path"] for i in vols["istio-podinfo"]["downwardAPI"]["items"]} == {"labels", "annotations"}
    mounts = {m["name"]: m["mountPath"] for m in proxy["volumeMounts"]}
    assert set(mounts) <= set(vols)
    assert (
        mounts["istio-podinfo"] == "/etc/istio/pod" and flag(proxy["args"], "--labels-file") == "/etc/istio/pod/labels"
    )

    labels = p["metadata"]["labels"]
    assert labels["security.istio.io/tlsMode"] == "istio"
    assert labels["service.istio.io/canonical-name"] == "reviews"
    assert labels["service.istio.io/canonical-revision"] == "v1"
    ann = p["metadata"]["annotations"]
    status = json.loads(ann["sidecar.istio.io/status"])
    assert status["containers"] == ["istio-proxy"] and status["initContainers"] == ["istio-init"]
    assert set(status["volumes"]) == {"istio-envoy", "istio-data", "istio-podinfo", "istio-token", "istiod-ca-cert"}
    assert ann["kubectl.kubernetes.io/default-container"] == "reviews"
    assert ann["prometheus.io/port"] == "15020"


def test_canonical_labels_fall_back_as_istio() -> None:
    p = inject_pod({"metadata": {"labels": {"app.kubernetes.io/name": "n", "app.kubernetes.io/version": "2"}},
                    "spec": {"containers": [{"name": "a"}]}}, InjectionValues(), WL)  # fmt: skip
    assert p["metadata"]["labels"]["service.istio.io/canonical-name"] == "n"
    assert p["metadata"]["labels"]["service.istio.io/canonical-revision"] == "2"
    p = inject_pod({"metadata": {}, "spec": {"containers": [{"name": "a"}]}}, InjectionValues(), WL)
    assert p["metadata"]["labels"]["service.istio.io/canonical-name"] == "reviews-v1"
    assert p["metadata"]["labels"]["service.istio.io/canonical-revision"] == "latest"


@pytest.mark.parametrize(
    ("key", "value", "flag_name", "expected"),
    [
        ("traffic.sidecar.istio.io/includeOutboundIPRanges", "10.96.0.0/12", "-i", "10.96.0.0/12"),
        ("traffic.sidecar.istio.io/excludeOutboundIPRanges", "169.254.169.254/32", "-x", "169.254.169.254/32"),
        ("traffic.sidecar.istio.io/includeInboundPorts", "9080,9443", "-b", "9080,9443"),
        ("traffic.sidecar.istio.io/excludeInboundPorts", "8081", "-d", "15090,15021,15020,8081"),
        ("traffic.sidecar.istio.io/includeOutboundPorts", "3306", "-q", "3306"),
        ("traffic.sidecar.istio.io/excludeOutboundPorts", "5432,6379", "-o", "5432,6379"),
        ("traffic.sidecar.istio.io/kubevirtInterfaces", "net1", "-k", "net1"),
        ("traffic.sidecar.istio.io/excludeInterfaces", "eth1", "-c", "eth1"),
        ("sidecar.istio.io/interceptionMode", "TPROXY", "-m", "TPROXY"),
    ],
)
def test_traffic_annotations_become_capture_flags(key: str, value: str, flag_name: str, expected: str) -> None:
    p = injected({key: value})
    assert flag(container(p, "istio-init", init=True)["args"], flag_name) == expected


def test_tproxy_runs_the_proxy_as_root_with_net_admin() -> None:
    p = injected({"sidecar.istio.io/interceptionMode": "TPROXY"})
    proxy = container(p, "istio-proxy")
    assert proxy["securityContext"]["runAsUser"] == 0 and proxy["securityContext"]["runAsGroup"] == 1337
    assert proxy["securityContext"]["capabilities"]["add"] == ["NET_ADMIN"]
    assert flag(proxy["args"], "--interception-mode") == "TPROXY"
    assert env(proxy)["ISTIO_META_INTERCEPTION_MODE"] == "TPROXY"


def test_interception_none_has_no_init_container() -> None:
    p = injected({"sidecar.istio.io/interceptionMode": "NONE"})
    assert "initContainers" not in p["spec"]
    assert json.loads(p["metadata"]["annotations"]["sidecar.istio.io/status"])["initContainers"] == []
    assert flag(container(p, "istio-proxy")["args"], "--interception-mode") == "NONE"


def test_bad_interception_mode_names_the_annotation() -> None:
    with pytest.raises(InjectionError, match=r"sidecar\.istio\.io/interceptionMode"):
        injected({"sidecar.istio.io/interceptionMode": "BOGUS"})


def test_user_init_containers_run_before_istio_init() -> None:
    p = injected(initContainers=[{"name": "migrate", "image": "m"}])
    assert [c["name"] for c in p["spec"]["initContainers"]] == ["migrate", "istio-init"]


def test_resource_annotations_replace_the_defaults() -> None:
    p = injected({"sidecar.istio.io/proxyCPU": "50m", "sidecar.istio.io/proxyMemory": "64Mi"})
    assert container(p, "istio-proxy")["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"}}
    p = injected({"sidecar.istio.io/proxyCPULimit": "1", "sidecar.istio.io/proxyMemoryLimit": "512Mi"})
    assert container(p, "istio-proxy")["resources"] == {"limits": {"cpu": "1", "memory": "512Mi"}}


def test_proxy_image_and_log_level_annotations() -> None:
    p = injected({"sidecar.istio.io/proxyImage": "my.registry/proxy:1", "sidecar.istio.io/logLevel": "debug"})
    assert container(p, "istio-proxy")["image"] == "my.registry/proxy:1"
    assert container(p, "istio-init", init=True)["image"] == "my.registry/proxy:1"
    assert flag(container(p, "istio-proxy")["args"], "--envoy-log-level") == "debug"


def test_user_volume_annotations() -> None:
    p = injected({
        "sidecar.istio.io/userVolume": '{"certs":{"secret":{"secretName":"my-certs"}}}',
        "sidecar.istio.io/userVolumeMount": '{"certs":{"mountPath":"/etc/my-certs","readOnly":true}}',
    })  # fmt: skip
    assert {"name": "certs", "secret": {"secretName": "my-certs"}} in p["spec"]["volumes"]
    assert {"name": "certs", "mountPath": "/etc/my-certs", "readOnly": True} in container(p, "istio-proxy")[
        "volumeMounts"
    ]
    with pytest.raises(InjectionError, match=r"sidecar\.istio\.io/userVolume"):
        injected({"sidecar.istio.io/userVolume": "{not json"})


def test_readiness_annotations() -> None:
    p = injected({"readiness.status.sidecar.istio.io/periodSeconds": "5",
                  "readiness.status.sidecar.istio.io/failureThreshold": "9"})  # fmt: skip
    r = container(p, "istio-proxy")["readinessProbe"]
    assert (r["periodSeconds"], r["failureThreshold"]) == (5, 9)
    with pytest.raises(InjectionError, match="initialDelaySeconds"):
        injected({"readiness.status.sidecar.istio.io/initialDelaySeconds": "soon"})


def test_app_probes_are_rewritten_to_the_agent() -> None:
    app = {
        "name": "web",
        "ports": [{"containerPort": 8080, "name": "http"}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "timeoutSeconds": 2, "periodSeconds": 7},
        "livenessProbe": {"tcpSocket": {"port": 8080}},
        "startupProbe": {"exec": {"command": ["true"]}},
    }
    p = injected(containers=[app])
    web = container(p, "web")
    assert web["readinessProbe"] == {
        "httpGet": {"path": "/app-health/web/readyz", "port": 15020, "scheme": "HTTP"},
        "timeoutSeconds": 2,
        "periodSeconds": 7,
    }
    assert web["livenessProbe"]["httpGet"]["path"] == "/app-health/web/livez"
    assert web["startupProbe"] == {"exec": {"command": ["true"]}}  # exec probes run in the app container
    probers = json.loads(env(container(p, "istio-proxy"))["ISTIO_KUBE_APP_PROBERS"])
    assert probers == {
        "/app-health/web/readyz": {"httpGet": {"path": "/ready", "port": 8080, "scheme": "HTTP"}, "timeoutSeconds": 2},
        "/app-health/web/livez": {"tcpSocket": {"port": 8080}, "timeoutSeconds": 1},
    }


def test_rewrite_can_be_turned_off_per_pod() -> None:
    app = {"name": "web", "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}}}
    p = injected({"sidecar.istio.io/rewriteAppHTTPProbers": "false"}, containers=[app])
    assert container(p, "web")["readinessProbe"] == app["readinessProbe"]
    assert "ISTIO_KUBE_APP_PROBERS" not in env(container(p, "istio-proxy"))


def test_reinjection_keeps_one_copy() -> None:
    once = injected()
    del once["metadata"]["annotations"]["sidecar.istio.io/status"]
    twice = inject_pod(once, InjectionValues(), WL)
    assert [c["name"] for c in twice["spec"]["containers"]] == ["reviews", "istio-proxy"]
    assert [c["name"] for c in twice["spec"]["initContainers"]] == ["istio-init"]
    assert len(twice["spec"]["volumes"]) == len(once["spec"]["volumes"])


def test_revision_and_namespace_change_addresses() -> None:
    p = injected(values=InjectionValues(revision="canary", istio_namespace="mesh"))
    args = container(p, "istio-proxy")["args"]
    assert flag(args, "--ca-address") == "istiod-canary.mesh.svc:15012"
    assert flag(args, "--xds-server-name") == "istiod-canary.mesh.svc"
    assert p["metadata"]["annotations"]["istio.io/rev"] == "canary"


@pytest.mark.parametrize(
    ("labels", "annotations", "spec", "ns", "policy", "expected"),
    [
        ({}, {}, {}, "default", "enabled", True),
        ({}, {}, {}, "default", "disabled", False),
        ({}, {"sidecar.istio.io/inject": "true"}, {}, "default", "disabled", True),
        ({}, {"sidecar.istio.io/inject": "false"}, {}, "default", "enabled", False),
        ({"sidecar.istio.io/inject": "true"}, {"sidecar.istio.io/inject": "false"}, {}, "default", "enabled", True),
        ({"sidecar.istio.io/inject": "false"}, {"sidecar.istio.io/inject": "true"}, {}, "default", "enabled", False),
        ({"sidecar.istio.io/inject": "yes"}, {}, {}, "default", "disabled", True),
        ({}, {}, {"hostNetwork": True}, "default", "enabled", False),
        ({"sidecar.istio.io/inject": "true"}, {}, {}, "kube-system", "enabled", False),
        ({}, {"sidecar.istio.io/status": "{}"}, {}, "default", "enabled", False),
    ],
)
def test_injection_required(
    labels: dict[str, str], annotations: dict[str, str], spec: dict[str, Any], ns: str, policy: str, expected: bool
) -> None:
    assert injection_required({"labels": labels, "annotations": annotations}, spec, ns, policy) is expected


@pytest.mark.parametrize(
    ("ns_labels", "pod_labels", "revision", "expected"),
    [
        ({"istio-injection": "enabled"}, {}, "", True),
        ({"istio-injection": "enabled"}, {"sidecar.istio.io/inject": "false"}, "", False),
        ({"istio-injection": "disabled"}, {"sidecar.istio.io/inject": "true"}, "", False),
        ({"istio.io/rev": "default"}, {}, "", True),
        ({"istio.io/rev": "canary"}, {}, "", False),
        ({"istio.io/rev": "canary"}, {}, "canary", True),
        ({}, {}, "", False),
        ({}, {"sidecar.istio.io/inject": "true"}, "", True),
        ({}, {"istio.io/rev": "default"}, "", True),
    ],
)
def test_namespace_selected(
    ns_labels: dict[str, str], pod_labels: dict[str, str], revision: str, expected: bool
) -> None:
    assert namespace_selected(ns_labels, pod_labels, revision) is expected


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ({"labels": {"pod-template-hash": "5c9f"}, "ownerReferences": [
            {"controller": True, "kind": "ReplicaSet", "name": "reviews-v1-5c9f", "apiVersion": "apps/v1"}]},
         WorkloadMeta("reviews-v1", "ns", "Deployment", "apps/v1")),
        ({"ownerReferences": [{"controller": True, "kind": "StatefulSet", "name": "db", "apiVersion": "apps/v1"}]},
         WorkloadMeta("db", "ns", "StatefulSet", "apps/v1")),
        ({"ownerReferences": [{"controller": True, "kind": "Job", "name": "backup-28912", "apiVersion": "batch/v1"}]},
         WorkloadMeta("backup", "ns", "CronJob", "batch/v1")),
        ({"generateName": "worker-"}, WorkloadMeta("worker", "ns", "Pod", "v1")),
        ({"name": "lonely"}, WorkloadMeta("lonely", "ns", "Pod", "v1")),
    ],
)  # fmt: skip
def test_workload_of_pod(meta: dict[str, Any], expected: WorkloadMeta) -> None:
    assert workload_of_pod(meta, "ns") == expected


def test_values_round_trip_through_the_environment() -> None:
    v = InjectionValues(hub="h", tag="t", revision="r", rewrite_app_probers=False, readiness_period=3)
    assert InjectionValues.from_env(v.to_env()) == v


def test_app_prometheus_annotations_move_to_the_agent() -> None:
    p = injected({"prometheus.io/scrape": "true", "prometheus.io/port": "9080", "prometheus.io/path": "/metrics"})
    ann = p["metadata"]["annotations"]
    assert (ann["prometheus.io/port"], ann["prometheus.io/path"]) == ("15020", "/stats/prometheus")
    saved = json.loads(env(container(p, "istio-proxy"))["ISTIO_PROMETHEUS_ANNOTATIONS"])
    assert saved == {"scrape": "true", "path": "/metrics", "port": "9080"}
    p = injected({"prometheus.io/scrape": "false"})  # an app that opts out of scraping keeps it off
    assert p["metadata"]["annotations"]["prometheus.io/scrape"] == "false"
    assert "prometheus.io/port" not in p["metadata"]["annotations"]


def test_prometheus_merge_annotation_and_istio_json_shape() -> None:
    # Istio's JSON has every key, "" for an annotation the pod does not set.
    p = injected({"prometheus.io/port": "9090"})
    saved = json.loads(env(container(p, "istio-proxy"))["ISTIO_PROMETHEUS_ANNOTATIONS"])
    assert saved == {"scrape": "", "path": "", "port": "9090"}
    # prometheus.io/merge-metrics: "false" keeps the pod's own scrape settings and no env.
    p = injected({"prometheus.io/merge-metrics": "false", "prometheus.io/port": "9090"})
    assert p["metadata"]["annotations"]["prometheus.io/port"] == "9090"
    assert "ISTIO_PROMETHEUS_ANNOTATIONS" not in env(container(p, "istio-proxy"))
    off = InjectionValues(enable_prometheus_merge=False)
    p = injected({"prometheus.io/merge-metrics": "true", "prometheus.io/port": "9090"}, off)
    assert p["metadata"]["annotations"]["prometheus.io/port"] == "15020"
    p = injected({"prometheus.io/merge-metrics": "maybe"}, off)  # not a boolean: the installation decides
    assert "prometheus.io/port" not in p["metadata"]["annotations"]
