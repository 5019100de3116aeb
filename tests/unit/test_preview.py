"""Preview against the running control plane (issue 16): `istiod-py preview`
posts NEW to /debug/preview; then applying NEW gives the connected proxies
exactly the resources the preview announced (content versions compared with
what the gRPC clients actually receive), and nothing it did not announce."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from istiod_py.cache.resources import content_version
from istiod_py.cli.app import main
from istiod_py.xds.types import TypeUrl
from tests.unit.xds_client import (
    CDS,
    EDS,
    FILES,
    LDS,
    RDS,
    ROUTING,
    SHORT,
    Mesh,
    SotwClient,
    edit,
    make_node,
    running_mesh,
    write_config,
)

pytestmark = pytest.mark.timeout(60)

NEW_ROUTING = (
    ROUTING.replace("weight: 80", "weight: 60")
    .replace("weight: 20", "weight: 40")
    .replace(
        "  - {name: v2, labels: {version: v2}}",
        "  - {name: v2, labels: {version: v2}}\n  trafficPolicy: {connectionPool: {tcp: {maxConnections: 5}}}",
    )
)


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    root = tmp_path / "config"
    root.mkdir()
    write_config(root)
    async with running_mesh(root) as m:
        yield m


async def _connect(mesh: Mesh, **node: Any) -> tuple[SotwClient, dict[str, dict[str, str]]]:
    c = await SotwClient(mesh.channel, make_node(**node)).start()
    held: dict[str, dict[str, str]] = {}
    for t in (CDS, LDS):
        await c.send(t)
        await _take(c, await c.recv_type(t), held)
    eds_names = [n for n in held["CDS"] if n.startswith("outbound|")]
    for t, names in ((EDS, eds_names), (RDS, ["9080"])):
        await c.send(t, names)
        await _take(c, await c.recv_type(t), held, names)
    return c, held


async def _take(c: SotwClient, resp: Any, held: dict[str, dict[str, str]], names: list[str] | None = None) -> None:
    """Record the resources of a response (their content versions) and ACK it."""
    short = SHORT[resp.type_url]
    cls = TypeUrl.message_class(resp.type_url)
    got = {}
    for any_msg in resp.resources:  # google.protobuf.Any: the version is the hash of its value
        msg = cls.FromString(any_msg.value)
        name = msg.cluster_name if resp.type_url == EDS else msg.name
        got[name] = content_version(any_msg.value)
    if resp.type_url in (CDS, LDS):
        held[short] = got  # wildcard: the whole set
    else:
        held.setdefault(short, {}).update(got)
    await c.ack(resp, names or [])


def _new_dir(mesh: Mesh) -> Path:
    new = mesh.root.parent / "new"
    shutil.copytree(mesh.root, new)
    (new / "routing.yaml").write_text(NEW_ROUTING)
    return new


async def test_preview_then_apply_yields_the_previewed_resources(mesh: Mesh) -> None:
    clients = [
        await _connect(mesh),
        await _connect(mesh, ip="127.0.0.10", name="productpage-v1", labels={"app": "productpage", "version": "v1"}),
    ]
    new = _new_dir(mesh)
    out = io.StringIO()

    def run() -> int:
        with contextlib.redirect_stdout(out):
            return main(["preview", "--debug-address", mesh.debug_url, "--config-dir", str(new), "-o", "json"])

    assert await asyncio.to_thread(run) == 1  # something changes
    report = json.loads(out.getvalue())
    assert report["configs_changed"] == ["DestinationRule/default/reviews", "VirtualService/default/reviews"]
    assert report["push"]["kind"] == "full" and report["push"]["proxies_touched"] == 2
    bundle = "\n---\n".join((new / n).read_text() for n in sorted(FILES))
    async with aiohttp.ClientSession() as s, s.post(f"{mesh.debug_url}/debug/preview?versions=1", data=bundle) as r:
        assert r.status == 200
        detailed = await r.json()
    announced = {p["proxy"]: {(x["type"], x["name"]) for x in p["resources"]} for p in detailed["proxies"]}
    assert ("RDS", "9080") in announced["reviews-v1.default"]
    assert ("CDS", "outbound|9080|v2|reviews.default.svc.cluster.local") in announced["reviews-v1.default"]

    before = [json.loads(json.dumps(held)) for _, held in clients]
    for f in sorted(new.iterdir()):
        edit(mesh.root / f.name, f.read_text())
    for c, held in clients:
        while True:
            try:
                resp = await c.recv(timeout=1.0)
            except (AssertionError, TimeoutError):
                break
            names = ["9080"] if resp.type_url == RDS else list(held.get("EDS", {})) if resp.type_url == EDS else []
            await _take(c, resp, held, names)
    for (_, held), old, proxy in zip(clients, before, ("reviews-v1.default", "productpage-v1.default"), strict=True):
        after = next(p for p in detailed["proxies"] if p["proxy"] == proxy)["after"]
        for t, res in held.items():
            for name, version in res.items():
                assert after[t].get(name) == version, f"{proxy} {t} {name}: got a version preview did not announce"
        changed = {(t, n) for t, res in held.items() for n, v in res.items() if old.get(t, {}).get(n) != v}
        assert changed == announced[proxy], f"{proxy}: changed {changed}, announced {announced[proxy]}"


async def test_preview_bundle_errors_and_noop(mesh: Mesh) -> None:
    async with aiohttp.ClientSession() as s:
        bad = ROUTING.replace("host: reviews\n", "host: reviews\n  bogusField: 1\n", 1)
        async with s.post(f"{mesh.debug_url}/debug/preview", data=bad) as r:
            assert r.status == 400
            assert "bogusField" in (await r.json())["error"]
    same = mesh.root.parent / "same"
    shutil.copytree(mesh.root, same)
    out = io.StringIO()

    def run() -> int:
        with contextlib.redirect_stdout(out):
            return main(["preview", "--debug-address", mesh.debug_url, "--config-dir", str(same)])

    assert await asyncio.to_thread(run) == 0
    assert "push: none" in out.getvalue()
