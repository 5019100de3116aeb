"""A thin, blocking Kubernetes API client over the official `kubernetes` package.

The official client does the hard parts (kubeconfig and in-cluster config, TLS,
client certificates, exec credential plug-ins, token refresh); requests and
watches here go through its REST layer but answer raw JSON dicts, not the
generated models: deserializing thousands of Pods into models costs more CPU
than everything else the control plane does with them, and the raw JSON is what
the file source parses too (the same parsers, the same objects).

Every call blocks: callers run it in a worker thread (see informer.py), never on
the event loop.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from kubernetes import client as kclient
from kubernetes import config as kconfig

JsonObj = dict[str, Any]


class KubeApiError(Exception):
    """An API server answer other than 2xx; `status` is the HTTP status (0: no answer)."""

    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(f"{status} {reason}: {message}" if reason else f"{status}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class KubeClient:
    def __init__(self, api: kclient.ApiClient, description: str) -> None:
        self.api = api
        self.description = description

    @staticmethod
    def from_kubeconfig(path: str | None, context: str | None = None) -> KubeClient:
        """`path` None or "": in-cluster config (service-account token and CA)."""
        cfg = kclient.Configuration()
        if path:
            kconfig.load_kube_config(config_file=path, context=context, client_configuration=cfg)
        else:
            kconfig.load_incluster_config(client_configuration=cfg)
        # One long-lived watch per resource plus requests: more than urllib3's default 10.
        cfg.connection_pool_maxsize = 64
        return KubeClient(kclient.ApiClient(cfg), f"kubeconfig {path}" if path else "in-cluster config")

    @property
    def host(self) -> str:
        return str(self.api.configuration.host)

    def close(self) -> None:
        self.api.close()

    def _open(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        timeout: float | tuple[float, float] | None = 30.0,
        content_type: str = "application/json",
    ) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        _method, url, hdrs, req_body, post = self.api.param_serialize(
            method,
            path,
            query_params=list(query),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            resp = self.api.call_api(_method, url, hdrs, req_body, post, _request_timeout=timeout)
        except kclient.ApiException as e:  # raised for transport-level failures
            raise KubeApiError(int(e.status or 0), str(e.reason or e)) from e
        except Exception as e:  # urllib3 errors: connection refused, timeouts, TLS
            raise KubeApiError(0, f"{type(e).__name__}: {e}") from e
        raw = resp.response
        if not 200 <= resp.status < 300:
            try:
                data = raw.data
                info = json.loads(data) if data else {}
            except (ValueError, OSError):
                info = {}
            finally:
                raw.release_conn()
            message = info.get("message") if isinstance(info, dict) else None
            reason = info.get("reason", "") if isinstance(info, dict) else ""
            raise KubeApiError(resp.status, str(message or resp.reason), str(reason or ""))
        return raw

    def request(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        timeout: float | tuple[float, float] | None = 30.0,
        content_type: str = "application/json",
    ) -> JsonObj:
        raw = self._open(method, path, query, body, timeout, content_type)
        try:
            data = raw.data
        finally:
            raw.release_conn()
        out = json.loads(data) if data else {}
        if not isinstance(out, dict):
            raise KubeApiError(0, f"{method} {path}: expected a JSON object")
        return out

    def get(self, path: str, query: Sequence[tuple[str, str]] = ()) -> JsonObj:
        return self.request("GET", path, query)

    def create(self, path: str, body: Mapping[str, Any]) -> JsonObj:
        return self.request("POST", path, body=dict(body))

    def replace(self, path: str, body: Mapping[str, Any]) -> JsonObj:
        return self.request("PUT", path, body=dict(body))

    def patch(self, path: str, body: Any, patch_type: str = "application/merge-patch+json") -> JsonObj:
        return self.request("PATCH", path, body=body, content_type=patch_type)

    def delete(self, path: str) -> JsonObj:
        return self.request("DELETE", path)

    def stream(
        self, path: str, query: Sequence[tuple[str, str]], read_timeout: float, holder: list[Any] | None = None
    ) -> Iterator[JsonObj]:
        """A watch: one JSON object per line until the server ends the stream.
        `holder` receives the open response so another thread can close it."""
        raw = self._open("GET", path, query, timeout=(10.0, read_timeout))
        if holder is not None:
            holder.append(raw)
        try:
            buf = b""
            for chunk in raw.stream(64 * 1024, decode_content=True):
                buf += chunk
                while True:
                    nl = buf.find(b"\n")
                    if nl < 0:
                        break
                    line, buf = buf[:nl], buf[nl + 1 :]
                    if line.strip():
                        yield json.loads(line)
            if buf.strip():
                yield json.loads(buf)
        finally:
            raw.release_conn()
            if holder is not None and raw in holder:
                holder.remove(raw)


def resource_path(group: str, version: str, plural: str, namespace: str | None = None, name: str | None = None) -> str:
    """/api/v1/... for the core group, /apis/GROUP/VERSION/... otherwise."""
    base = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    if namespace:
        base += f"/namespaces/{quote(namespace, safe='')}"
    base += f"/{plural}"
    if name:
        base += f"/{quote(name, safe='')}"
    return base
