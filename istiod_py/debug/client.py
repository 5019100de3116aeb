"""HTTP clients for the operator commands: the control plane's debug port and a
proxy's Envoy admin. Blocking (urllib): the commands are one-shot CLIs.

Errors are `ClientError` with a one-line message naming the URL; the CLI maps
them to exit code 4 (unavailable)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class ClientError(Exception):
    pass


def base_url(address: str) -> str:
    return address.rstrip("/") if "://" in address else f"http://{address}"


def _open(url: str, timeout: float, method: str = "GET") -> bytes:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body: bytes = r.read()
            return body
    except urllib.error.HTTPError as e:
        detail = e.read().decode(errors="replace").strip()[:300]
        raise ClientError(f"{url}: HTTP {e.code}: {detail}") from None
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise ClientError(f"{url}: not reachable: {reason}") from None


def get_json(address: str, path: str, timeout: float = 5.0, method: str = "GET") -> Any:
    url = base_url(address) + path
    body = _open(url, timeout, method)
    try:
        return json.loads(body)
    except ValueError:
        raise ClientError(f"{url}: the answer is not JSON: {body[:120]!r}") from None


def get_text(address: str, path: str, timeout: float = 5.0, method: str = "GET") -> str:
    return _open(base_url(address) + path, timeout, method).decode(errors="replace")


def syncz(debug_address: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    data = get_json(debug_address, "/debug/syncz", timeout)
    if not isinstance(data, list):
        raise ClientError(f"{base_url(debug_address)}/debug/syncz: not a list; is this an istiod-py debug port?")
    return data


def find_proxy(entries: list[dict[str, Any]], proxy: str) -> dict[str, Any]:
    """The syncz entry of `proxy`: its id (name.namespace), bare name, connection id, or node id."""
    exact = [e for e in entries if proxy in (e.get("proxy"), e.get("connection_id"), e.get("node_id"))]
    if not exact:
        exact = [e for e in entries if str(e.get("proxy", "")).rsplit(".", 1)[0] == proxy]
    if not exact:
        known = ", ".join(sorted(str(e.get("proxy")) for e in entries)) or "none"
        raise ClientError(f"proxy {proxy!r} is not connected to the control plane (connected: {known})")
    return exact[-1]


def quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")
