"""The capture rules `istiod-py iptables` writes, compared with what istio-iptables
writes for the same settings."""

from __future__ import annotations

import pytest

from istiod_py.cli import main as cli_main
from istiod_py.inject import iptables
from istiod_py.inject.iptables import CaptureConfig, CaptureConfigError, from_annotations, render_restore

# istio-iptables' output for the injector's default arguments
# (-p 15001 -z 15006 -u 1337 -m REDIRECT -i '*' -x "" -b '*' -d 15090,15021,15020).
DEFAULT_REDIRECT = """\
* nat
-N ISTIO_INBOUND
-N ISTIO_REDIRECT
-N ISTIO_IN_REDIRECT
-N ISTIO_OUTPUT
-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A PREROUTING -p tcp -j ISTIO_INBOUND
-A ISTIO_INBOUND -p tcp --dport 15090 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15021 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15020 -j RETURN
-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
-A ISTIO_OUTPUT -j ISTIO_REDIRECT
COMMIT
"""


def _rules(text: str, table: str) -> list[str]:
    out, current = [], ""
    for line in text.splitlines():
        if line.startswith("* "):
            current = line[2:]
        elif current == table and line.startswith(("-A", "-I")):
            out.append(line)
    return out


def test_default_redirect_matches_istio_iptables() -> None:
    assert render_restore(CaptureConfig()) == DEFAULT_REDIRECT


def test_tproxy_marks_and_diverts_inbound_in_mangle() -> None:
    text = render_restore(CaptureConfig(mode="TPROXY"))
    assert text.index("* mangle") < text.index("* nat")
    mangle = _rules(text, "mangle")
    assert "-A ISTIO_DIVERT -j MARK --set-mark 1337" in mangle
    assert "-A ISTIO_TPROXY ! -d 127.0.0.1/32 -p tcp -j TPROXY --tproxy-mark 1337/0xffffffff --on-port 15006" in mangle
    assert mangle[-3:] == [
        "-I ISTIO_INBOUND 1 -p tcp -m mark --mark 1337 -j RETURN",
        "-I ISTIO_INBOUND 2 -p tcp -s 127.0.0.6/32 -i lo -j RETURN",
        "-I ISTIO_INBOUND 3 -p tcp -i lo -m mark ! --mark 1338 -j RETURN",
    ]
    nat = _rules(text, "nat")
    # Inbound is not redirected in nat under TPROXY; outbound still is.
    assert "-A PREROUTING -p tcp -j ISTIO_INBOUND" not in nat
    assert nat[-1] == "-A ISTIO_OUTPUT -j ISTIO_REDIRECT"
    assert iptables.route_commands(CaptureConfig(mode="TPROXY"))[0][-3:] == ["1337", "lookup", "133"]
    assert iptables.route_commands(CaptureConfig()) == []


def test_annotations_narrow_capture() -> None:
    cfg = from_annotations(
        {
            "traffic.sidecar.istio.io/includeInboundPorts": "8080,9090",
            "traffic.sidecar.istio.io/excludeOutboundPorts": "5432",
            "traffic.sidecar.istio.io/includeOutboundIPRanges": "10.96.0.0/12,10.244.0.0/16",
            "traffic.sidecar.istio.io/excludeOutboundIPRanges": "10.96.0.10/32",
        }
    )
    nat = _rules(render_restore(cfg), "nat")
    assert "-A ISTIO_INBOUND -p tcp --dport 8080 -j ISTIO_IN_REDIRECT" in nat
    assert "-A ISTIO_INBOUND -p tcp --dport 9090 -j ISTIO_IN_REDIRECT" in nat
    assert "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT" not in nat
    # Port exclusions come before the owner rules, CIDR exclusions before inclusions.
    assert nat.index("-A ISTIO_OUTPUT -p tcp --dport 5432 -j RETURN") < nat.index(
        "-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN"
    )
    assert "-A ISTIO_OUTPUT -p udp --dport 5432 -j RETURN" in nat
    assert nat[-3:] == [
        "-A ISTIO_OUTPUT -d 10.96.0.10/32 -j RETURN",
        "-A ISTIO_OUTPUT -d 10.96.0.0/12 -j ISTIO_REDIRECT",
        "-A ISTIO_OUTPUT -d 10.244.0.0/16 -j ISTIO_REDIRECT",
    ]
    assert "-A ISTIO_OUTPUT -j ISTIO_REDIRECT" not in nat


def test_exclude_inbound_ports_annotation_adds_to_istio_ports() -> None:
    cfg = from_annotations({"traffic.sidecar.istio.io/excludeInboundPorts": "8081, 15020"})
    assert cfg.inbound_ports_exclude == "15090,15021,15020,8081"
    assert "-A ISTIO_INBOUND -p tcp --dport 8081 -j RETURN" in _rules(render_restore(cfg), "nat")


def test_interception_mode_annotation() -> None:
    assert from_annotations({"sidecar.istio.io/interceptionMode": "TPROXY"}).mode == "TPROXY"


def test_empty_inbound_ports_captures_no_inbound() -> None:
    nat = _rules(render_restore(CaptureConfig(inbound_ports_include="")), "nat")
    assert not any(r.startswith("-A PREROUTING") for r in nat)
    assert not any("ISTIO_INBOUND -p tcp -j" in r for r in nat)


def test_loopback_in_include_ranges_keeps_app_to_self_captured() -> None:
    nat = _rules(render_restore(CaptureConfig(outbound_ip_ranges_include="127.0.0.0/8")), "nat")
    assert "-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN" not in nat
    assert "-A ISTIO_OUTPUT -d 127.0.0.0/8 -j ISTIO_REDIRECT" in nat


def test_multiple_uids_and_interfaces() -> None:
    text = render_restore(CaptureConfig(proxy_uid="1337,0", exclude_interfaces="eth9", kube_virt_interfaces="k0"))
    nat = _rules(text, "nat")
    assert "-A ISTIO_OUTPUT -m owner --uid-owner 0 -j RETURN" in nat
    assert nat[0] == "-A PREROUTING -i eth9 -j RETURN"
    assert "-I PREROUTING 1 -i k0 -j RETURN" in nat
    assert "-I PREROUTING 1 -i k0 -j ISTIO_REDIRECT" in nat


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ({"traffic.sidecar.istio.io/excludeOutboundPorts": "http"}, "outbound ports exclude: 'http'"),
        ({"traffic.sidecar.istio.io/includeOutboundIPRanges": "10.0.0.0/33"}, "'10.0.0.0/33' is not a CIDR"),
        ({"traffic.sidecar.istio.io/excludeOutboundIPRanges": "*"}, "'*' is not allowed"),
        ({"sidecar.istio.io/interceptionMode": "NONE"}, "must be REDIRECT or TPROXY"),
    ],
)
def test_bad_annotations_are_named(annotations: dict[str, str], message: str) -> None:
    with pytest.raises(CaptureConfigError, match="pod annotations") as e:
        from_annotations(annotations)
    assert message in str(e.value)


def test_cli_dry_run_prints_restore_input(capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli_main(
        ["iptables", "--dry-run", "--annotations", '{"traffic.sidecar.istio.io/excludeOutboundPorts": "9999"}']
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "-A ISTIO_OUTPUT -p tcp --dport 9999 -j RETURN" in out
    assert out.startswith("* nat\n") and out.endswith("COMMIT\n")


def test_cli_rejects_bad_flag_value(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["iptables", "--dry-run", "-o", "99999"]) == 2
    assert "outbound ports exclude: '99999'" in capsys.readouterr().err
