"""Translation cost per proxy in heterogeneous meshes (issue 18), in one process.

    python -m benchmarks.hetero --namespaces 1,20,100,1000 --services 1000 --proxies 1000

For each mesh (benchmarks/meshgen.py --hetero: a Sidecar per namespace importing
its own namespace, ns-0 and the next; a per-workload AuthorizationPolicy; every
4th service TCP), builds the state the server would build from the directory
and translates CDS, EDS, LDS and RDS for `--proxies` proxies with the load
generator's identities (client-i in ns-(i mod K)), the way a connect, a full
push, an endpoint-only push, churn and a reconnect storm would. Prints CPU per
proxy (process time: this box is shared, wall time is noise) and the number of
distinct configurations. No gRPC: benchmarks/run.py measures the wire.
`--profile K` runs cProfile on the connect of the K-namespace mesh; `--gc server`
collects garbage as `istiod-py serve` does (gc_policy.py) instead of with
Python's defaults.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import meshgen
from istiod_py.config.loader import load_directory
from istiod_py.model import MeshState
from istiod_py.model.proxy import Proxy, parse_proxy
from istiod_py.registry.aggregate import Aggregator, Change, SourceSnapshot, diff
from istiod_py.translate.generate import Translator
from istiod_py.xds.types import TypeUrl

TYPES = (TypeUrl.CLUSTER, TypeUrl.ENDPOINT, TypeUrl.LISTENER, TypeUrl.ROUTE)


def proxies(n: int, namespaces: int) -> list[Proxy]:
    out = []
    for i in range(n):
        ns = f"ns-{i % namespaces}"
        ip = f"10.{200 + (i >> 16) % 50}.{(i >> 8) & 0xFF}.{i & 0xFF}"
        md = {
            "NAMESPACE": ns,
            "LABELS": {"app": f"client-{i}"},
            "INTERCEPTION_MODE": "NONE",
            "SERVICE_ACCOUNT": "default",
            "WORKLOAD_NAME": f"client-{i}",
        }
        out.append(parse_proxy(f"sidecar~{ip}~client-{i}.{ns}~{ns}.svc.cluster.local", md))
    return out


@dataclass
class Mesh:
    spec: meshgen.MeshSpec
    root: Path
    agg: Aggregator

    def load(self) -> MeshState:
        res = load_directory(self.root)
        if res.errors:
            raise SystemExit(f"mesh {self.root}: {res.errors[:3]}")
        self.agg.set_source(
            "files", SourceSnapshot(tuple(res.configs), tuple(res.services), tuple(res.endpoint_slices))
        )
        return self.agg.build()


def translate_all(
    tr: Translator, state: MeshState, pxs: list[Proxy], types: tuple[str, ...] = TYPES
) -> tuple[float, int]:
    """CPU seconds to translate `types` for every proxy; distinct configurations."""
    t = time.process_time()
    seen = set()
    for p in pxs:
        seen.add(tuple(id(tr.generate(state, p, ty)) for ty in types))
    return time.process_time() - t, len(seen)


def push_types(change: Change) -> tuple[str, ...]:
    return TYPES if change.full else (TypeUrl.ENDPOINT,)


def run_mesh(args: argparse.Namespace, k: int, tmp: Path) -> dict[str, Any]:
    spec = meshgen.MeshSpec(args.services, args.endpoints, k, fmt=args.format, hetero=not args.no_scoping)
    root = meshgen.generate(spec, tmp / f"mesh-{k}")
    mesh = Mesh(spec, root, Aggregator())
    state = mesh.load()
    pxs = proxies(args.proxies, k)
    tr = Translator()
    row: dict[str, Any] = {"namespaces": k, "services": args.services, "proxies": len(pxs)}
    if args.tracemalloc:
        tracemalloc.start(8)
    prof = cProfile.Profile() if args.profile == k else None
    if prof:
        prof.enable()
    cpu, distinct = translate_all(tr, state, pxs)
    if prof:
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(35)
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    row["connect_ms"] = cpu * 1000 / len(pxs)
    if args.tracemalloc:
        snap = tracemalloc.take_snapshot()
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        mb = 2**20
        print(f"tracemalloc after connect ({k} namespaces): current {current / mb:.0f} MB, peak {peak / mb:.0f} MB")
        for stat in snap.statistics("lineno")[:20]:
            print(f"  {stat.size / 2**20:8.1f} MB {stat.count:9d} blocks  {stat.traceback[0]}")
    row["distinct"] = distinct
    row["clusters_per_proxy"] = len(tr.generate(state, pxs[-1], TypeUrl.CLUSTER))
    cpu, _ = translate_all(tr, state, pxs)
    row["storm_ms"] = cpu * 1000 / len(pxs)

    def step(apply: Callable[[], object]) -> tuple[float, Change]:
        nonlocal state
        apply()
        new = mesh.load()
        change = diff(state, new)
        state = new
        cpu, _ = translate_all(tr, state, pxs, push_types(change))
        return cpu, change

    cpu, ch = step(lambda: meshgen.apply_full_push(spec, root, 1))
    row["full_ms"] = cpu * 1000 / len(pxs)
    row["full_kind"] = "full" if ch.full else "eds"
    cpu, ch = step(lambda: meshgen.apply_endpoint_change(spec, root, 1))
    row["eds_ms"] = cpu * 1000 / len(pxs)
    row["eds_kind"] = "full" if ch.full else "eds"
    changed: dict[int, int] = {}
    total = 0.0
    kinds = set()
    for g in range(1, args.churn + 1):
        cpu, ch = step(lambda g=g: meshgen.apply_churn(spec, root, changed, g))  # type: ignore[misc]
        total += cpu
        kinds.add("full" if ch.full else "eds")
    row["churn_ms"] = total * 1000 / max(1, args.churn) / len(pxs)
    row["churn_kind"] = "/".join(sorted(kinds))
    return row


COLUMNS = (
    ("namespaces", "ns", "{}"),
    ("proxies", "proxies", "{}"),
    ("distinct", "distinct configs", "{}"),
    ("clusters_per_proxy", "clusters/proxy", "{}"),
    ("connect_ms", "connect ms/proxy", "{:.3f}"),
    ("full_ms", "full ms/proxy", "{:.3f}"),
    ("eds_ms", "endpoint-only ms/proxy", "{:.3f}"),
    ("eds_kind", "endpoint push", "{}"),
    ("churn_ms", "churn ms/proxy/change", "{:.3f}"),
    ("storm_ms", "storm ms/proxy", "{:.3f}"),
)


def table(rows: list[dict[str, Any]]) -> str:
    head = "| " + " | ".join(c[1] for c in COLUMNS) + " |"
    sep = "|" + "---|" * len(COLUMNS)
    body = ["| " + " | ".join(f.format(r[k]) for k, _, f in COLUMNS) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--namespaces", default="1,20,100,1000")
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--endpoints", type=int, default=5)
    ap.add_argument("--proxies", type=int, default=1000)
    ap.add_argument("--format", choices=["kube", "se"], default="kube")
    ap.add_argument("--churn", type=int, default=5, help="endpoint changes in the churn scenario")
    ap.add_argument("--profile", type=int, default=-1, help="cProfile the connect of this mesh")
    ap.add_argument("--no-scoping", action="store_true", help="the plain mesh: no Sidecars, policies or TCP ports")
    ap.add_argument("--tracemalloc", action="store_true", help="where memory goes after the connect (tracemalloc)")
    ap.add_argument(
        "--gc",
        choices=["python", "server"],
        default="python",
        help="garbage collection: Python's defaults, or the server's policy (istiod_py/gc_policy.py: "
        "the heap frozen after start-up, young collections every 50,000 allocations)",
    )
    args = ap.parse_args(argv)
    if args.gc == "server":
        from istiod_py import gc_policy

        gc_policy.configure()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for k in (int(x) for x in args.namespaces.split(",")):
            rows.append(run_mesh(args, k, Path(d)))
            print(table(rows[-1:]), flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
