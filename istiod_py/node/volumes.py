"""A pod's volumes as directories on this host, and a container's environment.

No mount namespace: each volume is a directory under the pod's state dir, and a
container's args and env values that start with one of its volumeMounts'
mountPath are rewritten to that directory (`/var/run/secrets/tokens/istio-token`
-> `STATE/pods/UID/volumes/istio-token/istio-token`). Supported sources:
emptyDir (mode 0777, as the kubelet makes it), configMap, secret, downwardAPI
(labels/annotations/name/namespace/uid), and projected (serviceAccountToken by
the TokenRequest API with the volume's audience, configMap, secret,
downwardAPI). A ConfigMap or Secret that does not exist yet keeps the pod
waiting (ContainerCreating), as the kubelet does; hostPath, PVCs and the rest
fail the pod with a message naming the volume.

As the kubelet does within its sync period, configMap and secret contents are
read again every SOURCE_REFRESH_SECONDS and changed keys rewritten in place
(keys gone from the object are removed; subPath mounts are not special-cased).
An object deleted meanwhile keeps its last content, unless optional.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from istiod_py.kube.client import JsonObj, KubeApiError, KubeClient

REFRESH_FRACTION = 0.8  # the kubelet renews a projected token after 80 % of its lifetime
# The kubelet's sync period is 1 min plus its cache TTL; shorter here so that tests and
# the demo see a changed ConfigMap (e.g. istiod rewriting istio-ca-root-cert) in seconds.
SOURCE_REFRESH_SECONDS = 3.0


class VolumeNotReady(Exception):
    """A source the volume needs does not exist yet (retry later)."""


class VolumeError(ValueError):
    """A volume the node cannot provide (names pod, volume and field)."""


def _write(path: Path, data: bytes) -> None:
    """In place, not by rename: a process reading the file by path sees the new content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o644)


def _field(pod: Mapping[str, Any], path: str) -> str:
    meta = pod.get("metadata") or {}
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = (meta.get(path.split(".")[1]) or {}).items()
        return "\n".join(f"{k}={json.dumps(str(v))}" for k, v in sorted(items))
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": (pod.get("spec") or {}).get("nodeName"),
        "spec.serviceAccountName": (pod.get("spec") or {}).get("serviceAccountName") or "default",
        "status.podIP": (pod.get("status") or {}).get("podIP"),
        "status.hostIP": (pod.get("status") or {}).get("hostIP"),
    }
    if path == "status.podIPs":
        return ",".join(str(i.get("ip")) for i in (pod.get("status") or {}).get("podIPs") or [])
    if path not in simple:
        raise VolumeError(f"pod {meta.get('namespace')}/{meta.get('name')}: fieldRef {path!r} is not supported")
    return str(simple[path] or "")


