"""Gateway API semantics for the VirtualServices generated from HTTPRoutes and
GRPCRoutes (annotation `internal.istio.io/route-semantics: gateway`, as istiod marks
them), where the Gateway API and the Istio API disagree:

- a PathPrefix matches whole path segments (`/foo` matches `/foo` and `/foo/bar`, not
  `/foobar`): Envoy's `path_separated_prefix`, a trailing `/` ignored;
- a ReplacePrefixMatch rewrite to `/` drops the prefix without leaving `//`
  (`/foo/bar` -> `/bar`): a regex rewrite of the prefix and its slashes;
- a RequestRedirect with ReplacePrefixMatch (istiod encodes it as a redirect `uri`
  of `%PREFIX()%<replacement>`): Envoy's redirect `prefix_rewrite`.

User-written VirtualServices never carry the annotation and keep Istio's semantics."""

from __future__ import annotations

import re

from envoy.config.route.v3.route_components_pb2 import Route

from istiod_py.config.model import Config

ROUTE_SEMANTICS = "internal.istio.io/route-semantics"
PREFIX_MARK = "%PREFIX()%"


def uses_gateway_semantics(vs: Config | None) -> bool:
    return vs is not None and vs.meta.annotations.get(ROUTE_SEMANTICS) == "gateway"


def apply(route: Route) -> None:
    """Adjust one built Envoy route of a gateway-semantics VirtualService."""
    match = route.match
    prefix = ""
    if match.WhichOneof("path_specifier") == "prefix":
        prefix = match.prefix.rstrip("/")
        if prefix:
            match.path_separated_prefix = prefix
        else:
            match.prefix = "/"
    if route.HasField("route") and prefix and route.route.prefix_rewrite == "/":
        route.route.ClearField("prefix_rewrite")
        route.route.regex_rewrite.pattern.regex = f"^{re.escape(prefix)}/*"
        route.route.regex_rewrite.substitution = "/"
    if route.HasField("redirect") and route.redirect.path_redirect.startswith(PREFIX_MARK):
        replacement = route.redirect.path_redirect[len(PREFIX_MARK) :] or "/"
        route.redirect.ClearField("path_redirect")
        route.redirect.prefix_rewrite = replacement
