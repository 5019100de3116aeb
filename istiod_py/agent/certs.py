"""Workload certificate lifecycle (pilot-agent's role): local key, CSR, CA call, rotation.

The private key is generated here and never leaves the process except as SDS bytes to the
local Envoy over a unix socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import logging
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from istiod_py.ca._proto import ca_pb2, ca_pb2_grpc
from istiod_py.ca.keys import KeyType, SigningKey, cert_to_pem, generate_key, key_to_pem
from istiod_py.ca.spiffe import DEFAULT_TRUST_DOMAIN, Identity

log = logging.getLogger(__name__)

DEFAULT_WORKLOAD_TTL = dt.timedelta(hours=24)


@dataclass(frozen=True)
class WorkloadCert:
    """One issued identity: what SDS serves as `default` (chain + key) and `ROOTCA` (root)."""

    cert_chain_pem: bytes  # leaf first, then intermediates; the root is not repeated here
    private_key_pem: bytes
    root_pem: bytes
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime
    spiffe_uri: str
    received_at: dt.datetime

    @property
    def version(self) -> str:
        return format(self.serial, "x")

    def refresh_at(self, fraction: float) -> dt.datetime:
        # From when we got it, not notBefore: CAs backdate notBefore for clock skew, which would
        # otherwise pull rotation of short-lived certs to "immediately".
        start = max(self.not_before, self.received_at)
        return start + (self.not_after - start) * fraction


class CertificateFetchError(Exception):
    """The CA call failed (network, TLS, auth, or a malformed response)."""


def build_csr(key: SigningKey, spiffe_uri: str) -> bytes:
    """PKCS#10 CSR with the SPIFFE URI SAN (critical, as the subject is just the org)."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "istiod_py")]))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_uri)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


Listener = Callable[[WorkloadCert], None]


