"""Value checks shared by the validators, with the semantics Envoy and istiod use.

Regexes are compiled with RE2 (what Envoy runs: no lookaround, no
backreferences), not Python's `re`; addresses with `ipaddress` strictly (a CIDR
must be a network, its prefix in range); host names as istiod's DNS-1123
rules; durations with istiod's 1 ms minimum and precision.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import re2

from istiod_py.config.model import clip, quote
from istiod_py.config.proto_yaml import FieldProblem

Problems = list[FieldProblem]

PORT_MAX = 65535
# istiod refuses longer regexes (Envoy's RE2 program-size limit, approximated by length).
MAX_REGEX_CHARS = 1024
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # the error comes back as an exception; no stderr noise
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_WILDCARD_LABEL = re.compile(r"^(\*|(\*|\*-)?[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)$")
_HEADER_NAME = re.compile(r"^[-_A-Za-z0-9]+$")
_MS = 1_000_000


def port_ok(n: int) -> bool:
    return 1 <= n <= PORT_MAX


def check_port(n: int, path: str, out: Problems) -> None:
    if not port_ok(n):
        out.append(FieldProblem(path, f"port {n} must be in 1-65535"))


def check_regex(pattern: str, path: str, out: Problems) -> None:
    """RE2 syntax, as Envoy compiles it: lookarounds and backreferences are invalid."""
    if not pattern:
        out.append(FieldProblem(path, "regex cannot be empty"))
        return
    if len(pattern) > MAX_REGEX_CHARS:
        out.append(FieldProblem(path, f"regex is {len(pattern)} characters; at most {MAX_REGEX_CHARS}"))
        return
    try:
        re2.compile(pattern, _RE2_OPTIONS)
    except Exception as exc:  # re2.error; message is bytes in some versions
        detail = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        out.append(
            FieldProblem(
                path,
                f"invalid regex {quote(pattern)}: {clip(detail, 100)}; Envoy uses RE2 syntax "
                "(no lookahead, lookbehind or backreferences)",
            )
        )


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def check_ip(text: str, path: str, out: Problems) -> None:
    if not is_ip(text):
        out.append(FieldProblem(path, f"{quote(text)} is not an IP address"))


def check_ip_or_cidr(text: str, path: str, out: Problems) -> None:
    """istiod's ValidateIPSubnet: an address, or a CIDR whose prefix fits the family."""
    if "/" not in text:
        check_ip(text, path, out)
        return
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        out.append(FieldProblem(path, f"{quote(text)} is not a valid CIDR: {clip(str(exc), 80)}"))


def is_dns1123_label(text: str) -> bool:
    return bool(_DNS1123_LABEL.match(text))


def fqdn_problem(name: str) -> str:
    """Why `name` is not a DNS-1123 domain name (istiod's ValidateFQDN), or ''."""
    if not name:
        return "empty domain name"
    if len(name) > 255:
        return "domain name longer than 255 characters"
    labels = name.split(".")
    if labels[-1].isdigit():
        return f"top-level domain {quote(labels[-1])} cannot be all-numeric"
    for i, label in enumerate(labels):
        if i == len(labels) - 1 and label == "":
            break  # a trailing dot is allowed
        if not is_dns1123_label(label):
            return f"label {quote(label)} is not a lowercase DNS-1123 label"
    return ""


def wildcard_domain_problem(name: str) -> str:
    """istiod's ValidateWildcardDomain: a wildcard only in the first label."""
    if not name:
        return "empty domain name"
    if len(name) > 255:
        return "domain name longer than 255 characters"
    first, _, rest = name.partition(".")
    if not _WILDCARD_LABEL.match(first):
        return f"label {quote(first)} is not a DNS-1123 label (a wildcard may only lead the first label)"
    return fqdn_problem(rest) if rest else ""


def check_host(name: str, path: str, out: Problems, allow_ip: bool = False) -> None:
    problem = wildcard_domain_problem(name)
    if problem and not (allow_ip and is_ip(name)):
        out.append(FieldProblem(path, f"invalid host {quote(name)}: {problem}"))


def check_namespaced_host(text: str, path: str, out: Problems) -> None:
    """`namespace/host` as Sidecar egress and Gateway servers use it (`./*`, `*/foo.com`)."""
    ns, sep, host = text.partition("/")
    if not sep:
        out.append(FieldProblem(path, f"{quote(text)} must be namespace/dnsName, e.g. ./{clip(text, 40)}"))
        return
    if ns not in (".", "*", "~") and not is_dns1123_label(ns):
        out.append(FieldProblem(path, f"invalid namespace {quote(ns)} in {quote(text)}"))
    if host != "*":
        problem = wildcard_domain_problem(host)
        if problem:
            out.append(FieldProblem(path, f"invalid host {quote(host)} in {quote(text)}: {problem}"))


def check_header_name(name: str, path: str, out: Problems) -> None:
    if not _HEADER_NAME.match(name):
        out.append(FieldProblem(path, f"{quote(name)} is not a valid header name (letters, digits, - and _)"))


def duration_ns(d: Any) -> int:
    return int(d.seconds) * 1_000_000_000 + int(d.nanos)


def check_duration(msg: Any, name: str, path: str, out: Problems) -> None:
    """istiod's ValidateDuration on a set Duration field: at least 1ms, whole milliseconds."""
    if not msg.HasField(name):
        return
    ns = duration_ns(getattr(msg, name))
    json_name = msg.DESCRIPTOR.fields_by_name[name].json_name
    if ns < _MS:
        out.append(FieldProblem(f"{path}.{json_name}", "duration must be at least 1ms"))
    elif ns % _MS:
        out.append(FieldProblem(f"{path}.{json_name}", "only durations to ms precision are supported"))


def check_export_to(export_to: Any, namespace: str, path: str, out: Problems, service_entry: bool = False) -> None:
    """istiod's validateExportTo: no duplicates, `*` alone, `~` alone (ServiceEntry only)."""
    seen: set[str] = set()
    for i, e in enumerate(export_to):
        key = namespace if e == "." else e
        if key in seen:
            out.append(FieldProblem(f"{path}[{i}]", f"duplicate exportTo entry {quote(e)}"))
            continue
        seen.add(key)
        if e == "~" and not service_entry:
            out.append(FieldProblem(f"{path}[{i}]", "'~' is only allowed for ServiceEntry"))
        elif e not in (".", "*", "~") and not is_dns1123_label(e):
            out.append(FieldProblem(f"{path}[{i}]", f"{quote(e)} is not a namespace name, '.' or '*'"))
    if len(export_to) > 1 and ("*" in seen or "~" in seen):
        out.append(FieldProblem(path, "'*' and '~' cannot be combined with other exportTo entries"))
