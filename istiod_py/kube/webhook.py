"""The validating admission webhook (Istio's `validation.istio.io`): the API
server sends every Istio resource it is about to store; the same loader and
validator as `istiod-py validate` check it, and a bad one is refused with the
same messages, field paths included, before it is stored.

`admission_response(review)` is the pure part; `ValidationWebhook` serves it at
/validate over HTTPS with a serving certificate from the built-in CA (IP SAN for
loopback: the API server calls it by `clientConfig.url`). The injection webhook
of the companion work shares port 15017; `app()` exposes the route for one
server to carry both."""

from __future__ import annotations

import json
import logging
import ssl
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

from istiod_py.config.loader import load_text
from istiod_py.config.model import KINDS

log = logging.getLogger("istiod_py.kube.webhook")

WEBHOOK_PATH = "/validate"


def admission_response(review: dict[str, Any]) -> dict[str, Any]:
    """AdmissionReview (admission.k8s.io/v1) request -> AdmissionReview response."""
    req = review.get("request") or {}
    uid = str(req.get("uid") or "")
    allowed, message = True, ""
    kind = (req.get("kind") or {}).get("kind") or ""
    obj = req.get("object")
    if req.get("operation") in ("CREATE", "UPDATE") and kind in KINDS and isinstance(obj, dict):
        group = (req.get("kind") or {}).get("group") or ""
        version = (req.get("kind") or {}).get("version") or ""
        body = {**obj, "apiVersion": f"{group}/{version}", "kind": kind}
        meta = dict(body.get("metadata") or {})
        meta.setdefault("namespace", req.get("namespace") or "default")
        if not meta.get("name") and req.get("name"):
            meta["name"] = req["name"]
        body["metadata"] = meta
        result = load_text(json.dumps(body), f"admission {kind} {meta['namespace']}/{meta.get('name', '')}")
        if result.errors:
            allowed = False
            message = "configuration is invalid: " + "; ".join(
                f"{e.field}: {e.message}" if e.field else e.message for e in result.errors
            )
    response: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if not allowed:
        response["status"] = {"code": 400, "reason": "BadRequest", "message": message}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


async def handle_validate(request: web.Request) -> web.Response:
    try:
        review = await request.json()
    except (ValueError, UnicodeDecodeError):
        return web.Response(status=400, text="expected an AdmissionReview JSON body")
    out = admission_response(review if isinstance(review, dict) else {})
    if not out["response"]["allowed"]:
        log.info("admission refused: %s", out["response"]["status"]["message"])
    return web.json_response(out)


def app() -> web.Application:
    """/validate, and the sidecar injector's /inject: one port (15017) carries both, as istiod's."""
    from istiod_py.inject.webhook import add_routes

    a = web.Application()
    a.router.add_post(WEBHOOK_PATH, handle_validate)
    add_routes(a)
    return a


class ValidationWebhook:
    """HTTPS on host:port serving /validate, with a certificate the CA issues."""

    def __init__(self, ca: Any, host: str = "127.0.0.1", port: int = 15017) -> None:
        self.ca = ca
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    def ssl_context(self) -> ssl.SSLContext:
        chain, key = self.ca.issue_serving_cert(("istiod.istio-system.svc", "localhost"), (self.host,))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as d:  # ssl loads only from files
            cert_path, key_path = Path(d) / "cert.pem", Path(d) / "key.pem"
            cert_path.write_bytes(chain)
            key_path.write_bytes(key)
            ctx.load_cert_chain(str(cert_path), str(key_path))
        return ctx

    async def start(self) -> int:
        self._runner = web.AppRunner(app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context())
        await site.start()
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.port = int(server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def webhook_configuration(url: str, ca_bundle_pem: str, name: str = "istiod-py-validator") -> dict[str, Any]:
    """A ValidatingWebhookConfiguration sending every Istio kind to `url`."""
    import base64

    groups = sorted({i.group for i in KINDS.values()})
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "validation.istio.io",
                "clientConfig": {"url": url, "caBundle": base64.b64encode(ca_bundle_pem.encode()).decode()},
                "rules": [
                    {
                        "operations": ["CREATE", "UPDATE"],
                        "apiGroups": groups,
                        "apiVersions": ["*"],
                        "resources": ["*"],
                    }
                ],
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 10,
            }
        ],
    }
