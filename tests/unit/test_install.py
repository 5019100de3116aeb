"""Install values and manifests: profiles, `--set`, and the objects' contracts
(ports, names, labels, selectors) that Kubernetes and users rely on."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from istiod_py.inject.policy import namespace_selected
from istiod_py.inject.values import InjectionValues
from istiod_py.install import manifests
from istiod_py.install.profiles import PROFILES, ValuesError, resolve
from istiod_py.model import MeshConfig


def objs(*sets: str) -> list[dict[str, Any]]:
    return manifests.render(resolve(sets))


def find(items: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in items if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def names(items: list[dict[str, Any]], kind: str) -> set[str]:
    return {o["metadata"]["name"] for o in items if o["kind"] == kind}


@pytest.mark.parametrize(
    ("profile", "deployments"),
    [
        ("default", {"istiod", "istio-ingressgateway"}),
        ("demo", {"istiod", "istio-ingressgateway", "istio-egressgateway"}),
        ("minimal", {"istiod"}),
        ("empty", set()),
    ],
)
def test_profiles_deploy_istios_components(profile: str, deployments: set[str]) -> None:
    items = objs(f"profile={profile}")
    assert names(items, "Deployment") == deployments
    if profile == "empty":
        assert items == []


def test_set_enables_and_tunes_components() -> None:
    items = objs("profile=empty", "components.pilot=true", "values.pilot.replicas=3")
    assert names(items, "Deployment") == {"istiod"}
    assert find(items, "Deployment", "istiod")["spec"]["replicas"] == 3


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("pilot.replica=2", "pilot.replica: unknown value"),
        ("pilot.replicas=two", "expected an integer"),
        ("components.pilot=maybe", "expected true or false"),
        ("pilot=1", "is a map"),
        ("nonsense", "expected KEY=VALUE"),
        ("profile=huge", "unknown profile"),
        ("bogus.deep.key=1", "unknown value 'bogus'"),
    ],
)
def test_bad_set_names_the_key(assignment: str, message: str) -> None:
    with pytest.raises(ValuesError, match=message):
        resolve([assignment])


def test_free_form_maps_take_new_keys() -> None:
    v = resolve(["meshConfig.outboundTrafficPolicy.mode=REGISTRY_ONLY", "pilot.env.PILOT_X=1"])
    assert v["meshConfig"]["outboundTrafficPolicy"] == {"mode": "REGISTRY_ONLY"}
    assert {"name": "PILOT_X", "value": "1"} in find(manifests.render(v), "Deployment", "istiod")["spec"]["template"][
        "spec"
    ]["containers"][0]["env"]


@pytest.mark.parametrize("profile", [p for p in PROFILES if p != "empty"])
def test_mesh_configmap_is_one_the_control_plane_loads(profile: str) -> None:
    cm = find(objs(f"profile={profile}"), "ConfigMap", "istio")
    mesh = MeshConfig.from_dict(yaml.safe_load(cm["data"]["mesh"]), "istio ConfigMap")
    assert mesh.root_namespace == "istio-system"


def test_demo_turns_access_logs_on() -> None:
    cm = find(objs("profile=demo"), "ConfigMap", "istio")
    assert yaml.safe_load(cm["data"]["mesh"])["accessLogFile"] == "/dev/stdout"


def test_istiod_service_and_deployment_ports() -> None:
    items = objs()
    svc = find(items, "Service", "istiod")
    ports = {(p["port"], p.get("targetPort", p["port"])) for p in svc["spec"]["ports"]}
    assert ports == {(15010, 15010), (15012, 15012), (15014, 15014), (15017, 15017), (443, 15017)}
    dep = find(items, "Deployment", "istiod")
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    pod = dep["spec"]["template"]
    assert all(pod["metadata"]["labels"][k] == v for k, v in svc["spec"]["selector"].items())
    c = pod["spec"]["containers"][0]
    assert {p["containerPort"] for p in c["ports"]} == {15010, 15012, 15014, 15017}
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 15014}
    assert c["resources"]["requests"] == {"cpu": "500m", "memory": "2048Mi"}
    assert pod["metadata"]["labels"]["sidecar.istio.io/inject"] == "false"
    assert pod["spec"]["serviceAccountName"] == "istiod"
    binding = find(items, "ClusterRoleBinding", "istiod-clusterrole-istio-system")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "istiod", "namespace": "istio-system"}]


def test_istiod_environment_carries_the_injection_values() -> None:
    v = resolve(["profile=demo", "hub=my.reg", "global.proxy.logLevel=debug", "global.proxy.interceptionMode=TPROXY"])
    dep = find(manifests.render(v), "Deployment", "istiod")
    env = {e["name"]: e["value"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"] if "value" in e}
    from_env = InjectionValues.from_env(env)
    expected = manifests.injection_values(v)
    assert from_env.hub == "my.reg" and from_env.log_level == "debug" and from_env.interception_mode == "TPROXY"
    assert from_env.proxy_resources["requests"] == {"cpu": "10m", "memory": "40Mi"}  # demo's
    assert from_env == expected


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes' label selector semantics (matchLabels + matchExpressions)."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        key, op, vals = e["key"], e["operator"], e.get("values") or []
        ok = {
            "In": key in labels and labels[key] in vals,
            "NotIn": key not in labels or labels[key] not in vals,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


NS_LABELS = [{}, {"istio-injection": "enabled"}, {"istio-injection": "disabled"}, {"istio.io/rev": "default"},
             {"istio.io/rev": "canary"}, {"istio-injection": "enabled", "istio.io/rev": "canary"}]  # fmt: skip
POD_LABELS = [{}, {"sidecar.istio.io/inject": "true"}, {"sidecar.istio.io/inject": "false"},
              {"istio.io/rev": "default"}, {"istio.io/rev": "canary"}]  # fmt: skip


@pytest.mark.parametrize("revision", ["", "canary"])
def test_webhook_selectors_match_the_injection_policy(revision: str) -> None:
    """The API server sends a pod iff namespace_selected() says it is selected."""
    sets = [f"revision={revision}"] if revision else []
    mwc = find(
        objs(*sets), "MutatingWebhookConfiguration", f"istio-sidecar-injector{'-' + revision if revision else ''}"
    )
    for hook in mwc["webhooks"]:
        assert hook["clientConfig"]["service"]["path"] == "/inject"
        assert hook["clientConfig"]["service"]["port"] == 443
        assert hook["admissionReviewVersions"] == ["v1"] and hook["sideEffects"] == "None"
    for ns in NS_LABELS:
        for pod in POD_LABELS:
            sent = any(
                _selects(h["namespaceSelector"], ns) and _selects(h["objectSelector"], pod) for h in mwc["webhooks"]
            )
            assert sent is namespace_selected(ns, pod, revision), (ns, pod)


def test_validating_webhook_calls_validate() -> None:
    vwc = find(objs(), "ValidatingWebhookConfiguration", "istio-validator-istio-system")
    (hook,) = vwc["webhooks"]
    assert hook["clientConfig"]["service"] == {"name": "istiod", "namespace": "istio-system", "path": "/validate",
                                               "port": 443}  # fmt: skip
    assert "networking.istio.io" in hook["rules"][0]["apiGroups"]


def test_gateways_are_labelled_as_istios() -> None:
    items = objs("profile=demo")
    for which, svc_type in (("ingress", "LoadBalancer"), ("egress", "ClusterIP")):
        name = f"istio-{which}gateway"
        dep, svc = find(items, "Deployment", name), find(items, "Service", name)
        pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        assert pod_labels["istio"] == f"{which}gateway" and pod_labels["app"] == name
        assert _selects({"matchLabels": svc["spec"]["selector"]}, pod_labels)
        assert svc["spec"]["type"] == svc_type
        ports = {p["port"]: p["targetPort"] for p in svc["spec"]["ports"]}
        assert ports[80] == 8080 and ports[443] == 8443
        args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[:3] == ["agent", "--type", "router"]
        sa = dep["spec"]["template"]["spec"]["serviceAccountName"]
        assert sa in names(items, "ServiceAccount")


def test_crds_come_from_deploy_crds() -> None:
    with_base = [o for o in objs("profile=minimal") if o["kind"] == "CustomResourceDefinition"]
    assert with_base == manifests.crds()
    assert [
        o for o in objs("profile=minimal", "components.base=false") if o["kind"] == "CustomResourceDefinition"
    ] == []


def test_revision_names_everything_apart() -> None:
    items = objs("revision=canary")
    assert "istiod-canary" in names(items, "Deployment") and "istiod-canary" in names(items, "Service")
    assert "istio-canary" in names(items, "ConfigMap")
    cm = find(items, "ConfigMap", "istio-canary")
    assert (
        yaml.safe_load(cm["data"]["mesh"])["defaultConfig"]["discoveryAddress"]
        == "istiod-canary.istio-system.svc:15012"
    )
