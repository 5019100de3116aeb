"""The leader's Rejected condition (kube/nack_status.py) without a cluster: which
configs get it, its message, coalescing of a NACK storm into one write per
resource, clearing, other conditions kept, and failures that never escape.
The real API server test is tests/kube/test_nack_status.py."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import pytest

from istiod_py.kube.client import KubeApiError
from istiod_py.kube.nack_status import NackStatus, blamed, ours, patched_conditions, rejections

LDS = "type.googleapis.com/envoy.config.listener.v3.Listener"
EF = "EnvoyFilter/default/lua"
VS = "VirtualService/default/web"


@dataclass
class FakeCase:
    proxy_id: str
    type_url: str = LDS
    rejected: tuple[str, ...] = ("0.0.0.0_9080",)
    message: str = "Error adding/updating listener(s) 0.0.0.0_9080: lua: syntax error"
    fields: dict[str, list[str]] = field(default_factory=lambda: {EF: ["configPatches[0]"]})
    suspects: list[str] = field(default_factory=lambda: [EF])
    phase: str = "quarantined"
    culprits: frozenset[str] = frozenset({EF})
    since: float = 0.0


class FakeClient:
    def __init__(self, stored: dict[tuple[str, str, str], tuple[str, str]]) -> None:
        self.stored = stored
        self.patches: list[tuple[str, Any]] = []
        self.fail: KubeApiError | Exception | None = None

    def patch(self, path: str, body: Any) -> dict[str, Any]:
        if self.fail is not None:
            raise self.fail
        self.patches.append((path, body))
        # What the informer sees next: the written conditions.
        kind = {"envoyfilters": "EnvoyFilter", "virtualservices": "VirtualService"}[path.split("/")[-3]]
        key = (kind, path.split("/")[-4], path.split("/")[-2])
        conds = body["status"]["conditions"]
        self.stored[key] = (self.stored[key][0], json.dumps(conds, sort_keys=True) if conds else "")
        return {}


class Clock:
    t = 100.0

    def __call__(self) -> float:
        return self.t


def writer(cases: list[FakeCase], stored: dict[Any, tuple[str, str]]) -> tuple[NackStatus, FakeClient, Clock]:
    client = FakeClient(stored)
    clock = Clock()
    w = NackStatus(client, lambda: cases, lambda: client.stored, quiet=1.0, max_delay=5.0, clock=clock)  # type: ignore[arg-type]
    return w, client, clock


def test_blamed_is_the_culprit_or_an_unambiguous_suspect() -> None:
    assert blamed(FakeCase("a")) == {EF}
    traced = FakeCase("a", phase="suspected", culprits=frozenset(), suspects=[EF, VS])
    assert blamed(traced) == {EF}  # an EnvoyFilter patch first: the one input not built by the translator
    ambiguous = FakeCase("a", phase="suspected", culprits=frozenset(), suspects=[VS, "Sidecar/default/s"])
    assert blamed(ambiguous) == frozenset()  # two generated inputs: nobody is written as guilty
    assert blamed(FakeCase("a", phase="suspected", culprits=frozenset(), suspects=[VS])) == {VS}
    assert blamed(FakeCase("a", phase="bisecting", culprits=frozenset(), suspects=[VS, EF])) == frozenset()


def test_message_names_proxies_type_resources_fields_and_envoys_error() -> None:
    r = rejections([FakeCase("a"), FakeCase("b", since=1.0)])[("EnvoyFilter", "default", "lua")]
    msg = r.condition_message()
    assert msg.startswith("rejected by 2 proxies (LDS 0.0.0.0_9080; configPatches[0]): Error adding/updating"), msg
    assert msg.endswith("quarantined: served without it until it changes"), msg
    one = rejections([FakeCase("a", message="x" * 5000)])[("EnvoyFilter", "default", "lua")].condition_message()
    assert one.startswith("rejected by 1 proxy (") and len(one) <= 1000


def test_a_storm_of_2000_nacks_is_one_write_per_resource_then_cleared() -> None:
    cases: list[FakeCase] = []
    stored = {("EnvoyFilter", "default", "lua"): ("v1alpha3", ""), ("VirtualService", "default", "web"): ("v1", "")}
    w, client, clock = writer(cases, stored)
    for i in range(2000):  # 200 proxies NACK per 0.3 s round, for 3 s
        cases.append(FakeCase(f"sidecar~10.0.{i // 250}.{i % 250}~p{i}.default~default.svc.cluster.local", since=i))
        if i % 200 == 199:
            w.sync()
            clock.t += 0.3
    assert client.patches == []  # still changing: not written yet
    for _ in range(10):
        w.sync()
        clock.t += 0.3
    [(path, body)] = client.patches
    assert path == "/apis/networking.istio.io/v1alpha3/namespaces/default/envoyfilters/lua/status"
    [cond] = body["status"]["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == ("Reconciled", "False", "Rejected")
    assert cond["message"].startswith("rejected by 2000 proxies (LDS 0.0.0.0_9080; configPatches[0]):")
    assert cond["lastTransitionTime"]
    # Rounds with nothing new write nothing.
    for _ in range(10):
        w.sync()
        clock.t += 0.5
    assert len(client.patches) == 1

    cases.clear()  # the filter was fixed: every quarantine lifted
    for _ in range(5):
        w.sync()
        clock.t += 0.5
    assert len(client.patches) == 2
    assert client.patches[1][1] == {"status": {"conditions": None}}
    assert w.writes == 2


def test_a_steady_trickle_is_written_by_max_delay() -> None:
    cases: list[FakeCase] = []
    w, client, clock = writer(cases, {("EnvoyFilter", "default", "lua"): ("v1alpha3", "")})
    for i in range(30):  # a new proxy every 0.5 s: never quiet for 1 s
        cases.append(FakeCase(f"p{i}", since=i))
        w.sync()
        clock.t += 0.5
    assert 2 <= len(client.patches) <= 4, client.patches  # every max_delay (5 s) at most


def test_other_conditions_are_kept_and_a_new_leader_clears_a_stale_rejection() -> None:
    other = {"type": "Accepted", "status": "True", "reason": "Ok", "message": "someone else's"}
    stale = {"type": "Reconciled", "status": "False", "reason": "Rejected", "message": "rejected by 3 proxies"}
    conds = json.dumps([other, stale], sort_keys=True)
    assert ours(conds) == "rejected by 3 proxies"
    assert patched_conditions(conds, "", "t") == [other]
    distribution = {"type": "Reconciled", "status": "True", "message": "2/2 proxies up to date."}
    assert ours(json.dumps([distribution])) == ""  # not ours: never removed
    assert patched_conditions(json.dumps([distribution]), "m", "t")[0]["reason"] == "Rejected"  # type: ignore[index]

    w, client, clock = writer([], {("VirtualService", "default", "web"): ("v1", conds)})
    for _ in range(4):
        w.sync()
        clock.t += 0.5
    [(path, body)] = client.patches
    assert path.endswith("/virtualservices/web/status")
    assert body == {"status": {"conditions": [other]}}


def test_files_and_unknown_objects_are_not_written() -> None:
    w, client, clock = writer([FakeCase("a")], {})
    for _ in range(4):
        w.sync()
        clock.t += 1
    assert client.patches == []


@pytest.mark.parametrize("error", [KubeApiError(500, "boom"), KubeApiError(404, "gone"), OSError("refused")])
def test_a_failed_write_is_logged_and_retried(error: Exception, caplog: pytest.LogCaptureFixture) -> None:
    w, client, clock = writer([FakeCase("a")], {("EnvoyFilter", "default", "lua"): ("v1alpha3", "")})
    client.fail = error
    with caplog.at_level(logging.WARNING, "istiod_py.kube.status"):
        for _ in range(4):
            w.sync()
            clock.t += 1
    assert client.patches == [] and w.writes == 0
    if not (isinstance(error, KubeApiError) and error.status == 404):
        assert "writing the Rejected condition of EnvoyFilter default/lua failed" in caplog.text
    client.fail = None
    for _ in range(3):
        w.sync()
        clock.t += 1
    assert len(client.patches) == 1
