"""The sidecar's traffic capture rules, as Istio's `istio-iptables` init step
writes them (IPv4): outbound TCP is redirected to Envoy's 15001, inbound TCP to
15006 (nat REDIRECT, or mangle TPROXY), the proxy's own UID/GID is exempt so
Envoy's upstream connections leave the pod, 127.0.0.6 (the source address of
InboundPassthroughCluster) is never recaptured, and the
`traffic.sidecar.istio.io/*` annotations narrow what is captured.

`render_restore()` gives the `iptables-restore --noflush` input; `apply()` runs
it (optionally inside a network namespace), reconciling with rules an earlier run
left as istio-iptables does (istiod_py/inject/iptables_state.py: the same rules
again are left alone, different ones are cleaned up first); `clean()` removes them
(istio-iptables' `clean`). The chain names and rule order are
istio-iptables', so `iptables-save` in a pod looks as it does under Istio.
With `--redirect-dns` (or ISTIO_META_DNS_CAPTURE=true) the DNS capture rules are
written too, as istio-iptables writes them: the app's UDP and TCP port-53 traffic
to the resolv.conf nameservers (all of it with `--capture-all-dns`) goes to the
agent's DNS proxy on 15053, the proxy's own queries are exempt, and the raw table
puts app<->agent and agent<->upstream DNS into separate conntrack zones. Only the
rules: the agent here runs no DNS proxy on 15053 yet. IPv6 is not written.

Under TPROXY the proxy must run as UID 0 with GID 1337 and NET_ADMIN (as
Istio's injector runs it): its transparent sockets need the capability, the
GID rules exempt its traffic, and its connections to the app over lo (from the
client's address) must not match the UID-1337 loopback rule."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from istiod_py.inject import iptables_state
from istiod_py.inject.iptables_state import Runner, in_netns, run_command

INBOUND = "ISTIO_INBOUND"
IN_REDIRECT = "ISTIO_IN_REDIRECT"
OUTPUT = "ISTIO_OUTPUT"
REDIRECT = "ISTIO_REDIRECT"
DIVERT = "ISTIO_DIVERT"
TPROXY = "ISTIO_TPROXY"
OUTPUT_DNS = "ISTIO_OUTPUT_DNS"
DNS_PORT = "15053"  # the agent's DNS proxy
# Packets Envoy sends to a workload on its own pod (app -> VIP -> Envoy outbound
# -> Envoy inbound -> app) carry this mark in TPROXY mode, as in Istio.
OUTBOUND_MARK = "1338"
# Istio's injector always leaves Envoy's Prometheus port, the readiness port and
# the agent port uncaptured.
ALWAYS_EXCLUDED_INBOUND = ("15090", "15021", "15020")
# Policy routing that sends TPROXY-marked packets to the local stack.
TPROXY_ROUTE_TABLE = "133"

ANNOTATION_PREFIX = "traffic.sidecar.istio.io/"
INTERCEPTION_ANNOTATION = "sidecar.istio.io/interceptionMode"


class CaptureConfigError(ValueError):
    """A capture setting (flag or annotation) that istio-iptables would refuse."""


@dataclass(frozen=True)
class CaptureConfig:
    """istio-iptables' settings; comma-separated lists as its flags take them."""

    proxy_port: int = 15001
    inbound_capture_port: int = 15006
    inbound_tunnel_port: int = 15008
    proxy_uid: str = "1337"
    proxy_gid: str = "1337"
    mode: str = "REDIRECT"  # inbound interception: REDIRECT or TPROXY
    tproxy_mark: str = "1337"
    inbound_ports_include: str = "*"
    inbound_ports_exclude: str = ",".join(ALWAYS_EXCLUDED_INBOUND)
    outbound_ip_ranges_include: str = "*"
    outbound_ip_ranges_exclude: str = ""
    outbound_ports_include: str = ""
    outbound_ports_exclude: str = ""
    kube_virt_interfaces: str = ""
    exclude_interfaces: str = ""
    host_loopback_cidr: str = "127.0.0.1/32"
    drop_invalid: bool = False
    redirect_dns: bool = False  # DNS to the agent's 15053 (istio-iptables --redirect-dns)
    capture_all_dns: bool = False  # all port-53 traffic, not only to dns_servers
    dns_servers: str = ""  # IPv4 nameservers whose DNS is captured (default: /etc/resolv.conf's)

    def validate(self) -> None:
        if self.mode not in ("REDIRECT", "TPROXY"):
            raise CaptureConfigError(f"interception mode {self.mode!r}: must be REDIRECT or TPROXY")
        for what, value in (
            ("inbound ports include", self.inbound_ports_include),
            ("inbound ports exclude", self.inbound_ports_exclude),
            ("outbound ports include", self.outbound_ports_include),
            ("outbound ports exclude", self.outbound_ports_exclude),
        ):
            for p in split(value):
                if p == "*" and what == "inbound ports include":
                    continue
                if not p.isdigit() or not 0 < int(p) < 65536:
                    raise CaptureConfigError(f"{what}: {p!r} is not a port number (1-65535)")
        for ip in split(self.dns_servers):
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise CaptureConfigError(f"DNS servers: {ip!r} is not an IP address") from None
        if self.outbound_ip_ranges_exclude.strip() == "*":
            raise CaptureConfigError("outbound IP ranges exclude: '*' is not allowed (istio-iptables refuses it)")
        for what, value in (
            ("outbound IP ranges include", self.outbound_ip_ranges_include),
            ("outbound IP ranges exclude", self.outbound_ip_ranges_exclude),
        ):
            for c in split(value):
                if c == "*":
                    continue
                try:
                    ipaddress.ip_network(c, strict=False)
                except ValueError:
                    raise CaptureConfigError(f"{what}: {c!r} is not a CIDR (e.g. 10.96.0.0/12)") from None


