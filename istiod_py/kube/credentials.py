"""Gateway credentials from Kubernetes Secrets, served over SDS on the proxy's own
ADS stream, as istiod's SecretGen serves them (pilot/pkg/xds/sds.go):

- resource names: `kubernetes://NAME` or `kubernetes://NS/NAME` (a Gateway's or
  DestinationRule's credentialName, translate/gateway/credentials.py), the CA
  part as `...-cacert`, and `kubernetes-gateway://NS/NAME` (Gateway API
  certificateRefs, config/gatewayapi/listener_tls.py);
- contents: `tls_certificate` (chain + key inline) or, for `-cacert`, a
  `validation_context` with the CA inline (secrets.py reads both key layouts
  and the `<name>-cacert` Secret);
- authorization, as istiod: a `kubernetes://` Secret only in the proxy's own
  namespace, and only if its service account may `list secrets` there (a
  SubjectAccessReview, cached; CA-only resources need no grant: CAs are
  public); a `kubernetes-gateway://` reference is served when the proxy's own
  config names it (the conversion emits it only after the ReferenceGrant
  check: istiod's verified references); anything else is left out, never an
  error, so one bad reference does not break the others;
- a changed Secret pushes: the proxies get the new version of the resources
  that changed (the listener keeps running: a rotated certificate is served to
  new handshakes without a failed request).

The names a proxy may get are the ones its own listeners and clusters
reference: they are read from the serialized LDS/CDS bytes (the SDS configs sit
inside Any-packed TLS contexts; scanning the bytes avoids unpacking every
filter chain), memoized per generated result.

The proxy's namespace and service account are those of its node metadata: this
xDS port does not authenticate proxies (istiod takes them from the verified
client certificate and refuses SDS to unauthenticated proxies).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable

from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from istiod_py.cache.resources import Built, Part, Resources, build
from istiod_py.model import MeshState, Proxy
from istiod_py.xds.types import TypeUrl

from .secrets import CACERT_SUFFIX, SecretAuthorizer, SecretStore, TlsCredential

log = logging.getLogger("istiod_py.kube.credentials")

K8S = "kubernetes://"
K8S_GATEWAY = "kubernetes-gateway://"
Generator = Callable[[MeshState, Proxy, str], Resources]
# A name as it sits in serialized protobuf: field tag, varint length, bytes.
_NAME = re.compile(rb"(?:kubernetes|kubernetes-gateway)://")


def referenced_names(res: Resources) -> set[str]:
    """Every `kubernetes://` / `kubernetes-gateway://` string field in the resources' bytes."""
    out: set[str] = set()
    for b in res.index.values():
        body = b.body
        for m in _NAME.finditer(body):
            i = m.start()
            # A length-delimited field: the varint length ends right before the string.
            for width in (1, 2):
                if i - width < 1:
                    break
                raw = body[i - width : i]
                if width == 1 and raw[0] < 0x80:
                    n = raw[0]
                elif width == 2 and raw[0] >= 0x80 and raw[1] < 0x80:
                    n = (raw[0] & 0x7F) | (raw[1] << 7)
                else:
                    continue
                with contextlib.suppress(UnicodeDecodeError):
                    out.add(body[i : i + n].decode())
                break
    return out


def parse_name(name: str, proxy_namespace: str) -> tuple[str, str, str] | None:
    """(scheme, namespace, secret name) of an SDS resource name, or None."""
    if name.startswith(K8S_GATEWAY):
        ns, _, secret = name[len(K8S_GATEWAY) :].partition("/")
        return (K8S_GATEWAY, ns, secret) if ns and secret else None
    if name.startswith(K8S):
        rest = name[len(K8S) :]
        ns, sep, secret = rest.partition("/")
        return (K8S, ns, secret) if sep else (K8S, proxy_namespace, rest)
    return None


def tls_secret(name: str, cred: TlsCredential) -> secret_pb2.Secret:
    s = secret_pb2.Secret(name=name)
    s.tls_certificate.certificate_chain.inline_bytes = cred.cert_chain
    s.tls_certificate.private_key.inline_bytes = cred.private_key
    return s


def ca_secret(name: str, ca: bytes) -> secret_pb2.Secret:
    s = secret_pb2.Secret(name=name)
    s.validation_context.trusted_ca.inline_bytes = ca
    return s


