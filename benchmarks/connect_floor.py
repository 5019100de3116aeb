"""The floor of a connect on this machine: a bare grpc.aio ADS server (no xDS
logic, fixed responses) answering the Go load generator's SotW connect
(CDS; ACK + EDS + LDS; ACKs + RDS; ACK), then reconnect storms. Prints the
server's CPU per proxy, for comparison with `benchmarks.run`'s connect.

    python -m benchmarks.connect_floor [--clients 1000] [--storms 3]

Run it with GRPC_EXPERIMENTS set to compare gRPC core's settings
(istiod_py/grpc_env.py sets -event_engine_listener for `istiod-py serve`; this
module does not import istiod_py, so the environment decides).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.service.discovery.v3 import discovery_pb2

from benchmarks.run import goloadgen_binary

CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
EDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LDS = "type.googleapis.com/envoy.config.listener.v3.Listener"
RDS = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"


def _response(type_url: str, msgs: list[Any]) -> bytes:
    r = discovery_pb2.DiscoveryResponse(type_url=type_url, version_info="v1", nonce="n1")
    for m in msgs:
        r.resources.add().Pack(m)
    return r.SerializeToString()


def responses() -> dict[str, bytes]:
    """Three EDS clusters, their assignments, one listener naming one route."""
    names = [f"outbound|80||s{i}.ns.svc.cluster.local" for i in range(3)]
    clusters = [
        cluster_pb2.Cluster(
            name=n,
            type=cluster_pb2.Cluster.EDS,
            eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(service_name=n),
        )
        for n in names
    ]
    listener = listener_pb2.Listener(name="0.0.0.0_80")
    manager = hcm.HttpConnectionManager(stat_prefix="x", rds=hcm.Rds(route_config_name="80"))
    listener.filter_chains.add().filters.add(name="envoy.filters.network.http_connection_manager").typed_config.Pack(
        manager
    )
    return {
        CDS: _response(CDS, clusters),
        EDS: _response(EDS, [endpoint_pb2.ClusterLoadAssignment(cluster_name=n) for n in names]),
        LDS: _response(LDS, [listener]),
        RDS: _response(RDS, [route_pb2.RouteConfiguration(name="80")]),
    }


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def main_async(args: argparse.Namespace) -> None:
    canned = responses()

    async def handler(requests: Any, ctx: Any) -> None:
        while True:
            raw = await ctx.read()
            if raw is grpc.aio.EOF:
                return
            req = discovery_pb2.DiscoveryRequest.FromString(raw)
            if not req.response_nonce:
                await ctx.write(canned[req.type_url])

    server = grpc.aio.server(options=[("grpc.max_concurrent_streams", 100_000)])
    method = grpc.stream_stream_rpc_method_handler(handler, lambda b: b, lambda b: b)
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "envoy.service.discovery.v3.AggregatedDiscoveryService", {"StreamAggregatedResources": method}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    exe = goloadgen_binary()
    n, procs = args.clients, 2
    c0 = _cpu()
    lgs = []
    for p in range(procs):
        lgs.append(
            await asyncio.create_subprocess_exec(
                exe, "--server", f"127.0.0.1:{port}", "--first", str(p * n // procs), "--count", str(n // procs),
                "--namespaces", str(n), "--proc", str(p),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            )
        )  # fmt: skip

    async def ready(lg: Any) -> None:
        while True:
            line = await lg.stdout.readline()
            if not line:
                raise RuntimeError("loadgen exited")
            if json.loads(line).get("event") == "ready":
                return

    await asyncio.gather(*(ready(lg) for lg in lgs))
    print(f"connect: {n} proxies, server CPU {1000 * (_cpu() - c0) / n:.3f} ms per proxy", flush=True)
    for rep in range(args.storms):
        await asyncio.sleep(1)
        c0 = _cpu()
        for lg in lgs:
            lg.stdin.write(json.dumps({"cmd": "reconnect", "id": f"r{rep}"}).encode() + b"\n")
        await asyncio.gather(*(ready(lg) for lg in lgs))
        print(f"storm {rep}: server CPU {1000 * (_cpu() - c0) / n:.3f} ms per proxy", flush=True)
    for lg in lgs:
        lg.stdin.write(b'{"cmd":"quit"}\n')
    for lg in lgs:
        await lg.wait()
    await server.stop(0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--storms", type=int, default=3)
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
