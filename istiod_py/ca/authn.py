"""Who is calling the CA: pluggable authenticators over gRPC metadata and the TLS peer certificate."""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import yaml
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from istiod_py.ca.errors import AuthenticationError
from istiod_py.ca.spiffe import Identity, parse_spiffe_uri

log = logging.getLogger(__name__)

BEARER_PREFIX = "Bearer "


@dataclass(frozen=True)
class AuthContext:
    """What an authenticator may look at. Built from a gRPC call, or directly in tests."""

    metadata: Mapping[str, str] = field(default_factory=dict)
    peer: str = ""
    # PEM of the TLS client certificate, present only when the peer presented one that verified.
    peer_cert_pem: bytes | None = None

    @classmethod
    def from_grpc(cls, context: Any) -> AuthContext:
        """From a `grpc.aio.ServicerContext` (typed Any: grpc ships no stubs)."""
        md: dict[str, str] = {}
        for item in context.invocation_metadata() or ():
            key, value = item[0], item[1]
            if isinstance(value, bytes):  # "-bin" keys; never credentials here
                continue
            md.setdefault(str(key).lower(), str(value))
        auth: Mapping[str, Sequence[bytes]] = context.auth_context() or {}
        certs = auth.get("x509_pem_cert") or ()
        return cls(metadata=md, peer=str(context.peer() or ""), peer_cert_pem=certs[0] if certs else None)

    def bearer_token(self) -> str | None:
        value = self.metadata.get("authorization")
        if value is None:
            return None
        if not value.startswith(BEARER_PREFIX):
            raise AuthenticationError("authorization metadata is not of the form 'Bearer <token>'")
        token = value[len(BEARER_PREFIX) :].strip()
        if not token:
            raise AuthenticationError("authorization metadata carries an empty bearer token")
        return token


@runtime_checkable
class Authenticator(Protocol):
    """Turns a call's credentials into an Identity, or raises AuthenticationError."""

    name: str

    async def authenticate(self, ctx: AuthContext) -> Identity: ...


class TokenFileAuthenticator:
    """File mode: bearer tokens mapped to identities in a YAML file, re-read when it changes.

    Accepted layouts::

        tokens:
          <token>: {namespace: default, serviceAccount: sleep}

    or a list: ``tokens: [{token: <token>, namespace: default, serviceAccount: sleep}]``.
    """

    name = "token-file"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._mtime_ns: int | None = None
        self._tokens: dict[str, Identity] = {}
        self._reload()

    def _reload(self) -> None:
        try:
            st = self._path.stat()
        except FileNotFoundError:
            if self._mtime_ns is None:
                raise  # at start: `serve` reports the missing --token-file
            # Deleting the file revokes its tokens: keeping them would make removal, the
            # obvious way to cut every workload off, silently ineffective.
            if self._tokens:
                log.warning("token file %s was removed: its %d tokens are revoked", self._path, len(self._tokens))
            self._tokens, self._mtime_ns = {}, -1
            return
        if st.st_mtime_ns == self._mtime_ns:
            return
        self._tokens = parse_token_file(self._path.read_text(encoding="utf-8"), str(self._path))
        self._mtime_ns = st.st_mtime_ns

    async def authenticate(self, ctx: AuthContext) -> Identity:
        token = ctx.bearer_token()
        if token is None:
            raise AuthenticationError("no 'authorization: Bearer <token>' metadata on the request")
        try:
            self._reload()
        except (OSError, ValueError) as e:
            # Keep serving with the last good table rather than locking every workload out.
            log.warning("token file %s could not be reloaded: %s", self._path, e)
        identity = self._tokens.get(token)
        if identity is None:
            raise AuthenticationError(f"bearer token is not known (not listed in {self._path.name})")
        return identity


class _StringsLoader(yaml.SafeLoader):
    """YAML where every plain scalar stays the string it reads as: token `on` is "on", not True,
    and `0777` is "0777", not 511 (YAML 1.1's implicit bool/int/float/null/date typing is off)."""


_StringsLoader.yaml_implicit_resolvers = {}


