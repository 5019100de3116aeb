"""`istiod-py serve`: the control plane on files (and, later, Kubernetes)."""

from __future__ import annotations

import argparse
import asyncio
import logging

from istiod_py.cli.common import EXIT_CODES_HELP, CliError, ExitCode, SubParsers


def register(sub: SubParsers) -> None:
    p = sub.add_parser("serve", help="run the control plane", epilog=EXIT_CODES_HELP)
    p.add_argument("--config-dir", help="directory of Istio YAML (and Kubernetes Service/EndpointSlice); watched")
    p.add_argument("--kubeconfig", help="watch this Kubernetes cluster too ('in-cluster': the pod's service account)")
    p.add_argument(
        "--webhook-port",
        type=int,
        default=15017,
        help="with --kubeconfig: admission webhooks /validate and /inject over TLS (default 15017; 0: off)",
    )
    p.add_argument("--mesh-config", help="mesh config YAML (rootNamespace, trustDomain, outboundTrafficPolicy, ...)")
    p.add_argument("--listen-address", default="127.0.0.1", help="address every port binds (default 127.0.0.1)")
    p.add_argument("--xds-port", type=int, default=15010, help="plaintext xDS (default 15010)")
    p.add_argument("--secure-port", type=int, default=15012, help="xDS and CA over TLS (default 15012)")
    p.add_argument("--debug-port", type=int, default=15014, help="debug and /metrics HTTP (default 15014)")
    p.add_argument("--debounce-quiet", type=float, default=0.1, help="seconds of quiet before a push (default 0.1)")
    p.add_argument("--debounce-max", type=float, default=10.0, help="longest a push waits while events keep coming")
    p.add_argument(
        "--gc-idle-interval",
        type=float,
        default=60.0,
        help="full garbage collection every N s while no push runs (0: Python's default GC; see gc_policy.py)",
    )
    p.add_argument(
        "--poll-interval",
        type=float,
        default=0.1,
        help="rescan the config dir every N s while file notifications are unavailable or failed "
        "(default 0.1; see --safety-poll-interval for while they work)",
    )
    p.add_argument(
        "--safety-poll-interval",
        type=float,
        default=2.0,
        help="rescan the config dir every N s while file notifications work, in case one is missed "
        "(default 2; never more often than --poll-interval)",
    )
    p.add_argument(
        "--debounce-max-eds",
        type=float,
        default=0.3,
        help="longest an endpoint-only change waits while events keep coming (default 0.3)",
    )
    p.add_argument("--max-connection-age", type=float, default=1800.0, help="recycle xDS streams after N s (±10%%)")
    p.add_argument(
        "--nack-quarantine",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="when a proxy NACKs, find the Istio config responsible (bisecting) and serve that proxy its config "
        "without it until it changes (default on; --no-nack-quarantine: istiod's behaviour, the rejected config "
        "is resent and the NACK only traced)",
    )
    p.add_argument("--send-timeout", type=float, default=30.0, help="close a stream whose send blocks N s")
    p.add_argument(
        "--max-concurrent-pushes",
        type=int,
        default=1000,
        help="pushes sent at once (default 1000; the bytes in flight are capped by --max-send-mb)",
    )
    p.add_argument(
        "--max-concurrent-initial",
        type=int,
        default=50,
        help="first responses to new streams sent at once; a reconnect storm queues in order (default 50)",
    )
    p.add_argument(
        "--first-batch-ms",
        type=float,
        default=10.0,
        help="a new stream's first translation waits up to this long to be made with the other new streams' "
        "(cheaper when many connect at once); 0: one at a time (default 10)",
    )
    p.add_argument(
        "--malloc-mmap-threshold-kb",
        type=int,
        default=0,
        help="glibc: blocks of this many KiB or more get their own mmap, returned when freed; "
        "less peak memory for more CPU (default 0: malloc's own; see malloc_policy.py)",
    )
    p.add_argument(
        "--max-send-mb",
        type=int,
        default=64,
        help="MB of responses being written at once over all streams; bounds gRPC's copies (default 64)",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=5.0,
        help="on SIGTERM, seconds streams get to finish their push and close with OK (default 5)",
    )
    p.add_argument("--ca-dir", default="./var/ca", help="where the self-signed root CA is created and kept (0700)")
    p.add_argument("--cacerts-dir", help="plug-in CA in Istio's layout (ca-cert.pem, ca-key.pem, ...)")
    p.add_argument("--token-file", help="YAML mapping bearer tokens to identities, for CSR authentication")
    p.add_argument("--no-ca", action="store_true", help="do not run the CA or the secure port")
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from istiod_py.ca.errors import CAConfigError
    from istiod_py.server import ControlPlane, ServeOptions, StartError

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    opts = ServeOptions(
        config_dir=args.config_dir,
        mesh_config=args.mesh_config,
        listen_address=args.listen_address,
        xds_port=args.xds_port,
        secure_port=args.secure_port,
        debug_port=args.debug_port,
        debounce_quiet=args.debounce_quiet,
        debounce_max=args.debounce_max,
        debounce_max_eds=args.debounce_max_eds,
        poll_interval=args.poll_interval,
        safety_poll_interval=args.safety_poll_interval,
        max_connection_age=args.max_connection_age,
        nack_quarantine=args.nack_quarantine,
        send_timeout=args.send_timeout,
        max_concurrent_pushes=args.max_concurrent_pushes,
        max_concurrent_initial=args.max_concurrent_initial,
        first_batch_ms=args.first_batch_ms,
        max_send_bytes=args.max_send_mb * 2**20,
        malloc_mmap_threshold=args.malloc_mmap_threshold_kb * 1024,
        drain_timeout=args.drain_timeout,
        ca_dir=args.ca_dir,
        cacerts_dir=args.cacerts_dir,
        token_file=args.token_file,
        enable_ca=not args.no_ca,
        gc_idle_interval=args.gc_idle_interval,
        kubeconfig=args.kubeconfig,
        webhook_port=args.webhook_port,
    )

    async def main() -> None:
        cp = ControlPlane(opts)
        try:
            await cp.start()
        except BaseException:
            await cp.stop(0)  # release whatever did bind before the failure
            raise
        await cp.run_forever()

    try:
        asyncio.run(main())
    except StartError as e:
        raise CliError(str(e), ExitCode.UNAVAILABLE) from e
    except CAConfigError as e:
        raise CliError(f"CA: {e}", ExitCode.INPUT) from e
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        # --mesh-config, --token-file and the CA files are read at start.
        raise CliError(f"{e.filename}: {e.strerror}", ExitCode.INPUT) from e
    except UnicodeDecodeError as e:
        raise CliError(f"an input file is not UTF-8 text: {e}", ExitCode.INPUT) from e
    return ExitCode.OK
