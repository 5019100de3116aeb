"""XdsServer.generate answers a repeated (state, proxy, type) from its memo (a
reconnect storm asks the same thing thousands of times), and asks the translator
again whenever the answer could differ: another state, another Proxy object
(even with the same node id), SDS (reads Kubernetes Secrets, not only the state).
A proxy's clusters bring its endpoints, listeners and routes into the memo too
(Envoy asks for them next; translated together they are cheaper)."""

from __future__ import annotations

from collections import Counter

import pytest

from istiod_py.cache.resources import Resources, resources_of
from istiod_py.model import MeshState, Proxy, parse_proxy
from istiod_py.xds.server import PREFETCH_AFTER_CDS, XdsServer
from istiod_py.xds.stream import StreamError
from istiod_py.xds.types import TypeUrl

NODE = "sidecar~10.0.0.1~a-1.ns~ns.svc.cluster.local"


def _server() -> tuple[XdsServer, Counter[tuple[int, int, str]], list[MeshState]]:
    calls: Counter[tuple[int, int, str]] = Counter()
    states = [MeshState(1, {}, {}, {})]

    def generate(state: MeshState, proxy: Proxy, type_url: str) -> Resources:
        calls[(state.version, id(proxy), type_url)] += 1
        return resources_of()

    return XdsServer(generate, lambda: states[-1]), calls, states


def test_a_repeated_question_is_translated_once() -> None:
    xds, calls, states = _server()
    proxy = parse_proxy(NODE, {})
    first = xds.generate(states[0], proxy, TypeUrl.CLUSTER)
    assert xds.generate(states[0], proxy, TypeUrl.CLUSTER) is first
    assert xds.generate(states[0], proxy, TypeUrl.LISTENER) is not None
    assert xds.generate(states[0], proxy, TypeUrl.ROUTE) is not None
    # CDS brought the other three (prefetch): each type translated once in all.
    assert calls == {(1, id(proxy), t): 1 for t in (TypeUrl.CLUSTER, *PREFETCH_AFTER_CDS)}


def test_clusters_bring_the_other_types_and_only_clusters_do() -> None:
    xds, calls, states = _server()
    proxy = parse_proxy(NODE, {})
    xds.generate(states[0], proxy, TypeUrl.LISTENER)  # proxyless gRPC asks for listeners first
    assert calls == {(1, id(proxy), TypeUrl.LISTENER): 1}
    xds.generate(states[0], proxy, TypeUrl.CLUSTER)
    assert calls == {(1, id(proxy), t): 1 for t in (TypeUrl.CLUSTER, *PREFETCH_AFTER_CDS)}


def test_a_failed_prefetch_is_left_to_the_request_that_asks() -> None:
    states = [MeshState(1, {}, {}, {})]

    def generate(state: MeshState, proxy: Proxy, type_url: str) -> Resources:
        if type_url == TypeUrl.LISTENER:
            raise ValueError("broken listener")
        return resources_of()

    xds = XdsServer(generate, lambda: states[-1])
    proxy = parse_proxy(NODE, {})
    assert xds.generate(states[0], proxy, TypeUrl.CLUSTER) is not None  # CDS itself is answered
    with pytest.raises(StreamError, match="broken listener"):
        xds.generate(states[0], proxy, TypeUrl.LISTENER)


def test_a_new_state_or_proxy_object_is_translated_again() -> None:
    xds, calls, states = _server()
    proxy = parse_proxy(NODE, {})
    twin = parse_proxy(NODE, {"LABELS": {"app": "other"}})  # equal as a dataclass, other labels
    xds.generate(states[0], proxy, TypeUrl.CLUSTER)
    xds.generate(states[0], twin, TypeUrl.CLUSTER)
    states.append(MeshState(2, {}, {}, {}))
    xds.generate(states[1], proxy, TypeUrl.CLUSTER)
    xds.generate(states[1], proxy, TypeUrl.CLUSTER)
    assert {k: n for k, n in calls.items() if k[2] == TypeUrl.CLUSTER} == {
        (1, id(proxy), TypeUrl.CLUSTER): 1,
        (1, id(twin), TypeUrl.CLUSTER): 1,
        (2, id(proxy), TypeUrl.CLUSTER): 1,
    }


def test_secrets_are_always_translated() -> None:
    xds, calls, states = _server()
    proxy = parse_proxy(NODE, {})
    for _ in range(3):
        xds.generate(states[0], proxy, TypeUrl.SECRET)
    assert calls[(1, id(proxy), TypeUrl.SECRET)] == 3


def test_the_memo_is_bounded() -> None:
    xds, _calls, states = _server()
    proxies = [parse_proxy(f"sidecar~10.0.{i // 250}.{i % 250}~p{i}.ns~ns.svc.cluster.local", {}) for i in range(9001)]
    for p in proxies:
        xds.generate(states[0], p, TypeUrl.CLUSTER)
    # the cap, plus one proxy's four types (the clusters and what they prefetch)
    assert len(xds._gen_memo) <= 8 * 1000 + 4
