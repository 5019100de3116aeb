"""Gateways (router proxies). The full Gateway API is built under the traffic
management work; until then a router gets the catch-all clusters only."""

from __future__ import annotations

from typing import TYPE_CHECKING

from istiod_py.cache.resources import Resources, build, resources_of
from istiod_py.model import Proxy
from istiod_py.xds.types import TypeUrl

from . import clusters as cds
from .context import PushContext

if TYPE_CHECKING:
    from .generate import Translator


def generate(ctx: PushContext, proxy: Proxy, type_url: str, translator: Translator) -> Resources:
    if type_url == TypeUrl.CLUSTER:
        return resources_of(
            {c.name: build(c.name, TypeUrl.CLUSTER, c) for c in (cds.blackhole(), cds.passthrough())}
        )
    return resources_of()
