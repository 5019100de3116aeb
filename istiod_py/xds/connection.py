"""Per-stream xDS protocol state and the push request that drives a stream.

A connection owns nothing but protocol state: what each type's subscription is,
what was sent (version, nonce, per-resource versions), what was ACKed, and the
last NACK. Resources come from the translator; bytes come ready from the cache.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from istiod_py.model import MeshState, Proxy


@dataclass(frozen=True, slots=True)
class PushRequest:
    state: MeshState
    full: bool  # configs changed: every type may change
    eds_hosts: frozenset[str] = frozenset()  # endpoint-only: the hosts whose endpoints changed
    reason: str = ""
    addresses: frozenset[str] = frozenset()  # proxies at these addresses need a full push
    start: float = field(default_factory=time.monotonic)  # first event of this push

    def merge(self, other: PushRequest) -> PushRequest:
        newer = other if other.state.version >= self.state.version else self
        return PushRequest(
            state=newer.state,
            full=self.full or other.full,
            eds_hosts=self.eds_hosts | other.eds_hosts,
            addresses=self.addresses | other.addresses,
            reason=",".join(sorted({*self.reason.split(","), *other.reason.split(",")} - {""})),
            start=min(self.start, other.start),
        )


@dataclass(slots=True)
class Nack:
    version: str
    nonce: str
    message: str
    code: int
    names: tuple[str, ...]
    at: float
    # The Istio configs (Kind/ns/name[:field]) behind the rejected resources (quarantine.py).
    origins: tuple[str, ...] = ()
    # The proxy is served without those configs now (until they change).
    quarantined: bool = False


@dataclass(slots=True)
class Watch:
    type_url: str
    names: set[str] = field(default_factory=set)
    wildcard: bool = False
    explicit: bool = False  # ever asked for names explicitly (ends the legacy wildcard)
    nonce_sent: str = ""
    version_sent: str = ""
    version_acked: str = ""
    nonce_acked: str = ""
    last_nack: Nack | None = None
    # name -> version the client was sent (SotW) or holds (Delta)
    sent: dict[str, str] = field(default_factory=dict)
    sends: int = 0
    acks: int = 0
    nacks: int = 0
    sent_at: float = 0.0
    acked_at: float = 0.0
    # The state version the last send reflected (debug and convergence checks).
    state_version: int = 0
    # The Resources of the last send and of the last ACKed send (shared objects):
    # what the proxy holds, per resource version, for propagation status.
    sent_res: Any = None
    acked_res: Any = None

    def debug(self) -> dict[str, Any]:
        return {
            "subscribed": "*" if self.wildcard else sorted(self.names),
            "version_sent": self.version_sent,
            "nonce_sent": self.nonce_sent,
            "version_acked": self.version_acked,
            "nonce_acked": self.nonce_acked,
            "resources_sent": len(self.sent),
            "sends": self.sends,
            "acks": self.acks,
            "nacks": self.nacks,
            "state_version": self.state_version,
            "last_nack": None
            if self.last_nack is None
            else {
                "version": self.last_nack.version,
                "nonce": self.last_nack.nonce,
                "message": self.last_nack.message,
                "code": self.last_nack.code,
                "resource_names": list(self.last_nack.names),
                "origins": list(self.last_nack.origins),
                "quarantined": self.last_nack.quarantined,
                "at": self.last_nack.at,
            },
        }


@dataclass(slots=True)
class ConnectionInfo:
    conn_id: str
    proxy: Proxy
    delta: bool
    peer: str
    connected_at: float = field(default_factory=time.time)
    watches: dict[str, Watch] = field(default_factory=dict)
    pushes: int = 0
    last_push_state: int = 0
    bytes_sent: int = 0
