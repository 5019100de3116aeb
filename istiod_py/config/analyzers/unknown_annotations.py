"""IST0108 UnknownAnnotation: an annotation in one of Istio's namespaces
(`*.istio.io/`) that Istio does not define -- usually a typo, silently ignored."""

from __future__ import annotations

from collections.abc import Iterator

from istiod_py.config.analyzers.context import Context
from istiod_py.config.analyzers.messages import Message, new

# Istio's annotations (istio.io/api annotation/annotations.yaml), the ones that can appear on config
# and workloads; a key under an Istio domain that is not here is reported.
KNOWN = frozenset(
    {
        "galley.istio.io/analyze-suppress",
        "inject.istio.io/templates",
        "install.operator.istio.io/chart-owner",
        "install.operator.istio.io/owner-generation",
        "istio.io/dry-run",
        "istio.io/rev",
        "istio.io/use-waypoint",
        "istio.io/waypoint-for",
        "istio.io/dataplane-mode",
        "istio.io/service-account",
        "istio.io/connect-strategy",
        "kubernetes.io/ingress.class",
        "networking.istio.io/exportTo",
        "networking.istio.io/traffic-distribution",
        "networking.istio.io/service-type",
        "networking.istio.io/address-type",
        "prometheus.istio.io/merge-metrics",
        "proxy.istio.io/config",
        "proxy.istio.io/overrides",
        "readiness.status.sidecar.istio.io/applicationPorts",
        "readiness.status.sidecar.istio.io/failureThreshold",
        "readiness.status.sidecar.istio.io/initialDelaySeconds",
        "readiness.status.sidecar.istio.io/periodSeconds",
        "sidecar.istio.io/agentLogLevel",
        "sidecar.istio.io/bootstrapOverride",
        "sidecar.istio.io/componentLogLevel",
        "sidecar.istio.io/controlPlaneAuthPolicy",
        "sidecar.istio.io/discoveryAddress",
        "sidecar.istio.io/enableCoreDump",
        "sidecar.istio.io/extraStatTags",
        "sidecar.istio.io/inject",
        "sidecar.istio.io/interceptionMode",
        "sidecar.istio.io/logLevel",
        "sidecar.istio.io/nativeSidecar",
        "sidecar.istio.io/proxyCPU",
        "sidecar.istio.io/proxyCPULimit",
        "sidecar.istio.io/proxyImage",
        "sidecar.istio.io/proxyImageType",
        "sidecar.istio.io/proxyMemory",
        "sidecar.istio.io/proxyMemoryLimit",
        "sidecar.istio.io/rewriteAppHTTPProbers",
        "sidecar.istio.io/statsHistogramBuckets",
        "sidecar.istio.io/statsInclusionPrefixes",
        "sidecar.istio.io/statsInclusionRegexps",
        "sidecar.istio.io/statsInclusionSuffixes",
        "sidecar.istio.io/status",
        "sidecar.istio.io/userVolume",
        "sidecar.istio.io/userVolumeMount",
        "status.sidecar.istio.io/port",
        "topology.istio.io/controlPlaneClusters",
        "traffic.istio.io/nodeSelector",
        "traffic.sidecar.istio.io/excludeInboundPorts",
        "traffic.sidecar.istio.io/excludeInterfaces",
        "traffic.sidecar.istio.io/excludeOutboundIPRanges",
        "traffic.sidecar.istio.io/excludeOutboundPorts",
        "traffic.sidecar.istio.io/includeInboundPorts",
        "traffic.sidecar.istio.io/includeOutboundIPRanges",
        "traffic.sidecar.istio.io/includeOutboundPorts",
        "traffic.sidecar.istio.io/kubevirtInterfaces",
        "traffic.istio.io/drainingTimeout",
        "ambient.istio.io/redirection",
        "ambient.istio.io/bypass-inbound-capture",
        "ambient.istio.io/dns-capture",
        "gateway.istio.io/defaults-for-class",
        "gateway.istio.io/service-account",
        "gateway.istio.io/controller-version",
        "networking.istio.io/enable-http3",
    }
)


def _istio_domain(key: str) -> bool:
    prefix, sep, _ = key.partition("/")
    return bool(sep) and (prefix == "istio.io" or prefix.endswith(".istio.io"))


def analyze(ctx: Context) -> Iterator[Message]:
    for cfg in ctx.configs:
        for key in sorted(cfg.meta.annotations):
            if _istio_domain(key) and key not in KNOWN:
                yield new("IST0108", cfg, key, field=f"metadata.annotations[{key}]")
