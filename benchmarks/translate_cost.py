"""Cold translation cost of a full push, without gRPC or load generators:

    python -m benchmarks.translate_cost --services 1000 --endpoints 5 --repeats 7

Generates the benchmark mesh (meshgen), builds one MeshState, then per repeat a
fresh Translator translates CDS, EDS, LDS and RDS for one sidecar in each
namespace (what a full push builds before its bytes are shared). Prints the
median and spread of the wall time and the Python heap the memo holds, so a
change to translation (e.g. provenance, issue 16) can be compared run against
run on the same machine."""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
import tracemalloc

from benchmarks import meshgen
from istiod_py.config.loader import load_directory
from istiod_py.model import parse_proxy
from istiod_py.registry.aggregate import Aggregator, SourceSnapshot
from istiod_py.translate.generate import Translator
from istiod_py.xds.types import TypeUrl

TYPES = (TypeUrl.CLUSTER, TypeUrl.ENDPOINT, TypeUrl.LISTENER, TypeUrl.ROUTE)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--endpoints", type=int, default=5)
    ap.add_argument("--virtual-services", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    spec = meshgen.MeshSpec(services=args.services, endpoints=args.endpoints, virtual_services=args.virtual_services)
    root = meshgen.generate(spec, tempfile.mkdtemp(prefix="translate-cost-"))
    result = load_directory(root)
    agg = Aggregator()
    agg.set_source(
        "files", SourceSnapshot(tuple(result.configs), tuple(result.services), tuple(result.endpoint_slices))
    )
    state = agg.build()
    proxies = [
        parse_proxy(f"sidecar~10.9.0.{n}~client-{n}.ns-{n}~ns-{n}.svc.cluster.local", {"NAMESPACE": f"ns-{n}"})
        for n in range(spec.namespaces)
    ]
    times = []
    for _ in range(args.repeats):
        gc.collect()
        tr = Translator()
        t0 = time.perf_counter()
        for p in proxies:
            for t in TYPES:
                tr.generate(state, p, t)
        times.append(time.perf_counter() - t0)
    gc.collect()
    tracemalloc.start()
    tr = Translator()
    for p in proxies:
        for t in TYPES:
            tr.generate(state, p, t)
    heap = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(
        f"services {args.services} endpoints {args.endpoints}: cold translation for {len(proxies)} proxies x 4 types: "
        f"median {statistics.median(times) * 1000:.0f} ms (min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}, "
        f"n={len(times)}); memo heap {heap / 1e6:.1f} MB"
    )


if __name__ == "__main__":
    main()
