"""DNS capture in `istiod-py iptables` (--redirect-dns / ISTIO_META_DNS_CAPTURE),
compared with istio-iptables' rules for the same settings (its dns-uid-gid case:
nameserver 127.0.0.53, proxy UIDs 3,4 and GIDs 1,2, nothing else captured)."""
# ruff: noqa: E501 - istio-iptables' rule lines are longer than the code's limit

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from istiod_py.cli import main as cli_main
from istiod_py.inject import iptables
from istiod_py.inject.iptables import CaptureConfig, CaptureConfigError, render_restore

ISTIO_DNS_UID_GID = """\
* nat
-N ISTIO_INBOUND
-N ISTIO_REDIRECT
-N ISTIO_IN_REDIRECT
-N ISTIO_OUTPUT
-N ISTIO_OUTPUT_DNS
-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp -m multiport ! --dports 53,15008 -m owner --uid-owner 3 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -p tcp ! --dport 53 -m owner ! --uid-owner 3 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 3 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp -m multiport ! --dports 53,15008 -m owner --uid-owner 4 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -p tcp ! --dport 53 -m owner ! --uid-owner 4 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 4 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 1 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -p tcp ! --dport 53 -m owner ! --gid-owner 1 -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner 1 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 2 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -p tcp ! --dport 53 -m owner ! --gid-owner 2 -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner 2 -j RETURN
-A ISTIO_OUTPUT -j ISTIO_OUTPUT_DNS
-A ISTIO_OUTPUT_DNS -p tcp --dport 53 -d 127.0.0.53/32 -j REDIRECT --to-ports 15053
-A ISTIO_OUTPUT_DNS -p udp --dport 53 -m owner --uid-owner 3 -j RETURN
-A ISTIO_OUTPUT_DNS -p udp --dport 53 -m owner --uid-owner 4 -j RETURN
-A ISTIO_OUTPUT_DNS -p udp --dport 53 -m owner --gid-owner 1 -j RETURN
-A ISTIO_OUTPUT_DNS -p udp --dport 53 -m owner --gid-owner 2 -j RETURN
-A ISTIO_OUTPUT_DNS -p udp --dport 53 -d 127.0.0.53/32 -j REDIRECT --to-port 15053
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
COMMIT
* raw
-N ISTIO_OUTPUT_DNS
-N ISTIO_INBOUND
-A OUTPUT -j ISTIO_OUTPUT_DNS
-A ISTIO_OUTPUT_DNS -p udp --dport 53 -m owner --uid-owner 3 -j CT --zone 1
-A ISTIO_OUTPUT_DNS -p udp --sport 15053 -m owner --uid-owner 3 -j CT --zone 2
-A ISTIO_OUTPUT_DNS -p udp --dport 53 -m owner --uid-owner 4 -j CT --zone 1
-A ISTIO_OUTPUT_DNS -p udp --sport 15053 -m owner --uid-owner 4 -j CT --zone 2
-A ISTIO_OUTPUT_DNS -p udp --dport 53 -m owner --gid-owner 1 -j CT --zone 1
-A ISTIO_OUTPUT_DNS -p udp --sport 15053 -m owner --gid-owner 1 -j CT --zone 2
-A ISTIO_OUTPUT_DNS -p udp --dport 53 -m owner --gid-owner 2 -j CT --zone 1
-A ISTIO_OUTPUT_DNS -p udp --sport 15053 -m owner --gid-owner 2 -j CT --zone 2
-A PREROUTING -j ISTIO_INBOUND
-A ISTIO_OUTPUT_DNS -p udp --dport 53 -d 127.0.0.53/32 -j CT --zone 2
-A ISTIO_INBOUND -p udp --sport 53 -s 127.0.0.53/32 -j CT --zone 1
COMMIT
"""


def _dns_case(**kw: object) -> CaptureConfig:
    base = CaptureConfig(proxy_uid="3,4", proxy_gid="1,2", inbound_ports_include="", outbound_ip_ranges_include="",
                         redirect_dns=True, dns_servers="127.0.0.53")  # fmt: skip
    return replace(base, **kw)  # type: ignore[arg-type]


def test_dns_rules_match_istio_iptables() -> None:
    assert render_restore(_dns_case()) == ISTIO_DNS_UID_GID


def test_capture_all_dns_has_no_destinations() -> None:
    text = render_restore(_dns_case(capture_all_dns=True, dns_servers=""))
    assert "-A ISTIO_OUTPUT_DNS -p tcp --dport 53 -j REDIRECT --to-ports 15053" in text
    assert "-A ISTIO_OUTPUT_DNS -p udp --dport 53 -j REDIRECT --to-port 15053" in text
    assert "-A ISTIO_OUTPUT_DNS -p udp --dport 53 -j CT --zone 2" in text
    assert "-A ISTIO_INBOUND -p udp --sport 53 -j CT --zone 1" in text


def test_redirect_dns_without_servers_captures_no_dns() -> None:
    # As istio-iptables: neither capture-all nor a nameserver -> DNS capture disabled.
    assert render_restore(_dns_case(dns_servers="")) == render_restore(_dns_case(redirect_dns=False))
    assert "DNS" not in render_restore(_dns_case(dns_servers=""))


def test_ipv6_nameservers_are_skipped_and_bad_ones_refused() -> None:
    text = render_restore(_dns_case(dns_servers="fd00::53,10.0.0.10"))
    assert "-d 10.0.0.10/32 -j REDIRECT --to-ports 15053" in text and "fd00" not in text
    with pytest.raises(CaptureConfigError, match="DNS servers: 'resolver' is not an IP address"):
        render_restore(_dns_case(dns_servers="resolver"))


def test_resolv_conf_nameservers(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# x\nsearch svc.cluster.local\nnameserver 10.96.0.10\nnameserver fd00::a\noptions ndots:5\n")
    assert iptables.resolv_conf_nameservers(str(conf)) == ["10.96.0.10"]
    assert iptables.resolv_conf_nameservers(str(tmp_path / "missing")) == []


def test_cli_flags_and_env(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["iptables", "--dry-run", "--redirect-dns", "--dns-servers", "10.0.0.10"]) == 0
    assert "-A ISTIO_OUTPUT_DNS -p udp --dport 53 -d 10.0.0.10/32 -j REDIRECT --to-port 15053" in capsys.readouterr().out
    # ISTIO_META_DNS_CAPTURE=true turns it on, as for istio-iptables; CAPTURE_ALL_DNS widens it.
    monkeypatch.setenv("ISTIO_META_DNS_CAPTURE", "true")
    monkeypatch.setenv("CAPTURE_ALL_DNS", "true")
    assert cli_main(["iptables", "--dry-run"]) == 0
    assert "-A ISTIO_OUTPUT_DNS -p tcp --dport 53 -j REDIRECT --to-ports 15053" in capsys.readouterr().out