def split(value: str) -> list[str]:
    return [p.strip() for p in value.split(",") if p.strip()]


def _v4_cidrs(value: str) -> tuple[bool, list[str], bool]:
    """(wildcard, IPv4 CIDRs, one of them is loopback); IPv6 entries are skipped
    because only the IPv4 table is written."""
    if value.strip() == "*":
        return True, [], False
    cidrs, loopback = [], False
    for c in split(value):
        net = ipaddress.ip_network(c, strict=False)
        if net.version != 4:
            continue
        cidrs.append(str(net))
        loopback = loopback or net.network_address.is_loopback
    return False, cidrs, loopback


@dataclass
class _Table:
    chains: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)


class _Rules:
    """Rules per table in the order they are added; user chains are declared
    (`-N`) before any rule, as istio-iptables' builder does."""

    BUILTIN = frozenset({"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"})

    def __init__(self) -> None:
        self.tables: dict[str, _Table] = {}

    def _table(self, table: str, chain: str) -> _Table:
        t = self.tables.setdefault(table, _Table())
        if chain not in self.BUILTIN and chain not in t.chains:
            t.chains.append(chain)
        return t

    def append(self, table: str, chain: str, *args: str) -> None:
        self._table(table, chain).rules.append(" ".join(("-A", chain, *args)))

    def insert(self, table: str, chain: str, pos: int, *args: str) -> None:
        self._table(table, chain).rules.append(" ".join(("-I", chain, str(pos), *args)))

    def render(self) -> str:
        lines: list[str] = []
        # Tables in istio-iptables' order.
        order = {"mangle": 0, "nat": 1, "raw": 2}
        for name, t in sorted(self.tables.items(), key=lambda kv: order.get(kv[0], 9)):
            lines.append(f"* {name}")
            lines += [f"-N {c}" for c in t.chains]
            lines += t.rules
            lines.append("COMMIT")
        return "\n".join(lines) + "\n"