class GatewayCredentials:
    """The SDS part of the generator for Secret-backed credentials."""

    def __init__(
        self,
        store: SecretStore,
        authorizer: SecretAuthorizer,
        push: Callable[[str], None],
        authz_ttl: float = 60.0,
    ) -> None:
        self.store = store
        self.authorizer = authorizer
        self.push = push
        self.authz_ttl = authz_ttl
        self._authz: dict[tuple[str, str], tuple[bool, float]] = {}
        self._checking: set[tuple[str, str]] = set()
        self._names: dict[tuple[int, int], tuple[Resources, Resources, frozenset[str]]] = {}
        self._built: dict[tuple[str, bytes, bytes, bytes], Built] = {}
        self._push_pending = False
        store.listeners.append(self._secret_changed)

    def wrap(self, generate: Generator) -> Generator:
        def gen(state: MeshState, proxy: Proxy, type_url: str) -> Resources:
            if type_url != TypeUrl.SECRET:
                return generate(state, proxy, type_url)
            base = generate(state, proxy, type_url)
            mine = self.resources(state, proxy, generate)
            if not mine:
                return base
            return Resources((*base.parts, Part(mine)))

        return gen

    # --- names ----------------------------------------------------------------

    def _referenced(self, state: MeshState, proxy: Proxy, generate: Generator) -> frozenset[str]:
        lds = generate(state, proxy, TypeUrl.LISTENER)
        cds = generate(state, proxy, TypeUrl.CLUSTER)
        key = (id(lds), id(cds))
        hit = self._names.get(key)
        if hit is not None and hit[0] is lds and hit[1] is cds:
            return hit[2]
        names = frozenset(referenced_names(lds) | referenced_names(cds))
        if len(self._names) > 256:  # results of old states: the memo only needs the live ones
            self._names.clear()
        self._names[key] = (lds, cds, names)
        return names

    # --- authorization ----------------------------------------------------------

    def _authorized(self, proxy: Proxy) -> bool:
        """May the proxy's service account list Secrets in its namespace? Answered
        from the cache; a miss (or an expired answer) is asked in a thread and the
        proxies pushed when it returns, never blocking the event loop."""
        key = (proxy.namespace, proxy.service_account)
        got = self._authz.get(key)
        now = time.monotonic()
        if got is None or got[1] < now:
            self._check(key)
        return bool(got and got[0])

    def _check(self, key: tuple[str, str]) -> None:
        if key in self._checking:
            return
        self._checking.add(key)

        async def run() -> None:
            try:
                ok = await asyncio.to_thread(self.authorizer.may_list, key[0], key[1], key[0])
            finally:
                self._checking.discard(key)
            before = self._authz.get(key)
            self._authz[key] = (ok, time.monotonic() + self.authz_ttl)
            if not ok:
                log.warning(
                    "service account %s/%s may not list secrets in %s: its credentialName Secrets are not served",
                    key[0],
                    key[1],
                    key[0],
                )
            # A first "no" changes nothing served; a grant or a revocation does.
            if (before is None and ok) or (before is not None and before[0] != ok):
                self.push(f"secret access for {key[0]}/{key[1]}")

        asyncio.get_running_loop().create_task(run())

    # --- resources -----------------------------------------------------------------

    def resources(self, state: MeshState, proxy: Proxy, generate: Generator) -> dict[str, Built]:
        out: dict[str, Built] = {}
        denied: list[str] = []
        for name in sorted(self._referenced(state, proxy, generate)):
            parsed = parse_name(name, proxy.namespace)
            if parsed is None:
                continue
            scheme, ns, secret = parsed
            ca_only = secret.endswith(CACERT_SUFFIX)
            if scheme == K8S and not (ns == proxy.namespace and (ca_only or self._authorized(proxy))):
                denied.append(name)
                continue
            built = self._build(name, ns, secret, ca_only)
            if built is not None:
                out[name] = built
        if denied:
            log.debug("proxy %s: credentials not served (namespace or access): %s", proxy.id, ", ".join(denied))
        return out

    def _build(self, name: str, ns: str, secret: str, ca_only: bool) -> Built | None:
        if ca_only:
            ca = self.store.ca_only(ns, secret[: -len(CACERT_SUFFIX)])
            if not ca:
                return None
            key = (name, b"", b"", ca)
        else:
            cred = self.store.get(ns, secret)
            if cred is None or not cred.has_key_pair:
                return None
            key = (name, cred.cert_chain, cred.private_key, b"")
        hit = self._built.get(key)
        if hit is None:
            if len(self._built) > 4096:
                self._built.clear()
            msg = ca_secret(name, key[3]) if ca_only else tls_secret(name, TlsCredential(key[1], key[2]))
            hit = self._built[key] = build(name, TypeUrl.SECRET, msg)
        return hit

    # --- changes -------------------------------------------------------------------

    def _secret_changed(self, namespace: str, name: str) -> None:
        # One push for a burst of Secret events (a relist reports every Secret).
        if self._push_pending:
            return
        self._push_pending = True

        def fire() -> None:
            self._push_pending = False
            self.push("secret changed")

        asyncio.get_running_loop().call_later(0.05, fire)
