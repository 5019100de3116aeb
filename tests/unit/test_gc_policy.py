"""Full garbage collections wait for an idle moment, but not forever."""

from __future__ import annotations

import gc
import weakref

from istiod_py.gc_policy import IdleCollector


class Cycle:
    def __init__(self) -> None:
        self.me = self


def test_collects_when_idle_after_the_interval_and_frees_cycles() -> None:
    busy = [True]
    c = IdleCollector(lambda: not busy[0], interval=10.0)
    t = c.last
    was = gc.isenabled()
    gc.disable()  # only this collector may collect in this test
    try:
        garbage = weakref.ref(Cycle())  # unreachable, but only a collection frees a cycle
        assert not c.maybe_collect(t + 5)  # before the interval: never
        assert not c.maybe_collect(t + 20)  # busy: waits
        assert garbage() is not None
        busy[0] = False
        assert c.maybe_collect(t + 20)  # idle: collects
        assert c.collections == 1 and garbage() is None
    finally:
        if was:
            gc.enable()


def test_collects_under_steady_load_after_five_intervals() -> None:
    c = IdleCollector(lambda: False, interval=10.0)
    t = c.last
    assert not c.maybe_collect(t + 30)
    assert c.maybe_collect(t + 51)
    assert c.collections == 1