def build_rules(cfg: CaptureConfig) -> _Rules:
    cfg.validate()
    r = _Rules()
    lo = cfg.host_loopback_cidr
    tproxy = cfg.mode == "TPROXY"
    _, exclude_cidrs, _ = _v4_cidrs(cfg.outbound_ip_ranges_exclude)
    include_all, include_cidrs, include_loopback = _v4_cidrs(cfg.outbound_ip_ranges_include)

    for iface in split(cfg.exclude_interfaces):
        r.append("nat", "PREROUTING", "-i", iface, "-j", "RETURN")
        r.append("nat", "OUTPUT", "-o", iface, "-j", "RETURN")
    if tproxy:
        for iface in split(cfg.exclude_interfaces):
            r.append("mangle", "PREROUTING", "-i", iface, "-j", "RETURN")
            r.append("mangle", "OUTPUT", "-o", iface, "-j", "RETURN")
    for iface in split(cfg.kube_virt_interfaces):
        r.insert("nat", "PREROUTING", 1, "-i", iface, "-j", "RETURN")
    if cfg.drop_invalid:
        r.append("mangle", "PREROUTING", "-m", "conntrack", "--ctstate", "INVALID", "-j", "ISTIO_DROP")
        r.append("mangle", "ISTIO_DROP", "-j", "DROP")

    # The HBONE tunnel port is Envoy's own: never redirected.
    r.append("nat", INBOUND, "-p", "tcp", "--dport", str(cfg.inbound_tunnel_port), "-j", "RETURN")
    r.append("nat", REDIRECT, "-p", "tcp", "-j", "REDIRECT", "--to-ports", str(cfg.proxy_port))
    r.append("nat", IN_REDIRECT, "-p", "tcp", "-j", "REDIRECT", "--to-ports", str(cfg.inbound_capture_port))

    _inbound(r, cfg)

    r.append("nat", "OUTPUT", "-j", OUTPUT)
    for port in split(cfg.outbound_ports_exclude):
        r.append("nat", OUTPUT, "-p", "tcp", "--dport", port, "-j", "RETURN")
        r.append("nat", OUTPUT, "-p", "udp", "--dport", port, "-j", "RETURN")
    # InboundPassthroughCluster connects to the app from 127.0.0.6: leave it alone.
    r.append("nat", OUTPUT, "-o", "lo", "-s", "127.0.0.6/32", "-j", "RETURN")
    dns_servers = [ip for ip in split(cfg.dns_servers) if ipaddress.ip_address(ip).version == 4]
    # As istio-iptables: DNS capture with neither capture-all nor a nameserver captures nothing.
    dns = cfg.redirect_dns and (cfg.capture_all_dns or bool(dns_servers))
    for owner, ids in (("--uid-owner", cfg.proxy_uid), ("--gid-owner", cfg.proxy_gid)):
        for ident in split(ids):
            # Envoy calling its own pod's IP (app -> VIP -> Envoy -> own pod) goes
            # through Envoy's inbound side, as it would from another pod. With DNS
            # capture the agent's TCP DNS upstream (port 53) is left out (UID rule only,
            # as istio-iptables).
            if dns and owner == "--uid-owner":
                not_ports = ["-m", "multiport", "!", "--dports", f"53,{cfg.inbound_tunnel_port}"]
            else:
                not_ports = ["!", "--dport", str(cfg.inbound_tunnel_port)]
            r.append(
                "nat", OUTPUT, "-o", "lo", "!", "-d", lo, "-p", "tcp", *not_ports,
                "-m", "owner", owner, ident, "-j", IN_REDIRECT,
            )  # fmt: skip
            if not include_loopback:
                # The app calling itself over lo (its own pod IP) is not captured (but a
                # DNS server on localhost still is, with DNS capture).
                dns_tcp = ["-p", "tcp", "!", "--dport", "53"] if dns else []
                r.append("nat", OUTPUT, "-o", "lo", *dns_tcp, "-m", "owner", "!", owner, ident, "-j", "RETURN")
            # Envoy's own upstream traffic leaves the pod: no loop back into 15001.
            r.append("nat", OUTPUT, "-m", "owner", owner, ident, "-j", "RETURN")
    if dns:
        _dns(r, cfg, dns_servers)
    r.append("nat", OUTPUT, "-d", lo, "-j", "RETURN")
    for cidr in exclude_cidrs:
        r.append("nat", OUTPUT, "-d", cidr, "-j", "RETURN")
    for port in split(cfg.outbound_ports_include):
        r.append("nat", OUTPUT, "-p", "tcp", "--dport", port, "-j", REDIRECT)
    if include_all:
        r.append("nat", OUTPUT, "-j", REDIRECT)
        for iface in split(cfg.kube_virt_interfaces):
            r.insert("nat", "PREROUTING", 1, "-i", iface, "-j", REDIRECT)
    else:
        for cidr in include_cidrs:
            for iface in split(cfg.kube_virt_interfaces):
                r.insert("nat", "PREROUTING", 1, "-i", iface, "-d", cidr, "-j", REDIRECT)
            r.append("nat", OUTPUT, "-d", cidr, "-j", REDIRECT)

    if tproxy:
        _tproxy_marks(r, cfg)
    return r


