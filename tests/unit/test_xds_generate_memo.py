"""XdsServer.generate answers a repeated (state, proxy, type) from its memo (a
reconnect storm asks the same thing thousands of times), and asks the translator
again whenever the answer could differ: another state, another Proxy object
(even with the same node id), SDS (reads Kubernetes Secrets, not only the state)."""

from __future__ import annotations

from collections import Counter

from istiod_py.cache.resources import Resources, resources_of
from istiod_py.model import MeshState, Proxy, parse_proxy
from istiod_py.xds.server import XdsServer
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
    assert calls == {(1, id(proxy), TypeUrl.CLUSTER): 1, (1, id(proxy), TypeUrl.LISTENER): 1}


def test_a_new_state_or_proxy_object_is_translated_again() -> None:
    xds, calls, states = _server()
    proxy = parse_proxy(NODE, {})
    twin = parse_proxy(NODE, {"LABELS": {"app": "other"}})  # equal as a dataclass, other labels
    xds.generate(states[0], proxy, TypeUrl.CLUSTER)
    xds.generate(states[0], twin, TypeUrl.CLUSTER)
    states.append(MeshState(2, {}, {}, {}))
    xds.generate(states[1], proxy, TypeUrl.CLUSTER)
    xds.generate(states[1], proxy, TypeUrl.CLUSTER)
    assert calls == {
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
    assert len(xds._gen_memo) <= 8 * 1000 + 1
