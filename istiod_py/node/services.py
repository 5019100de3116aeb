"""Services inside each pod: kube-proxy's DNAT rules and a hosts file for names.

The service CIDR is on-link on each pod's eth0 and answered by nobody (netns.py),
so a ClusterIP works only through rules. As kube-proxy (iptables mode), a chain
KUBE-SERVICES in the pod's nat table DNATs ClusterIP:port to one ready endpoint
(statistic/random, equal weights). Its jump is appended to nat OUTPUT after the
init containers ran, so in a pod with a sidecar the capture rules (ISTIO_OUTPUT,
REDIRECT to 15001) see the app's connection first, and only the proxy's own
traffic (UID/GID 1337, which ISTIO_OUTPUT returns) meets the DNAT, as with the
real kube-proxy in the host's namespace. Replies come straight back to the
client pod, whose conntrack undoes the DNAT.

No DNS server runs: `ip netns exec` bind-mounts /etc/netns/NETNS/hosts over
/etc/hosts, so the node writes there every Service's ClusterIP under
NAME.NS.svc.cluster.local, NAME.NS.svc, NAME.NS and (same namespace) NAME.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from istiod_py.kube.client import JsonObj

CHAIN = "KUBE-SERVICES"
ETC_NETNS = Path("/etc/netns")


def _ready(ep: Mapping[str, Any]) -> bool:
    cond = ep.get("conditions") or {}
    return cond.get("ready") is not False and cond.get("terminating") is not True


def service_rules(services: Iterable[JsonObj], slices: Iterable[JsonObj]) -> str:
    """The KUBE-SERVICES chain as iptables-restore input for the nat table (--noflush)."""
    by_svc: dict[tuple[str, str], list[JsonObj]] = {}
    for s in slices:
        meta = s.get("metadata") or {}
        svc = (meta.get("labels") or {}).get("kubernetes.io/service-name")
        if svc:
            by_svc.setdefault((str(meta.get("namespace")), str(svc)), []).append(s)
    lines = ["*nat", f":{CHAIN} - [0:0]"]
    for svc in sorted(services, key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"])):
        meta, spec = svc["metadata"], svc.get("spec") or {}
        vip = spec.get("clusterIP")
        if not vip or vip == "None":
            continue
        for port in spec.get("ports") or []:
            proto = str(port.get("protocol") or "TCP").lower()
            targets: list[str] = []
            for sl in by_svc.get((str(meta["namespace"]), str(meta["name"])), []):
                pnum = next(
                    (p.get("port") for p in sl.get("ports") or [] if (p.get("name") or "") == (port.get("name") or "")),
                    None,
                )
                if pnum is None:
                    continue
                for ep in sl.get("endpoints") or []:
                    if _ready(ep):
                        targets += [f"{a}:{pnum}" for a in ep.get("addresses") or [] if ":" not in a]
            targets = sorted(set(targets))
            match = f"-A {CHAIN} -d {vip}/32 -p {proto} -m {proto} --dport {port['port']}"
            for i, t in enumerate(targets):
                left = len(targets) - i
                pick = f" -m statistic --mode random --probability {1 / left:.5f}" if left > 1 else ""
                lines.append(f"{match}{pick} -j DNAT --to-destination {t}")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def apply_rules(netns: str, rules: str) -> None:
    """Replace KUBE-SERVICES in `netns` and make sure nat OUTPUT jumps to it (once, at the end)."""
    proc = subprocess.run(
        ["ip", "netns", "exec", netns, "iptables-restore", "--noflush"], input=rules, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"iptables-restore in {netns}: {proc.stderr.strip()}")
    base = ["ip", "netns", "exec", netns, "iptables", "-t", "nat"]
    jump = ["OUTPUT", "-j", CHAIN]
    if subprocess.run([*base, "-C", *jump], capture_output=True).returncode != 0:
        proc = subprocess.run([*base, "-A", *jump], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"iptables -t nat -A OUTPUT -j {CHAIN} in {netns}: {proc.stderr.strip()}")


def hosts_file(services: Iterable[JsonObj], namespace: str, pod_ip: str, pod_name: str) -> str:
    lines = ["127.0.0.1 localhost", f"{pod_ip} {pod_name}"]
    for svc in services:
        meta, spec = svc["metadata"], svc.get("spec") or {}
        vip = spec.get("clusterIP")
        if not vip or vip == "None":
            continue
        name, ns = meta["name"], meta["namespace"]
        names = [f"{name}.{ns}.svc.cluster.local", f"{name}.{ns}.svc", f"{name}.{ns}"]
        if ns == namespace:
            names.append(str(name))
        lines.append(f"{vip} {' '.join(names)}")
    return "\n".join(lines) + "\n"


def write_hosts(netns: str, text: str) -> None:
    d = ETC_NETNS / netns
    d.mkdir(parents=True, exist_ok=True)
    path = d / "hosts"
    # In place: processes already started hold a bind mount of this very file.
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    path.chmod(0o644)


def remove_hosts(netns: str) -> None:
    d = ETC_NETNS / netns
    for p in d.glob("*"):
        p.unlink(missing_ok=True)
    if d.exists():
        d.rmdir()