def _dns(r: _Rules, cfg: CaptureConfig, servers: list[str]) -> None:
    """DNS to the agent's 15053, and conntrack zones that keep app<->agent and
    agent<->upstream UDP flows apart (istio-iptables' rules and order)."""
    owners = [(o, i) for o, ids in (("--uid-owner", cfg.proxy_uid), ("--gid-owner", cfg.proxy_gid)) for i in split(ids)]
    dests = [[]] if cfg.capture_all_dns else [["-d", f"{ip}/32"] for ip in servers]
    r.append("raw", "OUTPUT", "-j", OUTPUT_DNS)
    r.append("nat", OUTPUT, "-j", OUTPUT_DNS)
    for d in dests:
        r.append("nat", OUTPUT_DNS, "-p", "tcp", "--dport", "53", *d, "-j", "REDIRECT", "--to-ports", DNS_PORT)
    for owner, ident in owners:  # the agent's own queries upstream
        r.append("nat", OUTPUT_DNS, "-p", "udp", "--dport", "53", "-m", "owner", owner, ident, "-j", "RETURN")
    for d in dests:
        r.append("nat", OUTPUT_DNS, "-p", "udp", "--dport", "53", *d, "-j", "REDIRECT", "--to-port", DNS_PORT)
    for owner, ident in owners:  # agent -> upstream in zone 1, agent -> app answers in zone 2
        for port, number, zone in (("--dport", "53", "1"), ("--sport", DNS_PORT, "2")):
            owned = ("-m", "owner", owner, ident)
            r.append("raw", OUTPUT_DNS, "-p", "udp", port, number, *owned, "-j", "CT", "--zone", zone)
    r.append("raw", "PREROUTING", "-j", INBOUND)
    for d in dests:
        r.append("raw", OUTPUT_DNS, "-p", "udp", "--dport", "53", *d, "-j", "CT", "--zone", "2")
        src = ["-s", d[1]] if d else []
        r.append("raw", INBOUND, "-p", "udp", "--sport", "53", *src, "-j", "CT", "--zone", "1")


def _inbound(r: _Rules, cfg: CaptureConfig) -> None:
    if not cfg.inbound_ports_include.strip():
        return  # nothing inbound is captured
    tproxy = cfg.mode == "TPROXY"
    table = "mangle" if tproxy else "nat"
    if tproxy:
        # New inbound connections go to Envoy's 15006 by TPROXY (the original
        # destination is kept on the socket); packets of established ones are
        # marked so policy routing delivers them locally.
        r.append("mangle", DIVERT, "-j", "MARK", "--set-mark", cfg.tproxy_mark)
        r.append("mangle", DIVERT, "-j", "ACCEPT")
        r.append(
            "mangle", TPROXY, "!", "-d", cfg.host_loopback_cidr, "-p", "tcp", "-j", "TPROXY",
            "--tproxy-mark", f"{cfg.tproxy_mark}/0xffffffff", "--on-port", str(cfg.inbound_capture_port),
        )  # fmt: skip
    r.append(table, "PREROUTING", "-p", "tcp", "-j", INBOUND)
    if cfg.inbound_ports_include.strip() == "*":
        for port in split(cfg.inbound_ports_exclude):
            r.append(table, INBOUND, "-p", "tcp", "--dport", port, "-j", "RETURN")
        if tproxy:
            r.append(
                "mangle", INBOUND, "-p", "tcp", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", DIVERT
            )
            r.append("mangle", INBOUND, "-p", "tcp", "-j", TPROXY)
        else:
            r.append("nat", INBOUND, "-p", "tcp", "-j", IN_REDIRECT)
        return
    for port in split(cfg.inbound_ports_include):
        if tproxy:
            r.append(
                "mangle", INBOUND, "-p", "tcp", "--dport", port,
                "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", DIVERT,
            )  # fmt: skip
            r.append("mangle", INBOUND, "-p", "tcp", "--dport", port, "-j", TPROXY)
        else:
            r.append("nat", INBOUND, "-p", "tcp", "--dport", port, "-j", IN_REDIRECT)


