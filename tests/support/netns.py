"""Pods as Linux network namespaces for the capture tests: the product's lab
(istiod_py/node/netns.py), which the one-host node uses too."""

from istiod_py.node.netns import (
    PREFIX,
    PROXY_UID,
    NetnsLab,
    NetnsUnavailable,
    Pod,
    netns_lab,
    reap_stale,
    require_netns,
)

__all__ = ["PREFIX", "PROXY_UID", "NetnsLab", "NetnsUnavailable", "Pod", "netns_lab", "reap_stale", "require_netns"]
