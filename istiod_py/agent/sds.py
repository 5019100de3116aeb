"""Local SDS server (pilot-agent's role): serves `default` and `ROOTCA` to Envoy over a unix socket.

Envoy opens one stream per SDS secret config. For each stream we track what was last sent and
the nonce; a new certificate pushes a new version to every stream that subscribes to a secret
whose content changed. ACKs are recorded, NACKs logged and not retried with the same content.

Gateways also ask for file-mounted credentials by name, as istiod names them
(`translate/gateway/credentials.py`): `file-cert:<cert>~<key>` (tls_certificate from the two
PEM files) and `file-root:<ca>` (validation_context trusted_ca). `FileSecrets` reads
those files on the agent's host when a name is first requested, polls them (mtime,
size, inode; 1 s by default) and pushes a new version when their content changes.
A file that is missing, unreadable or not a matching certificate/key pair is never
sent: the last good secret stays (or, before the first good read, nothing is sent and
Envoy keeps the listener warming), and the error is logged once until it changes.
Only PEM that parses is served, so a name cannot make the agent hand an arbitrary
file to Envoy.
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
from cryptography import x509
from cryptography.hazmat.primitives import serialization
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
FILE_CERT_PREFIX = "file-cert:"  # same as istiod_py.translate.gateway.credentials
FILE_ROOT_PREFIX = "file-root:"
DEFAULT_FILE_POLL_INTERVAL = 1.0


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


# -- file-mounted credentials ----------------------------------------------------------------


def is_file_secret(name: str) -> bool:
    return name.startswith((FILE_CERT_PREFIX, FILE_ROOT_PREFIX))


def file_secret_paths(name: str) -> tuple[Path, ...] | None:
    """`file-cert:CERT~KEY` -> (CERT, KEY); `file-root:CA` -> (CA,); None if malformed."""
    if name.startswith(FILE_CERT_PREFIX):
        parts = name[len(FILE_CERT_PREFIX) :].split("~")
        if len(parts) != 2 or not all(parts):
            return None
        return Path(parts[0]), Path(parts[1])
    if name.startswith(FILE_ROOT_PREFIX):
        ca = name[len(FILE_ROOT_PREFIX) :]
        return (Path(ca),) if ca else None
    return None


class FileSecretError(Exception):
    """A file-mounted credential cannot be served (missing, unreadable, not valid PEM, key mismatch)."""


def build_file_secret(name: str, contents: tuple[bytes, ...]) -> Any:
    """The Envoy Secret for a file-mounted credential from the files' bytes; raises
    FileSecretError unless they are a certificate chain with its private key
    (`file-cert:`) or a CA bundle (`file-root:`)."""
    if name.startswith(FILE_CERT_PREFIX):
        cert_pem, key_pem = contents
        try:
            chain = x509.load_pem_x509_certificates(cert_pem)
        except ValueError as e:
            raise FileSecretError(f"certificate file holds no valid PEM certificate: {e}") from None
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as e:
            raise FileSecretError(f"private key file holds no valid unencrypted PEM key: {e}") from None
        if chain[0].public_key() != key.public_key():
            raise FileSecretError("the private key does not match the certificate (files being rewritten?)")
        return secret_pb2.Secret(
            name=name,
            tls_certificate=common_pb2.TlsCertificate(certificate_chain=_ds(cert_pem), private_key=_ds(key_pem)),
        )
    (ca_pem,) = contents
    try:
        x509.load_pem_x509_certificates(ca_pem)
    except ValueError as e:
        raise FileSecretError(f"CA file holds no valid PEM certificate: {e}") from None
    return secret_pb2.Secret(
        name=name, validation_context=common_pb2.CertificateValidationContext(trusted_ca=_ds(ca_pem))
    )


_Stamp = tuple[tuple[int, int, int, int], ...]  # per file: inode, size, mtime_ns, ctime_ns


@dataclass(eq=False)
class _FileEntry:
    paths: tuple[Path, ...]
    stamp: _Stamp | None = None  # of the files behind `secret`
    secret: Any = None  # last good Secret, or None
    error: str = ""  # last error logged (logged again only when it changes)


class FileSecrets:
    """File-mounted credentials (`file-cert:`/`file-root:` names), read on first request
    and re-read when the files change. `on_change` is called after a watched secret got
    new content (the SDS server then wakes its streams)."""

    def __init__(self, on_change: Callable[[], None], poll_interval: float = DEFAULT_FILE_POLL_INTERVAL) -> None:
        self._on_change = on_change
        self.poll_interval = poll_interval
        self._entries: dict[str, _FileEntry] = {}

    @property
    def watched(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> Any:
        """The last good Secret for `name` (watching it from now on), or None if it
        cannot be served (yet)."""
        entry = self._entries.get(name)
        if entry is None:
            paths = file_secret_paths(name)
            if paths is None:
                return None
            entry = self._entries[name] = _FileEntry(paths)
            log.info("SDS: watching %s", name)
            self._refresh(name, entry)
        return entry.secret

    def retain(self, names: set[str]) -> None:
        """Stop watching names no stream subscribes to any more."""
        for name in [n for n in self._entries if n not in names]:
            del self._entries[name]
            log.info("SDS: no longer watching %s", name)

    def poll(self) -> bool:
        """Re-read the watched files that changed; True if any secret got new content."""
        changed = False
        for name, entry in list(self._entries.items()):
            changed |= self._refresh(name, entry)
        if changed:
            self._on_change()
        return changed

    def _refresh(self, name: str, entry: _FileEntry) -> bool:
        try:
            stamp = tuple(_stamp(p) for p in entry.paths)
            if stamp == entry.stamp:
                return False
            secret = build_file_secret(name, tuple(p.read_bytes() for p in entry.paths))
        except (OSError, FileSecretError) as e:
            # Not sent; the last good secret (if any) stays. Retried at every poll.
            msg = f"{type(e).__name__}: {e}" if isinstance(e, OSError) else str(e)
            if msg != entry.error:
                entry.error = msg
                keeping = "keeping the last good version" if entry.secret is not None else "not serving it yet"
                log.warning("SDS: cannot serve %s (%s); %s", name, msg, keeping)
            return False
        entry.stamp = stamp
        entry.error = ""
        if entry.secret is not None and _content_version(secret) == _content_version(entry.secret):
            return False
        first = entry.secret is None
        entry.secret = secret
        log.info("SDS: %s %s (version %s)", "loaded" if first else "reloaded", name, _content_version(secret))
        return True


def _stamp(path: Path) -> tuple[int, int, int, int]:
    st = path.stat()
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


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

    def __init__(self, source: CertSource, *, file_poll_interval: float = DEFAULT_FILE_POLL_INTERVAL) -> None:
        self._source = source
        self._streams: set[_StreamState] = set()
        self._nonces = itertools.count(1)
        self._server: Any = None
        self._socket_path: Path | None = None
        self._files = FileSecrets(self._wake_all, file_poll_interval)
        self._file_watch: asyncio.Task[None] | None = None
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
        self._file_watch = asyncio.create_task(self._watch_files(), name="sds-file-credentials")
        log.info("SDS listening on unix:%s", path)

    async def stop(self, grace: float = 1.0) -> None:
        self._unsubscribe()
        if self._file_watch is not None:
            self._file_watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._file_watch
            self._file_watch = None
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
        if self._socket_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._socket_path.unlink()

    def _on_new_cert(self, cert: WorkloadCert) -> None:
        self._wake_all()

    def _wake_all(self) -> None:
        for st in self._streams:
            st.wake.set()

    async def _watch_files(self) -> None:
        """Poll the file-mounted credentials streams subscribe to; a change wakes the streams."""
        while True:
            await asyncio.sleep(self._files.poll_interval)
            try:
                self._files.retain(set().union(*(st.names for st in self._streams)))
                self._files.poll()
            except Exception:  # keep watching, whatever one file does
                log.exception("SDS: polling file credentials failed")

    @property
    def file_secrets(self) -> FileSecrets:
        return self._files

    def _secrets(self, names: set[str] | list[str]) -> tuple[dict[str, Any], list[str]]:
        """The secrets we can serve now among `names` (sorted), and the servable names
        not ready yet (no workload certificate yet, file credential not readable yet)."""
        cert = self._source.current
        out: dict[str, Any] = {}
        pending: list[str] = []
        for n in sorted(names):
            if is_file_secret(n):
                secret = self._files.get(n)
            elif n in (WORKLOAD_SECRET, ROOT_SECRET):
                secret = build_secret(n, cert) if cert is not None else None
            else:
                continue  # not ours: logged when subscribed
            if secret is None:
                pending.append(n)
            else:
                out[n] = secret
        return out, pending

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
            unknown = {n for n in names - {WORKLOAD_SECRET, ROOT_SECRET} if file_secret_paths(n) is None}
            if unknown:
                log.warning("SDS %s asked for secrets we do not serve: %s", st.peer, sorted(unknown))
            st.names = names
            return True
        return not req.response_nonce  # an initial request (e.g. after reconnect) gets an answer

    def _sotw_response(self, st: _StreamState, force: bool) -> Any:
        secrets, pending = self._secrets(st.names)
        if not secrets and pending:
            # Not ready: answer when the first certificate arrives, or the files can be read
            # (as Istio's agent). Envoy keeps the listener warming meanwhile.
            return None
        versions = {n: _content_version(s) for n, s in secrets.items()}
        if not force and versions == st.sent_versions:
            return None
        if not secrets and not force:
            return None
        st.sent_versions = versions
        st.nonce = self._next_nonce()
        cert = self._source.current
        if WORKLOAD_SECRET in secrets and cert is not None:
            version_info = cert.version
        else:
            version_info = next(iter(versions.values()), "")
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
        secrets, _ = self._secrets(st.names)
        resources = []
        for name, secret in secrets.items():
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
        cert = self._source.current
        return discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=cert.version if cert is not None else resources[0].version,
            resources=resources,
            type_url=SECRET_TYPE_URL,
            nonce=st.nonce,
        )

    # -- unary ------------------------------------------------------------------------------

    async def FetchSecrets(self, request: Any, context: Any) -> Any:
        names = list(request.resource_names)
        secrets, pending = self._secrets(names)
        if pending:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"not available yet: {', '.join(pending)}")
        resources = []
        for secret in secrets.values():
            a = any_pb2.Any()
            a.Pack(secret)
            resources.append(a)
        cert = self._source.current
        version = cert.version if cert is not None else ",".join(_content_version(s) for s in secrets.values())
        return discovery_pb2.DiscoveryResponse(
            version_info=version, resources=resources, type_url=SECRET_TYPE_URL, nonce=self._next_nonce()
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
