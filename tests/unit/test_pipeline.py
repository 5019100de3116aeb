"""The push pipeline: debouncing source events into MeshStates and classifying what
changed (full push, EDS-only for some hosts, or nothing a proxy could see)."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from istiod_py.config.loader import load_text
from istiod_py.model import MeshState
from istiod_py.registry.aggregate import Aggregator, SourceSnapshot
from istiod_py.xds.connection import PushRequest
from istiod_py.xds.pipeline import PushPipeline, classify
from tests.unit.xds_client import FILES, ROUTING, WORKLOADS

pytestmark = pytest.mark.timeout(10)

REVIEWS = "reviews.default.svc.cluster.local"
RATINGS = "ratings.default.svc.cluster.local"


def snapshot(**overrides: str) -> SourceSnapshot:
    files = {**FILES, **overrides}
    configs, services, slices = [], [], []
    for name, text in files.items():
        r = load_text(text, name)
        assert r.errors == [], r.errors
        configs += r.configs
        services += r.services
        slices += r.endpoint_slices
    return SourceSnapshot(tuple(configs), tuple(services), tuple(slices))


def state(**overrides: str) -> MeshState:
    agg = Aggregator()
    agg.set_source("files", snapshot(**overrides))
    return agg.build()


MOVED = WORKLOADS.replace("127.0.0.12", "127.0.0.22")
EXTRA_RATINGS = WORKLOADS + (
    "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n"
    "metadata: {name: ratings-v2, namespace: default}\n"
    "spec: {address: 127.0.0.14, labels: {app: ratings, version: v2}}\n"
)


def test_identical_content_is_no_change() -> None:
    change = classify(state(), state())
    assert not change.full and not change.eds_hosts


def test_workload_entry_address_change_is_endpoint_only() -> None:
    change = classify(state(), state(**{"workloads.yaml": MOVED}))
    assert not change.full
    assert change.eds_hosts == {REVIEWS}
    # the proxies at the old and new address may have inbound changes
    assert change.addresses == {"127.0.0.11", "127.0.0.12", "127.0.0.22"}


def test_added_workload_entry_is_endpoint_only_for_its_host() -> None:
    change = classify(state(), state(**{"workloads.yaml": EXTRA_RATINGS}))
    assert not change.full
    assert change.eds_hosts == {RATINGS}


def test_unselected_workload_entry_is_no_change() -> None:
    stray = WORKLOADS + (
        "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n"
        "metadata: {name: stray, namespace: default}\n"
        "spec: {address: 127.0.0.99, labels: {app: nobody}}\n"
    )
    change = classify(state(), state(**{"workloads.yaml": stray}))
    assert not change.full and not change.eds_hosts


def test_routing_config_change_is_full() -> None:
    change = classify(state(), state(**{"routing.yaml": ROUTING.replace("weight: 80", "weight: 79")}))
    assert change.full and change.reason == "config"


def test_routing_and_endpoint_change_together_is_full() -> None:
    new = state(**{"routing.yaml": ROUTING.replace("weight: 80", "weight: 79"), "workloads.yaml": MOVED})
    assert classify(state(), new).full


def test_merge_keeps_newest_state_and_unions_hosts() -> None:
    a, b = state(), state(**{"workloads.yaml": MOVED})
    object.__setattr__(b, "version", a.version + 1)
    r1 = PushRequest(a, False, frozenset({REVIEWS}), "endpoints", frozenset({"127.0.0.12"}), start=5.0)
    r2 = PushRequest(b, False, frozenset({RATINGS}), "endpoints", frozenset({"127.0.0.14"}), start=7.0)
    m = r1.merge(r2)
    assert m.state is b and not m.full
    assert m.eds_hosts == {REVIEWS, RATINGS}
    assert m.addresses == {"127.0.0.12", "127.0.0.14"}
    assert m.start == 5.0
    full = m.merge(PushRequest(a, True, reason="config"))
    assert full.full and full.state is b and full.reason == "config,endpoints"


async def test_debounce_merges_a_burst_into_one_push() -> None:
    pushes: list[PushRequest] = []
    agg = Aggregator()
    agg.set_source("files", snapshot())
    pipe = PushPipeline(agg, pushes.append, quiet=0.05, max_delay=5.0)
    first = pipe.state.version
    for text in (MOVED, EXTRA_RATINGS, MOVED + EXTRA_RATINGS.split(WORKLOADS, 1)[1]):
        pipe.source_changed("files", snapshot(**{"workloads.yaml": text}))
        await asyncio.sleep(0.01)
    await asyncio.wait_for(pipe.idle.wait(), 2)
    assert len(pushes) == 1
    push = pushes[0]
    assert not push.full and push.eds_hosts == {REVIEWS, RATINGS}
    assert push.state.version > first and pipe.current() is push.state
    assert pipe.history[-1]["full"] is False


async def test_steady_events_still_push_after_max_delay() -> None:
    loop = asyncio.get_running_loop()
    pushed_at: list[float] = []
    agg = Aggregator()
    agg.set_source("files", snapshot())
    pipe = PushPipeline(agg, lambda _: pushed_at.append(loop.time()), quiet=0.2, max_delay=0.3, eds_max_delay=60)
    began = loop.time()
    i = 0
    while loop.time() < began + 0.7:  # an event every 50 ms never leaves a 200 ms quiet period
        moved = WORKLOADS.replace("127.0.0.12", f"127.0.3.{i}")
        pipe.source_changed("files", snapshot(**{"workloads.yaml": moved}))
        i += 1
        await asyncio.sleep(0.05)
    assert pushed_at, "max_delay must bound the wait under a steady stream of events"
    assert pushed_at[0] - began < 0.45


async def test_steady_endpoint_churn_pushes_within_the_eds_max_delay() -> None:
    """Endpoint-only events every 50 ms never leave the quiet period; they are
    pushed (EDS only) every eds_max_delay, not held for the 5 s maximum."""
    loop = asyncio.get_running_loop()
    pushes: list[tuple[float, PushRequest]] = []
    agg = Aggregator()
    agg.set_source("files", snapshot())
    pipe = PushPipeline(agg, lambda r: pushes.append((loop.time(), r)), quiet=0.2, max_delay=5.0, eds_max_delay=0.15)
    began = loop.time()
    i = 0
    while loop.time() < began + 1.0:
        pipe.source_changed("files", snapshot(**{"workloads.yaml": WORKLOADS.replace("127.0.0.12", f"127.0.3.{i}")}))
        i += 1
        await asyncio.sleep(0.05)
    assert len(pushes) >= 4, [round(t - began, 3) for t, _ in pushes]
    assert pushes[0][0] - began < 0.3
    assert all(not r.full and r.eds_hosts == {REVIEWS} for _, r in pushes)
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(pushes)]
    assert max(gaps) < 0.35, gaps


async def test_steady_config_changes_wait_for_quiet_or_the_max_delay() -> None:
    """The early endpoint push does not apply to config changes: a VirtualService
    edited every 50 ms is pushed once, at the maximum delay."""
    loop = asyncio.get_running_loop()
    pushes: list[tuple[float, PushRequest]] = []
    agg = Aggregator()
    agg.set_source("files", snapshot())
    pipe = PushPipeline(agg, lambda r: pushes.append((loop.time(), r)), quiet=0.2, max_delay=0.6, eds_max_delay=0.1)
    began = loop.time()
    i = 0
    while loop.time() < began + 0.9:
        weights = ROUTING.replace("weight: 80", f"weight: {79 - i % 2}").replace("weight: 20", f"weight: {21 + i % 2}")
        pipe.source_changed("files", snapshot(**{"routing.yaml": weights}))
        i += 1
        await asyncio.sleep(0.05)
    times = [round(t - began, 3) for t, _ in pushes]
    assert len(pushes) == 1 and pushes[0][1].full, times
    assert 0.55 < times[0] < 0.8, times


async def test_no_visible_change_pushes_nothing() -> None:
    pushes: list[PushRequest] = []
    agg = Aggregator()
    agg.set_source("files", snapshot())
    pipe = PushPipeline(agg, pushes.append, quiet=0.01)
    pipe.source_changed("files", snapshot())
    await asyncio.wait_for(pipe.idle.wait(), 2)
    assert pushes == []


def test_endpoint_changes_rebuild_only_their_hosts_and_match_a_fresh_translation() -> None:
    """After an endpoint-only change the translator patches the EDS it built for
    the previous state; the result must be what translating the new state from
    scratch gives, for every cluster."""
    from istiod_py.model import parse_proxy
    from istiod_py.translate.generate import Translator
    from istiod_py.xds.types import TypeUrl

    proxy = parse_proxy(
        "sidecar~127.0.0.10~productpage-v1.default~default.svc.cluster.local",
        {"NAMESPACE": "default", "INTERCEPTION_MODE": "NONE", "LABELS": {"app": "productpage"}},
    )
    agg = Aggregator()
    agg.set_source("files", snapshot())
    s1 = agg.build()
    incremental = Translator()
    before = incremental.generate(s1, proxy, TypeUrl.ENDPOINT)
    for i, text in enumerate((MOVED, MOVED + EXTRA_RATINGS.split(WORKLOADS, 1)[1], WORKLOADS)):
        agg.set_source("files", snapshot(**{"workloads.yaml": text}))
        s2 = agg.build()
        assert not classify(s1, s2).full
        patched = incremental.generate(s2, proxy, TypeUrl.ENDPOINT)
        if i == 0:  # an address move: same clusters, so the previous EDS is patched
            ctx = incremental.context(s2)
            assert any(isinstance(k, tuple) and k[0] == "eds-prev" for k in ctx.memo), "the patch path was not taken"
        fresh = Translator().generate(s2, proxy, TypeUrl.ENDPOINT)
        assert {n: b.version for n, b in patched.index.items()} == {n: b.version for n, b in fresh.index.items()}
        changed = {n for n, b in patched.index.items() if before.index[n].version != b.version}
        assert changed and all(n.endswith(("reviews.default.svc.cluster.local", RATINGS)) for n in changed), changed
        s1, before = s2, patched
