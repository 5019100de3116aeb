"""Local SDS server (pilot-agent's role): serves `default` and `ROOTCA` to Envoy over a unix socket.

Envoy opens one stream per SDS secret config. For each stream we track what was last sent and
the nonce; a new certificate pushes a new version to every stream that subscribes to a secret
whose content changed. ACKs are recorded, NACKs logged and not retried with the same content.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc
from google.protobuf import any_pb2

from istiod_py.agent.certs import WorkloadCert

log = logging.getLogger(__name__)

SECRET_TYPE_URL = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
WORKLOAD_SECRET = "default"
ROOT_SECRET = "ROOTCA"


class CertSource(Protocol):
    """What the SDS server needs from the certificate manager."""

    @property
    def current(self) -> WorkloadCert | None: ...

    def subscribe(self, listener: Callable[[WorkloadCert], None]) -> Callable[[], None]: ...


def build_secret(name: str, cert: WorkloadCert) -> Any:
    """The Envoy Secret for `name`, or None if we do not serve that name."""
    if name == WORKLOAD_SECRET:
        return secret_pb2.Secret(
            name=name,
            tls_certificate=common_pb2.TlsCertificate(
                certificate_chain=_ds(cert.cert_chain_pem), private_key=_ds(cert.private_key_pem)
            ),
        )
    if name == ROOT_SECRET:
        return secret_pb2.Secret(
            name=name,
            validation_context=common_pb2.CertificateValidationContext(trusted_ca=_ds(cert.root_pem)),
        )
    return None


def _ds(data: bytes) -> Any:
    return base_pb2.DataSource(inline_bytes=data)


def _content_version(secret: Any) -> str:
    return hashlib.sha256(secret.SerializeToString(deterministic=True)).hexdigest()[:16]


@dataclass(eq=False)  # identity-hashed: streams live in a set
class _StreamState:
    peer: str
    names: set[str] = field(default_factory=set)
    sent_versions: dict[str, str] = field(default_factory=dict)  # name -> content version sent
    nonce: str = ""
    acked_version: str = ""
    last_nack: str = ""
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class SDSServer(sds_pb2_grpc.SecretDiscoveryServiceServicer):  # type: ignore[misc]
    """SecretDiscoveryService: StreamSecrets (SotW), DeltaSecrets and FetchSecrets."""

    def __init__(self, source: CertSource) -> None:
        self._source = source
        self._streams: set[_StreamState] = set()
        self._nonces = itertools.count(1)
        self._server: Any = None
        self._socket_path: Path | None = None
        self._unsubscribe = source.subscribe(self._on_new_cert)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, socket_path: str | os.PathLike[str]) -> None:
        """Listen on a unix socket (a stale socket file from a previous run is removed)."""
        path = Path(socket_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._server = grpc.aio.server()
        sds_pb2_grpc.add_SecretDiscoveryServiceServicer_to_server(self, self._server)
        self._server.add_insecure_port(f"unix:{path}")
        await self._server.start()
        # The socket hands out the private key: only our user may connect.
        os.chmod(path, 0o600)
        self._socket_path = path
        log.info("SDS listening on unix:%s", path)

    async def stop(self, grace: float = 1.0) -> None:
        self._unsubscribe()
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
        if self._socket_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._socket_path.unlink()

    def _on_new_cert(self, cert: WorkloadCert) -> None:
        for st in self._streams:
            st.wake.set()

    @property
    def stream_count(self) -> int:
        return len(self._streams)

    def stream_status(self) -> list[dict[str, Any]]:
        """Per-stream protocol state, for debug endpoints and tests."""
        return [
            {
                "peer": st.peer,
                "names": sorted(st.names),
                "nonce": st.nonce,
                "acked_version": st.acked_version,
                "last_nack": st.last_nack,
            }
            for st in self._streams
        ]

    def _next_nonce(self) -> str:
        return str(next(self._nonces))

    # -- SotW -------------------------------------------------------------------------------

    async def StreamSecrets(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        st = _StreamState(peer=str(context.peer()))
        self._streams.add(st)
        requests: asyncio.Queue[Any] = asyncio.Queue()
        reader = asyncio.create_task(_pump(request_iterator, requests, st.wake))
        try:
            while True:
                await st.wake.wait()
                st.wake.clear()
                changed_subscription = False
                while not requests.empty():
                    req = requests.get_nowait()
                    if req is None:
                        return
                    changed_subscription |= self._handle_sotw_request(st, req)
                resp = self._sotw_response(st, force=changed_subscription)
                if resp is not None:
                    yield resp
        finally:
            reader.cancel()
            self._streams.discard(st)

    def _handle_sotw_request(self, st: _StreamState, req: Any) -> bool:
        """Apply one request; True if the subscription changed (which warrants a response)."""
        if req.type_url and req.type_url != SECRET_TYPE_URL:
            log.warning("SDS %s: ignoring request for type %s", st.peer, req.type_url)
            return False
        if req.response_nonce:
            if req.response_nonce != st.nonce:
                return False  # stale: a newer response is in flight; wait for its ACK/NACK
            if req.HasField("error_detail"):
                st.last_nack = req.error_detail.message
                log.warning("SDS %s NACKed version %s: %s", st.peer, st.nonce, req.error_detail.message)
            else:
                st.acked_version = req.version_info
        names = set(req.resource_names)
        if names != st.names:
            unknown = names - {WORKLOAD_SECRET, ROOT_SECRET}
            if unknown:
                log.warning("SDS %s asked for secrets we do not serve: %s", st.peer, sorted(unknown))
            st.names = names
            return True
        return not req.response_nonce  # an initial request (e.g. after reconnect) gets an answer

    def _sotw_response(self, st: _StreamState, force: bool) -> Any:
        cert = self._source.current
        if cert is None:
            return None  # not ready: answer when the first certificate arrives (as Istio's agent)
        secrets = {n: s for n in sorted(st.names) if (s := build_secret(n, cert)) is not None}
        versions = {n: _content_version(s) for n, s in secrets.items()}
        if not force and versions == st.sent_versions:
            return None
        if not secrets and not force:
            return None
        st.sent_versions = versions
        st.nonce = self._next_nonce()
        version_info = cert.version if WORKLOAD_SECRET in secrets else next(iter(versions.values()), "")
        resources = []
        for s in secrets.values():
            a = any_pb2.Any()
            a.Pack(s)
            resources.append(a)
        return discovery_pb2.DiscoveryResponse(
            version_info=version_info, resources=resources, type_url=SECRET_TYPE_URL, nonce=st.nonce
        )

    # -- Delta ------------------------------------------------------------------------------

    async def DeltaSecrets(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        st = _StreamState(peer=str(context.peer()))
        self._streams.add(st)
        requests: asyncio.Queue[Any] = asyncio.Queue()
        reader = asyncio.create_task(_pump(request_iterator, requests, st.wake))
        try:
            while True:
                await st.wake.wait()
                st.wake.clear()
                while not requests.empty():
                    req = requests.get_nowait()
                    if req is None:
                        return
                    self._handle_delta_request(st, req)
                resp = self._delta_response(st)
                if resp is not None:
                    yield resp
        finally:
            reader.cancel()
            self._streams.discard(st)

    def _handle_delta_request(self, st: _StreamState, req: Any) -> None:
        if req.response_nonce and req.response_nonce == st.nonce and req.HasField("error_detail"):
            st.last_nack = req.error_detail.message
            log.warning("SDS (delta) %s NACKed nonce %s: %s", st.peer, st.nonce, st.last_nack)
        for name, version in req.initial_resource_versions.items():
            st.names.add(name)
            st.sent_versions[name] = version  # the client already has this; resend only if it differs
        st.names.update(req.resource_names_subscribe)
        for name in req.resource_names_unsubscribe:
            st.names.discard(name)
            st.sent_versions.pop(name, None)

    def _delta_response(self, st: _StreamState) -> Any:
        cert = self._source.current
        if cert is None:
            return None
        resources = []
        for name in sorted(st.names):
            secret = build_secret(name, cert)
            if secret is None:
                continue
            version = _content_version(secret)
            if st.sent_versions.get(name) == version:
                continue
            st.sent_versions[name] = version
            a = any_pb2.Any()
            a.Pack(secret)
            resources.append(discovery_pb2.Resource(name=name, version=version, resource=a))
        if not resources:
            return None
        st.nonce = self._next_nonce()
        return discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=cert.version, resources=resources, type_url=SECRET_TYPE_URL, nonce=st.nonce
        )

    # -- unary ------------------------------------------------------------------------------

    async def FetchSecrets(self, request: Any, context: Any) -> Any:
        cert = self._source.current
        if cert is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "no workload certificate yet")
        assert cert is not None
        resources = []
        for name in request.resource_names:
            secret = build_secret(name, cert)
            if secret is not None:
                a = any_pb2.Any()
                a.Pack(secret)
                resources.append(a)
        return discovery_pb2.DiscoveryResponse(
            version_info=cert.version, resources=resources, type_url=SECRET_TYPE_URL, nonce=self._next_nonce()
        )


async def _pump(request_iterator: Any, queue: asyncio.Queue[Any], wake: asyncio.Event) -> None:
    """Move client requests onto the queue; None marks the end of the stream."""
    try:
        async for req in request_iterator:
            queue.put_nowait(req)
            wake.set()
    except (asyncio.CancelledError, grpc.aio.AioRpcError):
        pass
    finally:
        queue.put_nowait(None)
        wake.set()