def _tproxy_marks(r: _Rules, cfg: CaptureConfig) -> None:
    mark, lo = cfg.tproxy_mark, cfg.host_loopback_cidr
    # Keep the mark original_src sets as the connection's mark, and restore it
    # on the way out so replies follow the TPROXY routing table.
    r.append("mangle", "PREROUTING", "-p", "tcp", "-m", "mark", "--mark", mark, "-j", "CONNMARK", "--save-mark")
    r.append("mangle", "OUTPUT", "-p", "tcp", "-o", "lo", "-m", "mark", "--mark", mark, "-j", "RETURN")
    for owner, ids in (("--uid-owner", cfg.proxy_uid), ("--gid-owner", cfg.proxy_gid)):
        for ident in split(ids):
            r.append(
                "mangle", "OUTPUT", "!", "-d", lo, "-p", "tcp", "-o", "lo",
                "-m", "owner", owner, ident, "-j", "MARK", "--set-mark", OUTBOUND_MARK,
            )  # fmt: skip
    r.append("mangle", "OUTPUT", "-p", "tcp", "-m", "connmark", "--mark", mark, "-j", "CONNMARK", "--restore-mark")
    r.insert("mangle", INBOUND, 1, "-p", "tcp", "-m", "mark", "--mark", mark, "-j", "RETURN")
    r.insert("mangle", INBOUND, 2, "-p", "tcp", "-s", "127.0.0.6/32", "-i", "lo", "-j", "RETURN")
    r.insert("mangle", INBOUND, 3, "-p", "tcp", "-i", "lo", "-m", "mark", "!", "--mark", OUTBOUND_MARK, "-j", "RETURN")


def render_restore(cfg: CaptureConfig) -> str:
    """The `iptables-restore --noflush` input for these settings."""
    return build_rules(cfg).render()


def route_commands(cfg: CaptureConfig) -> list[list[str]]:
    """`ip` commands TPROXY needs (marked packets are delivered locally); none for REDIRECT.
    `replace`, not `add`: a route left by an earlier run is no error."""
    if cfg.mode != "TPROXY":
        return []
    return [
        ["ip", "-f", "inet", "rule", "add", "fwmark", cfg.tproxy_mark, "lookup", TPROXY_ROUTE_TABLE],
        ["ip", "-f", "inet", "route", "replace", "local", "default", "dev", "lo", "table", TPROXY_ROUTE_TABLE],
    ]


def route_cleanup_commands(cfg: CaptureConfig) -> list[list[str]]:
    """What removes TPROXY's policy routing (tried whatever the mode: a TPROXY run may have left it)."""
    return [
        ["ip", "-f", "inet", "rule", "del", "fwmark", cfg.tproxy_mark, "lookup", TPROXY_ROUTE_TABLE],
        ["ip", "-f", "inet", "route", "flush", "table", TPROXY_ROUTE_TABLE],
    ]


def from_annotations(annotations: Mapping[str, str], base: CaptureConfig | None = None) -> CaptureConfig:
    """The settings Istio's injector passes to istio-iptables for a pod with
    these annotations (`traffic.sidecar.istio.io/*`, `sidecar.istio.io/interceptionMode`)."""
    cfg = base or CaptureConfig()

    def ann(key: str, default: str) -> str:
        return str(annotations.get(ANNOTATION_PREFIX + key, default))

    excluded_in = [*ALWAYS_EXCLUDED_INBOUND, *split(ann("excludeInboundPorts", ""))]
    cfg = replace(
        cfg,
        mode=str(annotations.get(INTERCEPTION_ANNOTATION, cfg.mode)).upper(),
        inbound_ports_include=ann("includeInboundPorts", cfg.inbound_ports_include),
        inbound_ports_exclude=",".join(dict.fromkeys(excluded_in)),
        outbound_ip_ranges_include=ann("includeOutboundIPRanges", cfg.outbound_ip_ranges_include),
        outbound_ip_ranges_exclude=ann("excludeOutboundIPRanges", cfg.outbound_ip_ranges_exclude),
        outbound_ports_include=ann("includeOutboundPorts", cfg.outbound_ports_include),
        outbound_ports_exclude=ann("excludeOutboundPorts", cfg.outbound_ports_exclude),
        kube_virt_interfaces=ann("kubevirtInterfaces", cfg.kube_virt_interfaces),
        exclude_interfaces=ann("excludeInterfaces", cfg.exclude_interfaces),
    )
    try:
        cfg.validate()
    except CaptureConfigError as e:
        raise CaptureConfigError(f"pod annotations: {e}") from None
    return cfg