class WorkloadCertManager:
    """Keeps a valid workload certificate, rotating at `rotation_fraction` of its lifetime.

    Call `await start()` once (returns when the first certificate is in hand), `subscribe()` to be
    told of each new one (the SDS server does), `await rotate_now()` to force a new key + cert, and
    `await stop()` on shutdown.
    """

    def __init__(
        self,
        ca_address: str,
        root_cert_path: str | os.PathLike[str],
        identity: Identity,
        *,
        trust_domain: str = DEFAULT_TRUST_DOMAIN,
        token: str | None = None,
        token_path: str | os.PathLike[str] | None = None,
        key_type: KeyType = "ec-p256",
        ttl: dt.timedelta = DEFAULT_WORKLOAD_TTL,
        rotation_fraction: float = 0.5,
        server_name: str | None = None,
        use_cert_for_renewal: bool = True,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        call_timeout: float = 10.0,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        if not 0.0 < rotation_fraction < 1.0:
            raise ValueError(f"rotation_fraction must be in (0, 1), got {rotation_fraction}")
        self.ca_address = ca_address
        self.root_cert_path = Path(root_cert_path)
        self.identity = identity
        self.trust_domain = trust_domain
        self._token = token
        self._token_path = Path(token_path) if token_path is not None else None
        self.key_type: KeyType = key_type
        self.ttl = ttl
        self.rotation_fraction = rotation_fraction
        self._server_name = server_name
        self._use_cert_for_renewal = use_cert_for_renewal
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._call_timeout = call_timeout
        self._clock = clock
        self._current: WorkloadCert | None = None
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._lock = asyncio.Lock()

    @property
    def spiffe_uri(self) -> str:
        return self.identity.spiffe_uri(self.trust_domain)

    @property
    def current(self) -> WorkloadCert | None:
        return self._current

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` with every new certificate; returns an unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _read_token(self) -> str | None:
        # Re-read each time: projected service-account tokens are rotated on disk by the kubelet.
        if self._token_path is not None:
            return self._token_path.read_text(encoding="utf-8").strip()
        return self._token

    def _channel(self, root_pem: bytes) -> Any:
        client_key = client_chain = None
        cur = self._current
        if self._use_cert_for_renewal and cur is not None and cur.not_after > self._clock():
            client_key, client_chain = cur.private_key_pem, cur.cert_chain_pem
        creds = grpc.ssl_channel_credentials(
            root_certificates=root_pem, private_key=client_key, certificate_chain=client_chain
        )
        options: list[tuple[str, Any]] = []
        if self._server_name:
            options.append(("grpc.ssl_target_name_override", self._server_name))
        return grpc.aio.secure_channel(self.ca_address, creds, options=options)

    async def fetch(self) -> WorkloadCert:
        """One CSR round trip with a fresh key. Does not install the result."""
        root_pem = self.root_cert_path.read_bytes()
        key = generate_key(self.key_type)
        csr = build_csr(key, self.spiffe_uri)
        metadata: list[tuple[str, str]] = []
        token = self._read_token()
        if token:
            metadata.append(("authorization", f"Bearer {token}"))
        request = ca_pb2.IstioCertificateRequest(
            csr=csr.decode("ascii"), validity_duration=int(self.ttl.total_seconds())
        )
        async with self._channel(root_pem) as channel:
            stub = ca_pb2_grpc.IstioCertificateServiceStub(channel)
            try:
                resp = await stub.CreateCertificate(request, metadata=metadata, timeout=self._call_timeout)
            except grpc.aio.AioRpcError as e:
                raise CertificateFetchError(
                    f"CA {self.ca_address} refused or failed: {e.code().name}: {e.details()}"
                ) from e
        return self._validate(list(resp.cert_chain), key, root_pem)

    def _validate(self, chain_pems: Sequence[str], key: SigningKey, root_pem: bytes) -> WorkloadCert:
        if len(chain_pems) < 2:
            raise CertificateFetchError(f"CA returned {len(chain_pems)} certificates; expected leaf..root")
        try:
            certs = [x509.load_pem_x509_certificate(p.encode("ascii")) for p in chain_pems]
        except ValueError as e:
            raise CertificateFetchError(f"CA returned an unparseable certificate: {e}") from e
        leaf = certs[0]
        if leaf.public_key() != key.public_key():
            raise CertificateFetchError("CA returned a certificate for a different key")
        roots = x509.load_pem_x509_certificates(root_pem)
        if certs[-1] not in roots:
            raise CertificateFetchError(f"CA chain ends in a root not in {self.root_cert_path}")
        for child, parent in itertools.pairwise(certs):
            try:
                child.verify_directly_issued_by(parent)
            except Exception as e:
                raise CertificateFetchError(f"CA returned a broken chain: {e}") from e
        uris = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        got = uris.get_values_for_type(x509.UniformResourceIdentifier)
        if got != [self.spiffe_uri]:
            raise CertificateFetchError(f"CA issued identities {got}, expected {[self.spiffe_uri]}")
        return WorkloadCert(
            cert_chain_pem="".join(cert_to_pem(c) for c in certs[:-1]).encode("ascii"),
            private_key_pem=key_to_pem(key),
            root_pem=cert_to_pem(certs[-1]).encode("ascii"),
            serial=leaf.serial_number,
            not_before=leaf.not_valid_before_utc,
            not_after=leaf.not_valid_after_utc,
            spiffe_uri=self.spiffe_uri,
            received_at=self._clock(),
        )

    def _install(self, cert: WorkloadCert) -> None:
        self._current = cert
        log.info("workload cert %s for %s valid until %s", cert.version, cert.spiffe_uri, cert.not_after)
        for listener in list(self._listeners):
            try:
                listener(cert)
            except Exception:
                log.exception("certificate listener failed")

    async def rotate_now(self) -> WorkloadCert:
        """Fetch and install a new key + certificate immediately (one attempt; raises on failure)."""
        async with self._lock:
            cert = await self.fetch()
            self._install(cert)
        self._wake.set()  # re-plan the next rotation from the new certificate
        return cert

    async def _fetch_with_retry(self) -> WorkloadCert:
        delay = self._backoff_initial
        while True:
            try:
                async with self._lock:
                    cert = await self.fetch()
                    self._install(cert)
                return cert
            except (CertificateFetchError, OSError) as e:
                wait = min(delay, self._backoff_max) * random.uniform(0.8, 1.2)
                log.warning("getting a workload certificate failed (%s); retrying in %.1fs", e, wait)
                await asyncio.sleep(wait)
                delay = min(delay * 2, self._backoff_max)

    async def start(self) -> WorkloadCert:
        """Get the first certificate (retrying until it succeeds), then rotate in the background."""
        cert = self._current or await self._fetch_with_retry()
        if self._task is None:
            self._task = asyncio.create_task(self._rotation_loop(), name="workload-cert-rotation")
        return cert

    async def _rotation_loop(self) -> None:
        while not self._stopping:
            cur = self._current
            assert cur is not None
            wait = (cur.refresh_at(self.rotation_fraction) - self._clock()).total_seconds()
            if wait > 0:
                self._wake.clear()
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that races
                # with the event being set, and stop() would then wait forever.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                if self._wake.is_set():
                    continue  # rotated out of band; plan again
            await self._fetch_with_retry()

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
