"""The sidecar injection webhook (Istio's `sidecar-injector.istio.io`): the API
server sends each Pod it is about to create in a selected namespace as an
AdmissionReview (admission.k8s.io/v1); the answer carries a JSONPatch that adds
the sidecar.

An injection failure never blocks a pod: whatever goes wrong (a bad
annotation, a bug) the pod is allowed unchanged with the reason in
`status.message` and a warning, as Istio's injector answers; refusing pods is
left to the configuration's failurePolicy, which concerns an unreachable
webhook only.

`admission_response(review, values)` is the pure part; `handle_inject` the
aiohttp handler for POST /inject; `add_routes(app)` puts it on the port-15017
server that also carries /validate (istiod_py/kube/webhook.py)."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .patch import create_patch
from .pod import inject_pod, workload_of_pod
from .policy import injection_required
from .values import InjectionValues

log = logging.getLogger("istiod_py.inject.webhook")

INJECT_PATH = "/inject"


def _response(uid: str, patch: list[dict[str, Any]] | None = None, message: str = "") -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    if message:
        response["status"] = {"message": message}
        response["warnings"] = [message]
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


def admission_response(review: dict[str, Any], values: InjectionValues) -> dict[str, Any]:
    req = review.get("request") or {}
    uid = str(req.get("uid") or "")
    try:
        pod = req.get("object")
        kind = (req.get("kind") or {}).get("kind")
        if kind != "Pod" or not isinstance(pod, dict) or req.get("operation", "CREATE") != "CREATE":
            return _response(uid)
        meta = pod.get("metadata") or {}
        namespace = str(req.get("namespace") or meta.get("namespace") or "default")
        if not injection_required(meta, pod.get("spec") or {}, namespace, values.policy):
            return _response(uid)
        wl = workload_of_pod(meta, namespace)
        injected = inject_pod(pod, values, wl)
        return _response(uid, create_patch(pod, injected))
    except Exception as e:  # never fail a pod's creation because of the injector
        meta = (req.get("object") or {}).get("metadata") or {}
        what = f"{req.get('namespace', '')}/{meta.get('name') or meta.get('generateName') or '?'}"
        log.warning("injection of pod %s failed: %s", what, e, exc_info=not isinstance(e, ValueError))
        return _response(uid, message=f"sidecar injection failed for pod {what}: {e}")


def make_handler(values: Callable[[], InjectionValues]) -> Callable[[web.Request], Any]:
    async def handle_inject(request: web.Request) -> web.Response:
        try:
            review = await request.json()
        except (ValueError, UnicodeDecodeError):
            return web.Response(status=400, text="expected an AdmissionReview JSON body")
        return web.json_response(admission_response(review if isinstance(review, dict) else {}, values()))

    return handle_inject


def add_routes(app: web.Application, values: Callable[[], InjectionValues] | None = None) -> None:
    """POST /inject on `app`; values from the environment (install renders them) by default."""
    app.router.add_post(INJECT_PATH, make_handler(values or InjectionValues.from_env))
