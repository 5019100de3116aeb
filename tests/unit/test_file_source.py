"""The file source: change notifications wake the rescan (no waiting for the
poll interval), and an edit re-parses only the documents it touched."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from istiod_py.config.store import FileSource
from istiod_py.registry.aggregate import SourceSnapshot

pytestmark = pytest.mark.timeout(20)


def service_entry(name: str, address: str) -> str:
    return (
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
        f"metadata: {{name: {name}, namespace: default}}\n"
        f"spec: {{hosts: [{name}.example.com], ports: [{{number: 80, name: http, protocol: HTTP}}],"
        f" resolution: STATIC, endpoints: [{{address: {address}}}]}}\n"
    )


def mesh_file(address_b: str) -> str:
    return "---\n".join(service_entry(n, a) for n, a in (("a", "10.0.0.1"), ("b", address_b), ("c", "10.0.0.3")))


async def test_a_file_change_is_seen_without_waiting_for_the_poll(tmp_path: Path) -> None:
    (tmp_path / "mesh.yaml").write_text(mesh_file("10.0.0.2"))
    seen: list[tuple[float, SourceSnapshot]] = []
    # A poll interval far longer than the test: only a notification can wake the rescan.
    src = FileSource(tmp_path, lambda snap: seen.append((time.monotonic(), snap)), poll_interval=60)
    src.start()
    try:
        await asyncio.sleep(0.5)  # the watcher is set up
        seen.clear()
        written = time.monotonic()
        (tmp_path / "mesh.yaml").write_text(mesh_file("10.0.0.22"))
        deadline = written + 5
        while not seen and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert seen, "the edit was not noticed within 5 s although the poll interval is 60 s"
        at, snap = seen[0]
        assert at - written < 1.0
        addresses = {c.meta.name: c.spec.endpoints[0].address for c in snap.configs}
        assert addresses == {"a": "10.0.0.1", "b": "10.0.0.22", "c": "10.0.0.3"}
        # a file added to a new subdirectory is seen as well
        seen.clear()
        (tmp_path / "more").mkdir()
        await asyncio.sleep(0.3)
        (tmp_path / "more" / "d.yaml").write_text(service_entry("d", "10.0.0.4"))
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert seen and {c.meta.name for c in seen[-1][1].configs} == {"a", "b", "c", "d"}
    finally:
        await src.stop()


def test_an_edit_reparses_only_the_documents_it_touched(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(mesh_file("10.0.0.2"))
    src = FileSource(tmp_path, lambda snap: None)
    before = {c.meta.name: c for c in src.load().configs}
    path.write_text(mesh_file("10.0.0.22"))
    after = {c.meta.name: c for c in src.load().configs}
    # untouched documents come back as the very same objects (the registry's
    # conversion cache reuses their conversions); the edited one is new
    assert after["a"] is before["a"] and after["c"] is before["c"]
    assert after["b"] is not before["b"]
    assert after["b"].spec.endpoints[0].address == "10.0.0.22"


def test_a_document_that_moves_keeps_its_line_numbers_right(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    bad = service_entry("b", "10.0.0.2").replace("resolution: STATIC", "resolution: STATICC")
    path.write_text("---\n".join([service_entry("a", "10.0.0.1"), bad]))
    src = FileSource(tmp_path, lambda snap: None)
    first = src.load().errors
    assert len(first) == 1 and first[0].line == 5
    # a document inserted above moves the bad one down: its error must say so
    path.write_text("---\n".join([service_entry("z", "10.0.0.9"), service_entry("a", "10.0.0.1"), bad]))
    second = src.load().errors
    assert len(second) == 1 and second[0].line == 10, second
