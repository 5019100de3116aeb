"""VirtualService `retries`, and Istio's default retry policy when none is set."""

from __future__ import annotations

import functools

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.extensions.retry.priority.previous_priorities.v3 import previous_priorities_config_pb2

from ..features import RouteInput, route_feature

DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"


def _base_policy(attempts: int) -> rc.RetryPolicy:
    """A fresh copy of the default policy for `attempts` (the caller may change it)."""
    p = rc.RetryPolicy()
    p.CopyFrom(_base_prototype(attempts))
    return p


@functools.lru_cache(maxsize=64)
def _base_prototype(attempts: int) -> rc.RetryPolicy:
    """Built once per attempt count and copied: every default route has it."""
    p = rc.RetryPolicy(retry_on=DEFAULT_RETRY_ON, host_selection_retry_max_attempts=5)
    p.num_retries.value = attempts
    # No retriable status codes: istiod's default retries connection-level
    # failures only, so a 503 from the app reaches the client unretried.
    pred = p.retry_host_predicate.add()
    pred.name = "envoy.retry_host_predicates.previous_hosts"
    pred.typed_config.Pack(previous_hosts_pb2.PreviousHostsPredicate())
    return p


@route_feature
def retries(inp: RouteInput, route: rc.Route) -> None:
    if not route.HasField("route"):
        return
    http = inp.http
    # istiod's DefaultConsistentHashPolicy: under consistent hashing a retry goes
    # back to the hashed host, so no previous_hosts predicate. traffic_policy.py's
    # hash_policy feature runs first (registered when security/mtls.py imports it).
    hashed = len(route.route.hash_policy) > 0
    if http is None or not http.HasField("retries"):
        attempts = inp.ctx.state.mesh.default_retry_attempts
        if attempts > 0:
            route.route.retry_policy.CopyFrom(_base_prototype(attempts))
            if hashed:
                del route.route.retry_policy.retry_host_predicate[:]
        return
    r = http.retries
    if r.attempts <= 0:
        return  # attempts: 0 turns retries off
    policy = _base_policy(r.attempts)
    if r.retry_on:
        conditions = []
        codes = []
        for part in r.retry_on.split(","):
            part = part.strip()
            if part.isdigit():
                codes.append(int(part))
            elif part:
                conditions.append(part)
        if codes and "retriable-status-codes" not in conditions:
            conditions.append("retriable-status-codes")
        policy.retry_on = ",".join(conditions)
        del policy.retriable_status_codes[:]
        policy.retriable_status_codes.extend(codes)
    if r.HasField("per_try_timeout"):
        policy.per_try_timeout.CopyFrom(r.per_try_timeout)
    if r.HasField("retry_ignore_previous_hosts"):
        if not r.retry_ignore_previous_hosts.value:
            del policy.retry_host_predicate[:]
    elif hashed:
        del policy.retry_host_predicate[:]
    if r.HasField("backoff"):
        policy.retry_back_off.base_interval.CopyFrom(r.backoff)
    if r.HasField("retry_remote_localities") and r.retry_remote_localities.value:
        prio = policy.retry_priority
        prio.name = "envoy.retry_priorities.previous_priorities"
        prio.typed_config.Pack(previous_priorities_config_pb2.PreviousPrioritiesConfig(update_frequency=2))
    route.route.retry_policy.CopyFrom(policy)
