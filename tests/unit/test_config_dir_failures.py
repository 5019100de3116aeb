"""The config directory failing is not all config deleted, and no file in it can
stop or block the watcher: each case with the real FileSource (and, for start-up
and the debug endpoints, the real ControlPlane)."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from istiod_py.config.model import SourceUnavailable
from istiod_py.config.store import FileSource
from istiod_py.registry.aggregate import SourceSnapshot
from tests.unit.xds_client import running_mesh

pytestmark = pytest.mark.timeout(30)


def service_entry(name: str, address: str = "10.0.0.1") -> str:
    return (
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
        f"metadata: {{name: {name}, namespace: default}}\n"
        f"spec: {{hosts: [{name}.example.com], ports: [{{number: 80, name: http, protocol: HTTP}}],"
        f" resolution: STATIC, endpoints: [{{address: {address}}}]}}\n"
    )


def names(snap: SourceSnapshot) -> set[str]:
    return {c.meta.name for c in snap.configs}


def unavailable(snap: SourceSnapshot) -> list[SourceUnavailable]:
    return [e for e in snap.errors if isinstance(e, SourceUnavailable)]


# Bad documents that used to raise out of the loader (into the watcher or serve start-up).
BAD_DOCUMENTS = {
    "bigint.yaml": "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: big}\n"
    "spec: {host: r, trafficPolicy: {connectionPool: {tcp: {maxConnections: " + "9" * 5000 + "}}}}\n",
    "duration.yaml": "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: dur}\n"
    "spec: {host: r, trafficPolicy: {connectionPool: {tcp: {connectTimeout: 99999999999999999h}}}}\n",
    "nested.yaml": '{"apiVersion": "v1", "kind": "List", "items": [' * 400 + "]}" * 400 + "\n",
}


def write_bad(root: Path) -> None:
    for name, text in BAD_DOCUMENTS.items():
        (root / name).write_text(text)
    (root / "latin1.yaml").write_bytes(b"apiVersion: v1\nkind: Service\nmetadata: {name: caf\xe9}\n")


def test_directory_removed_keeps_last_good_config_and_resumes(tmp_path: Path) -> None:
    root = tmp_path / "cfg"
    root.mkdir()
    (root / "a.yaml").write_text(service_entry("a"))
    (root / "sub").mkdir()
    (root / "sub" / "b.yaml").write_text(service_entry("b"))
    src = FileSource(root, lambda snap: None)
    assert names(src.load()) == {"a", "b"}

    root.rename(tmp_path / "away")
    snap = src.load()
    assert names(snap) == {"a", "b"}, "a vanished directory must not delete its config"
    [err] = unavailable(snap)
    assert err.source == str(root) and "serving the last good config" in err.message
    assert names(src.load()) == {"a", "b"}  # and stays so on every rescan

    (tmp_path / "away").rename(root)
    (root / "a.yaml").write_text(service_entry("a2"))
    snap = src.load()
    assert names(snap) == {"a2", "b"} and not unavailable(snap)


def test_directory_replaced_by_a_file_or_a_symlink_loop_is_unavailable(tmp_path: Path) -> None:
    root = tmp_path / "cfg"
    root.mkdir()
    (root / "a.yaml").write_text(service_entry("a"))
    src = FileSource(root, lambda snap: None)
    assert names(src.load()) == {"a"}
    root.rename(tmp_path / "saved")
    root.write_text("not a directory")
    snap = src.load()
    assert names(snap) == {"a"} and "not a directory" in unavailable(snap)[0].message
    root.unlink()
    os.symlink(tmp_path / "loop2", root)
    os.symlink(root, tmp_path / "loop2")
    snap = src.load()
    assert names(snap) == {"a"} and unavailable(snap)
    root.unlink()
    (tmp_path / "saved").rename(root)
    assert not unavailable(src.load())


def test_missing_at_start_then_created_loads(tmp_path: Path) -> None:
    root = tmp_path / "later"
    src = FileSource(root, lambda snap: None)
    snap = src.load()
    assert not snap.configs and "no config loaded yet" in unavailable(snap)[0].message
    root.mkdir()
    (root / "a.yaml").write_text(service_entry("a"))
    snap = src.load()
    assert names(snap) == {"a"} and not unavailable(snap)


def test_special_files_and_symlink_loops_are_skipped_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(service_entry("a"))
    os.mkfifo(tmp_path / "fifo.yaml")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock.yaml"))
    os.symlink(tmp_path / "loop-b.yaml", tmp_path / "loop-a.yaml")
    os.symlink(tmp_path / "loop-a.yaml", tmp_path / "loop-b.yaml")
    try:
        started = time.monotonic()
        snap = FileSource(tmp_path, lambda snap: None).load()
        assert time.monotonic() - started < 5, "a special file blocked the load"
    finally:
        sock.close()
    assert names(snap) == {"a"}
    reasons = {Path(e.source).name: e.message for e in snap.errors}
    assert "a FIFO" in reasons["fifo.yaml"]
    assert "a socket" in reasons["sock.yaml"]
    assert "symlink loop" in reasons["loop-a.yaml"] and "symlink loop" in reasons["loop-b.yaml"]


def test_a_config_file_replaced_by_a_fifo_keeps_its_last_state(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(service_entry("a"))
    (tmp_path / "b.yaml").write_text(service_entry("b"))
    src = FileSource(tmp_path, lambda snap: None)
    assert names(src.load()) == {"a", "b"}
    (tmp_path / "b.yaml").unlink()
    os.mkfifo(tmp_path / "b.yaml")
    assert names(src.load()) == {"a", "b"}


def test_bad_files_do_not_escape_the_loader(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(service_entry("a"))
    write_bad(tmp_path)
    snap = FileSource(tmp_path, lambda snap: None).load()
    assert names(snap) == {"a"}
    by_file = {Path(e.source).name: e for e in snap.errors}
    assert set(by_file) == {*BAD_DOCUMENTS, "latin1.yaml"}
    assert by_file["duration.yaml"].field == "spec.trafficPolicy.connectionPool.tcp.connectTimeout"
    assert by_file["duration.yaml"].name == "dur"
    assert "out of range" in by_file["bigint.yaml"].message
    assert "not UTF-8" in by_file["latin1.yaml"].message and by_file["latin1.yaml"].line == 3
    assert all(len(str(e)) < 1500 for e in snap.errors)


async def wait_for(predicate: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def test_watcher_keeps_applying_edits_after_bad_and_special_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(service_entry("a"))
    seen: list[SourceSnapshot] = []
    src = FileSource(tmp_path, seen.append, poll_interval=0.05)
    src.start()
    try:
        write_bad(tmp_path)
        os.mkfifo(tmp_path / "fifo.yaml")
        os.symlink(tmp_path / "loop.yaml", tmp_path / "loop.yaml")
        await wait_for(lambda: bool(seen) and any("FIFO" in e.message for e in seen[-1].errors))
        (tmp_path / "b.yaml").write_text(service_entry("b"))
        await wait_for(lambda: names(seen[-1]) == {"a", "b"})
        # the directory goes away and comes back: last good serves, then edits apply
        tmp_path.joinpath("a.yaml").rename(tmp_path.parent / f"{tmp_path.name}-a.yaml")
        await wait_for(lambda: names(seen[-1]) == {"b"})
        away = tmp_path.parent / f"{tmp_path.name}-away"
        tmp_path.rename(away)
        await wait_for(lambda: bool(unavailable(seen[-1])))
        assert names(seen[-1]) == {"b"}
        away.rename(tmp_path)
        (tmp_path / "c.yaml").write_text(service_entry("c"))
        await wait_for(lambda: names(seen[-1]) == {"b", "c"} and not unavailable(seen[-1]))
    finally:
        await src.stop()


async def test_serve_starts_with_bad_files_and_reports_the_directory(tmp_path: Path) -> None:
    root = tmp_path / "cfg"
    root.mkdir()
    (root / "a.yaml").write_text(service_entry("a"))
    write_bad(root)
    async with running_mesh(root) as mesh:
        configz = await mesh.get_json("/debug/configz")
        assert [c["name"] for c in configz["configs"]] == ["a"]
        assert len(configz["errors"]) == len(BAD_DOCUMENTS) + 1 and configz["sources_unavailable"] == []
        root.rename(tmp_path / "away")

        async def ready_text() -> tuple[int, str]:
            async with aiohttp.ClientSession() as s, s.get(mesh.debug_url + "/ready") as resp:
                return resp.status, await resp.text()

        deadline = time.monotonic() + 10
        while "degraded" not in (await ready_text())[1]:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        status, text = await ready_text()
        assert status == 200 and "config directory unavailable" in text and str(root) in text
        configz = await mesh.get_json("/debug/configz")
        assert [c["name"] for c in configz["configs"]] == ["a"]
        assert configz["sources_unavailable"][0]["source"] == str(root)
        (tmp_path / "away").rename(root)
        while (await mesh.get_json("/debug/configz"))["sources_unavailable"]:
            assert time.monotonic() < deadline + 10
            await asyncio.sleep(0.05)
        assert (await ready_text())[1] == "ready\n"