def parse_token_file(text: str, source: str) -> dict[str, Identity]:
    try:
        doc = yaml.load(text, Loader=_StringsLoader) or {}  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as e:
        raise ValueError(f"{source}: not valid YAML: {e}") from e
    if not isinstance(doc, dict):
        raise ValueError(f"{source}: top level must be a mapping with a 'tokens' key")
    raw = doc.get("tokens") or {}  # `tokens:` with nothing under it reads as ""
    entries: Iterable[tuple[str, Any]]
    if isinstance(raw, dict):
        entries = ((str(k), v) for k, v in raw.items())
    elif isinstance(raw, list):
        entries = ((str(e.get("token", "")) if isinstance(e, dict) else "", e) for e in raw)
    else:
        raise ValueError(f"{source}: 'tokens' must be a mapping or a list")
    out: dict[str, Identity] = {}
    for i, (token, spec) in enumerate(entries):
        where = f"{source}: tokens[{i}]"
        if not token:
            raise ValueError(f"{where}: empty token")
        if not isinstance(spec, dict) or not spec.get("namespace") or not spec.get("serviceAccount"):
            raise ValueError(f"{where}: needs 'namespace' and 'serviceAccount'")
        out[token] = Identity(str(spec["namespace"]), str(spec["serviceAccount"]))
    return out


class ClientCertAuthenticator:
    """A caller presenting a valid mesh workload certificate (renewal without a token)."""

    name = "client-cert"

    def __init__(
        self,
        roots: Sequence[x509.Certificate],
        intermediates: Sequence[x509.Certificate] = (),
        trust_domain: str = "cluster.local",
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._store = Store(list(roots))
        self._intermediates = list(intermediates)
        self._trust_domain = trust_domain
        self._clock = clock

    async def authenticate(self, ctx: AuthContext) -> Identity:
        if ctx.peer_cert_pem is None:
            raise AuthenticationError("no client certificate presented")
        try:
            leaf = x509.load_pem_x509_certificate(ctx.peer_cert_pem)
        except ValueError as e:
            raise AuthenticationError(f"client certificate cannot be parsed: {e}") from e
        # gRPC already verified the handshake; verify again so this works behind any transport.
        verifier = PolicyBuilder().store(self._store).time(self._clock()).build_client_verifier()
        try:
            verified = verifier.verify(leaf, self._intermediates)
        except VerificationError as e:
            raise AuthenticationError(f"client certificate does not chain to the mesh root: {e}") from e
        uris = [n.value for n in (verified.subjects or []) if isinstance(n, x509.UniformResourceIdentifier)]
        if len(uris) != 1:
            raise AuthenticationError(f"client certificate must carry exactly one SPIFFE URI SAN, has {uris}")
        try:
            td, identity = parse_spiffe_uri(uris[0])
        except ValueError as e:
            raise AuthenticationError(str(e)) from e
        if td != self._trust_domain:
            raise AuthenticationError(f"client certificate trust domain {td!r} is not {self._trust_domain!r}")
        return identity


class TokenReviewer(Protocol):
    """Validates a Kubernetes service-account JWT (TokenReview API) and returns its identity."""

    async def review(self, token: str, audiences: Sequence[str]) -> Identity: ...


class KubeJWTAuthenticator:
    """Stub point for Kubernetes: bearer parsing here, TokenReview in the kube package.

    istiod_py.kube provides a TokenReviewer that POSTs authentication.k8s.io/v1 TokenReview
    (audience "istio-ca") and maps system:serviceaccount:<ns>:<sa> to an Identity.
    """

    name = "kube-jwt"

    def __init__(self, reviewer: TokenReviewer, audiences: Sequence[str] = ("istio-ca",)) -> None:
        self._reviewer = reviewer
        self._audiences = list(audiences)

    async def authenticate(self, ctx: AuthContext) -> Identity:
        token = ctx.bearer_token()
        if token is None:
            raise AuthenticationError("no 'authorization: Bearer <token>' metadata on the request")
        return await self._reviewer.review(token, self._audiences)


class ChainAuthenticator:
    """Tries each authenticator in order; the first success wins (as Istio's CA server does)."""

    name = "chain"

    def __init__(self, authenticators: Sequence[Authenticator]) -> None:
        if not authenticators:
            raise ValueError("ChainAuthenticator needs at least one authenticator")
        self._authenticators = list(authenticators)

    async def authenticate(self, ctx: AuthContext) -> Identity:
        errors: list[str] = []
        for a in self._authenticators:
            try:
                return await a.authenticate(ctx)
            except AuthenticationError as e:
                errors.append(f"{a.name}: {e}")
        raise AuthenticationError("; ".join(errors))