class PodVolumes:
    def __init__(self, client: KubeClient, pod: JsonObj, root: Path) -> None:
        self.client = client
        self.pod = pod
        self.root = root
        meta = pod["metadata"]
        self.ns = str(meta["namespace"])
        self.where = f"pod {self.ns}/{meta['name']}"
        self.dirs: dict[str, Path] = {}
        self._token_refresh: dict[Path, tuple[float, dict[str, Any]]] = {}
        # configMap/secret sources: (kind, source, base dir) -> the files written from it and their bytes
        self._sources: list[tuple[str, dict[str, Any], Path]] = []
        self._written: dict[int, dict[Path, bytes]] = {}
        self._next_source_refresh = time.monotonic() + SOURCE_REFRESH_SECONDS

    def _get(self, kind: str, name: str, optional: bool) -> JsonObj | None:
        try:
            return self.client.get(f"/api/v1/namespaces/{self.ns}/{kind}/{name}")
        except KubeApiError as e:
            if e.status == 404:
                if optional:
                    return None
                raise VolumeNotReady(f"{kind[:-1]} {self.ns}/{name} not found") from None
            raise

    def _keys(self, kind: str, src: Mapping[str, Any], base: Path) -> None:
        self._sources.append((kind, dict(src), base))
        self._sync_source(len(self._sources) - 1, refreshing=False)

    def _sync_source(self, index: int, refreshing: bool) -> bool:
        """Writes the source's keys that changed since the last write; True if any file changed."""
        kind, src, base = self._sources[index]
        optional = bool(src.get("optional"))
        try:
            obj = self._get(kind + "s", str(src.get("name")), optional)
        except VolumeNotReady:
            if refreshing:
                return False  # deleted meanwhile: the kubelet keeps the last content
            raise
        data: dict[str, bytes] = {}
        if obj is None:
            pass
        elif kind == "configmap":
            data = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
            data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        else:
            data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        items = src.get("items")
        want: dict[Path, bytes] = {}
        if items is None:
            want = {base / k: v for k, v in data.items()}
        for item in items or []:
            if item.get("key") in data:
                want[base / str(item.get("path"))] = data[str(item["key"])]
        had = self._written.get(index, {})
        changed = False
        for path, content in want.items():
            if had.get(path) != content:
                _write(path, content)
                changed = True
        for path in set(had) - set(want):
            path.unlink(missing_ok=True)
            changed = True
        self._written[index] = want
        return changed

    def refresh_sources(self) -> list[str]:
        """Every SOURCE_REFRESH_SECONDS: configMap/secret contents read again, changed keys
        rewritten; returns the sources that changed (`configmap NAME`)."""
        now = time.monotonic()
        if now < self._next_source_refresh:
            return []
        self._next_source_refresh = now + SOURCE_REFRESH_SECONDS
        changed = []
        for i, (kind, src, _) in enumerate(self._sources):
            try:
                if self._sync_source(i, refreshing=True):
                    changed.append(f"{kind} {self.ns}/{src.get('name')}")
            except KubeApiError:
                continue  # the API server is away for a moment: next time
        return changed

    def _downward(self, src: Mapping[str, Any], base: Path) -> None:
        for item in src.get("items") or []:
            ref = item.get("fieldRef")
            if not ref:
                raise VolumeError(f"{self.where}: downwardAPI item {item.get('path')}: only fieldRef is supported")
            _write(base / str(item["path"]), _field(self.pod, str(ref.get("fieldPath"))).encode())

    def _token(self, src: Mapping[str, Any], base: Path) -> None:
        path = base / str(src.get("path") or "token")
        self._request_token(path, dict(src))

    def _request_token(self, path: Path, src: dict[str, Any]) -> None:
        meta, spec = self.pod["metadata"], self.pod.get("spec") or {}
        sa = spec.get("serviceAccountName") or "default"
        audience = src.get("audience")
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else [],
                "expirationSeconds": int(src.get("expirationSeconds") or 3607),
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]},
            },
        }
        try:
            out = self.client.create(f"/api/v1/namespaces/{self.ns}/serviceaccounts/{sa}/token", body)
        except KubeApiError as e:
            if e.status == 404:
                raise VolumeNotReady(f"serviceaccount {self.ns}/{sa} not found") from None
            raise
        _write(path, str(out["status"]["token"]).encode())
        ttl = int(body["spec"]["expirationSeconds"])  # type: ignore[index]
        self._token_refresh[path] = (time.time() + REFRESH_FRACTION * ttl, src)

    def refresh_tokens(self) -> None:
        now = time.time()
        for path, (due, src) in list(self._token_refresh.items()):
            if now >= due:
                self._request_token(path, src)

    def materialize(self) -> None:
        """Every volume of the pod; raises VolumeNotReady (retry) or VolumeError."""
        for vol in (self.pod.get("spec") or {}).get("volumes") or []:
            name = str(vol["name"])
            base = self.root / name
            base.mkdir(parents=True, exist_ok=True)
            os.chmod(base, 0o755)
            if "emptyDir" in vol:
                os.chmod(base, 0o777)
            elif "configMap" in vol:
                self._keys("configmap", {**vol["configMap"], "name": vol["configMap"].get("name")}, base)
            elif "secret" in vol:
                sec = vol["secret"]
                self._keys("secret", {**sec, "name": sec.get("secretName")}, base)
            elif "downwardAPI" in vol:
                self._downward(vol["downwardAPI"], base)
            elif "projected" in vol:
                for src in vol["projected"].get("sources") or []:
                    if "serviceAccountToken" in src:
                        self._token(src["serviceAccountToken"], base)
                    elif "configMap" in src:
                        self._keys("configmap", src["configMap"], base)
                    elif "secret" in src:
                        self._keys("secret", src["secret"], base)
                    elif "downwardAPI" in src:
                        self._downward(src["downwardAPI"], base)
            else:
                kinds = sorted(k for k in vol if k != "name")
                raise VolumeError(f"{self.where}: volume {name}: source {kinds} is not supported by the node")
            self.dirs[name] = base

    def mounts(self, container: Mapping[str, Any]) -> list[tuple[str, Path]]:
        """(mountPath, host directory) for the container, longest mountPath first."""
        out = []
        for m in container.get("volumeMounts") or []:
            d = self.dirs.get(str(m.get("name")))
            if d is None:
                raise VolumeError(f"{self.where}: {container.get('name')}: volumeMount {m.get('name')} has no volume")
            if m.get("subPath"):
                d = d / str(m["subPath"])
            out.append((str(m["mountPath"]).rstrip("/") or "/", d))
        return sorted(out, key=lambda t: -len(t[0]))


def rewrite_path(value: str, mounts: list[tuple[str, Path]]) -> str:
    """A value naming a path under a mountPath, pointed at the volume's directory."""
    for mount, d in mounts:
        if value == mount or value.startswith(mount + "/"):
            return str(d) + value[len(mount) :]
    return value


_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: unknown references stay as written, $$ is a literal $."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR.sub(sub, value)


def container_env(client: KubeClient, pod: JsonObj, container: Mapping[str, Any]) -> dict[str, str]:
    ns = str(pod["metadata"]["namespace"])
    env: dict[str, str] = {}
    for e in container.get("env") or []:
        name = str(e["name"])
        if "value" in e or "valueFrom" not in e:
            env[name] = expand(str(e.get("value") or ""), env)
            continue
        ref = e["valueFrom"]
        if "fieldRef" in ref:
            env[name] = _field(pod, str(ref["fieldRef"]["fieldPath"]))
        elif "resourceFieldRef" in ref:
            env[name] = "0"  # no limits are enforced here
        elif "configMapKeyRef" in ref or "secretKeyRef" in ref:
            kind, key = ("configmaps", "configMapKeyRef") if "configMapKeyRef" in ref else ("secrets", "secretKeyRef")
            r = ref[key]
            try:
                obj = client.get(f"/api/v1/namespaces/{ns}/{kind}/{r['name']}")
            except KubeApiError as err:
                if err.status == 404 and r.get("optional"):
                    continue
                raise VolumeNotReady(f"env {name}: {kind[:-1]} {ns}/{r['name']}: {err}") from None
            raw = (obj.get("data") or {}).get(r["key"])
            if raw is None:
                continue
            env[name] = base64.b64decode(raw).decode() if kind == "secrets" else str(raw)
    return env