def _in_netns(netns: str, cmd: list[str]) -> list[str]:
    return in_netns(netns, cmd)


def builtin_rules(cfg: CaptureConfig) -> dict[str, list[str]]:
    """Per table, the rules these settings put into built-in chains (what clean removes),
    in either interception mode: a TPROXY run's mangle marks go also when the settings
    now say REDIRECT (and the other way round)."""
    out: dict[str, list[str]] = {}
    for mode in dict.fromkeys((cfg.mode, "REDIRECT", "TPROXY")):
        for name, t in build_rules(replace(cfg, mode=mode)).tables.items():
            rules = out.setdefault(name, [])
            rules += [r for r in t.rules if r.split()[1] in _Rules.BUILTIN and r not in rules]
    return out


def apply(cfg: CaptureConfig, netns: str = "", run: Runner = run_command) -> str:
    """Install the rules with iptables-restore (inside `netns` when given), as istio-iptables
    does since it reconciles: returns "applied" (there were none), "unchanged" (exactly
    these rules were there already) or "reconciled" (other capture rules were cleaned up first)."""
    rules = build_rules(cfg)
    saved = iptables_state.read_tables(netns, run)
    outcome = "applied"
    if iptables_state.residue(saved):
        expected = {name: t.rules for name, t in rules.tables.items()}
        chains = {name: t.chains for name, t in rules.tables.items()}
        if not iptables_state.has_delta(expected, chains, saved, netns, run):
            return "unchanged"
        clean(cfg, netns, run)
        outcome = "reconciled"
    text = rules.render()
    if cfg.mode == "TPROXY":  # one fwmark rule, not one more per run
        for cmd in route_cleanup_commands(cfg)[:1]:
            while run(in_netns(netns, cmd), None).returncode == 0:
                pass
    for cmd in route_commands(cfg):
        proc = run(in_netns(netns, cmd), None)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    proc = run(in_netns(netns, ["iptables-restore", "--noflush"]), text)
    if proc.returncode != 0:
        raise RuntimeError(f"iptables-restore failed ({proc.returncode}): {proc.stderr.strip()}\ninput:\n{text}")
    return outcome


def clean(cfg: CaptureConfig, netns: str = "", run: Runner = run_command) -> list[str]:
    """Remove the capture rules (istio-iptables' `clean`): the built-in chains' jumps to
    ISTIO_* chains and the rules these settings put there, the ISTIO_* chains, and TPROXY's
    policy routing. Returns the commands that changed something."""
    return iptables_state.clean(builtin_rules(cfg), route_cleanup_commands(cfg), netns, run)


# --- command line (`istiod-py iptables`) -----------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags named as istio-iptables' (short and long)."""
    d = CaptureConfig()
    p.add_argument("-p", "--envoy-port", type=int, default=d.proxy_port, help="outbound capture port (15001)")
    p.add_argument("-z", "--inbound-capture-port", type=int, default=d.inbound_capture_port, help="(15006)")
    p.add_argument("-e", "--inbound-tunnel-port", type=int, default=d.inbound_tunnel_port, help="(15008)")
    p.add_argument("-u", "--proxy-uid", default=d.proxy_uid, help="UIDs whose traffic is not captured (1337)")
    p.add_argument("-g", "--proxy-gid", default=d.proxy_gid, help="GIDs whose traffic is not captured (1337)")
    p.add_argument(
        "-m", "--istio-inbound-interception-mode", dest="mode", default=d.mode, choices=["REDIRECT", "TPROXY"]
    )
    p.add_argument("-t", "--istio-inbound-tproxy-mark", dest="tproxy_mark", default=d.tproxy_mark)
    p.add_argument("-b", "--istio-inbound-ports", dest="inbound_include", default=d.inbound_ports_include)
    p.add_argument("-d", "--istio-local-exclude-ports", dest="inbound_exclude", default=d.inbound_ports_exclude)
    p.add_argument("-i", "--istio-service-cidr", dest="ip_include", default=d.outbound_ip_ranges_include)
    p.add_argument("-x", "--istio-service-exclude-cidr", dest="ip_exclude", default=d.outbound_ip_ranges_exclude)
    p.add_argument("-q", "--istio-local-outbound-ports-include", dest="out_include", default="")
    p.add_argument("-o", "--istio-local-outbound-ports-exclude", dest="out_exclude", default="")
    p.add_argument("-k", "--kube-virt-interfaces", dest="kube_virt", default="")
    p.add_argument("-c", "--istio-exclude-interfaces", dest="exclude_ifaces", default="")
    p.add_argument("--drop-invalid", action="store_true", help="drop out-of-window packets (INVALID_DROP)")
    p.add_argument(
        "--redirect-dns",
        action="store_true",
        default=_env_true("REDIRECT_DNS") or _env_true("ISTIO_META_DNS_CAPTURE"),
        help="capture DNS to the agent's 15053 (default from REDIRECT_DNS / ISTIO_META_DNS_CAPTURE)",
    )
    p.add_argument(
        "--capture-all-dns",
        action="store_true",
        default=_env_true("CAPTURE_ALL_DNS"),
        help="with --redirect-dns: all port-53 traffic, not only to the nameservers (CAPTURE_ALL_DNS)",
    )
    p.add_argument(
        "--dns-servers",
        default=None,
        help="with --redirect-dns: comma-separated nameservers to capture (default: /etc/resolv.conf's)",
    )
    p.add_argument(
        "--annotations",
        default="",
        help="a pod's annotations as a JSON or YAML map (or @FILE): traffic.sidecar.istio.io/* override the flags",
    )
    p.add_argument("--netns", default="", help="apply inside this network namespace (ip netns exec)")
    p.add_argument("-n", "--dry-run", action="store_true", help="print the iptables-restore input, change nothing")
    p.add_argument(
        "--clean",
        action="store_true",
        help="remove the capture rules instead (istio-iptables clean): jumps to ISTIO_* chains, the chains, "
        "TPROXY's ip rule/route; the other flags say which built-in-chain rules were written",
    )


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def resolv_conf_nameservers(path: str = "/etc/resolv.conf") -> list[str]:
    """The IPv4 nameservers of resolv.conf (what istio-iptables captures without capture-all)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            with contextlib.suppress(ValueError):
                if ipaddress.ip_address(parts[1]).version == 4:
                    out.append(parts[1])
    return out


def config_from_args(args: argparse.Namespace) -> CaptureConfig:
    cfg = CaptureConfig(
        proxy_port=args.envoy_port,
        inbound_capture_port=args.inbound_capture_port,
        inbound_tunnel_port=args.inbound_tunnel_port,
        proxy_uid=args.proxy_uid,
        proxy_gid=args.proxy_gid,
        mode=args.mode,
        tproxy_mark=args.tproxy_mark,
        inbound_ports_include=args.inbound_include,
        inbound_ports_exclude=args.inbound_exclude,
        outbound_ip_ranges_include=args.ip_include,
        outbound_ip_ranges_exclude=args.ip_exclude,
        outbound_ports_include=args.out_include,
        outbound_ports_exclude=args.out_exclude,
        kube_virt_interfaces=args.kube_virt,
        exclude_interfaces=args.exclude_ifaces,
        drop_invalid=args.drop_invalid,
        redirect_dns=args.redirect_dns,
        capture_all_dns=args.capture_all_dns,
        dns_servers=args.dns_servers if args.dns_servers is not None else (
            ",".join(resolv_conf_nameservers()) if args.redirect_dns else ""),
    )  # fmt: skip
    if args.annotations:
        import yaml

        text = args.annotations
        if text.startswith("@"):
            with open(text[1:], encoding="utf-8") as f:
                text = f.read()
        data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise CaptureConfigError(f"--annotations: expected a map of strings, got {type(data).__name__}")
        cfg = from_annotations({str(k): str(v) for k, v in data.items()}, cfg)
    cfg.validate()
    return cfg


def dry_run_text(cfg: CaptureConfig, netns: str = "") -> str:
    """What `--dry-run` prints: the `ip` commands TPROXY needs (as comments), then the restore input."""
    head = "".join("# " + " ".join(_in_netns(netns, cmd)) + "\n" for cmd in route_commands(cfg))
    return head + render_restore(cfg)
