"""The live mesh page (/mesh on the debug port) in a real headless Chromium (Debian's
`chromium` driven by selenium through `chromedriver`; scripts/browser.sh installs
them): the demo sample's services appear; a NACK from a real Envoy appears as such
(the proxy's LDS turns STALE, the NACK is listed); an AuthorizationPolicy change
redraws the client -> reviews edge as denied, all without reloading the page.

With MESH_PAGE_SCREENSHOT=PATH the final page is saved there (docs/img/mesh-page.png)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.configs import client_sidecar
from tests.support.envoy import EnvoyProcess, envoy_factory_context
from tests.support.mesh import Mesh
from tests.support.net import allocate_ip

pytestmark = pytest.mark.e2e

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "samples" / "demo"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,1100",
]

BAD_LUA = """
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: broken-lua, namespace: default}
spec:
  workloadSelector: {labels: {app: client}}
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_OUTBOUND
      listener:
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
            subFilter: {name: envoy.filters.http.router}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.lua
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
          default_source_code: {inline_string: "function envoy_on_request(h) this is not lua"}
"""

DENY_CLIENT = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-deny-client, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  action: DENY
  rules: [{from: [{source: {principals: ["cluster.local/ns/default/sa/client"]}}]}]
"""


def browser(tmp: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "chromium/chromedriver missing: run scripts/browser.sh (test.sh does)"
    os.environ["SE_OFFLINE"] = "true"  # never let selenium fetch a browser or a driver
    opts = Options()
    opts.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'chromium-profile'}"]:
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)


def until(cond: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = cond()
            if last:
                return last
        except Exception as e:  # the page redraws while we read it
            last = e
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


@pytest.fixture
def mesh(tmp_path: Path, envoy_bin: str) -> Iterator[tuple[Mesh, EnvoyProcess]]:
    with envoy_factory_context(tmp_path / "envoy") as envoys:
        # istiod's NACK behaviour (the proxy stays STALE until fixed): quarantine off.
        m = Mesh(tmp_path, envoys, extra_args=["--no-nack-quarantine"])
        # The demo's services, workloads and routing, verbatim (its Sidecars bind fixed
        # addresses; a client Sidecar on a fresh address stands in for them).
        for name in ("services.yaml", "workloads.yaml", "routing.yaml"):
            m.write(f"demo-{name}", (DEMO / name).read_text())
        m.write("client.yaml", client_sidecar(allocate_ip()))
        m.start()
        try:
            client = m.sidecar("client", labels={"app": "client"}, service_account="client")
            m.wait_synced()
            yield m, client
        finally:
            m.stop()


def test_mesh_page_live(mesh: tuple[Mesh, EnvoyProcess], tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    m, _client = mesh
    drv = browser(tmp_path)
    try:
        drv.get(f"http://{m.host}:{m.debug_port}/mesh")

        def hosts() -> list[str]:
            return [str(e.get_attribute("data-host")) for e in drv.find_elements(By.CSS_SELECTOR, "#services tbody tr")]

        want = sorted(f"{s}.default.svc.cluster.local" for s in ("productpage", "ratings", "reviews"))
        until(lambda: hosts() == want, "the demo's services")

        def lds() -> str:
            return str(
                drv.find_element(By.CSS_SELECTOR, '#proxies tr[data-proxy="client.default"] td[data-type="LDS"]').text
            )

        assert until(lambda: lds() == "SYNCED", "client LDS SYNCED")

        def edge() -> str:
            e = drv.find_element(By.CSS_SELECTOR, 'line[data-from="client.default"][data-to="reviews-v1.default"]')
            return str(e.get_attribute("data-state"))

        assert until(lambda: edge() == "allow", "an allowed client -> reviews-v1 edge")
        page_id = drv.execute_script("return window.performance.timeOrigin")

        m.write("bad.yaml", BAD_LUA)
        until(lambda: lds() == "STALE", "client LDS STALE on the page")
        client_nack = '#nacks li[data-proxy="client.default"][data-type="LDS"]'
        nack = until(lambda: drv.find_element(By.CSS_SELECTOR, client_nack), "the NACK listed")
        assert nack.get_attribute("data-current") == "true" and "lua" in nack.text.lower()
        # The running state's analysis: the filter inserts without a priority (Istio's IST0151).
        until(lambda: any("[IST0151] (EnvoyFilter default/broken-lua" in e.text
                          for e in drv.find_elements(By.CSS_SELECTOR, "#analysis li")), "IST0151 listed")  # fmt: skip
        assert any(msg["code"] == "IST0151" for msg in m.debug("/debug/configz")["analysis"])

        m.write("authz.yaml", DENY_CLIENT)
        assert until(lambda: edge() == "deny", "the client -> reviews-v1 edge redrawn as denied")
        title = drv.find_element(
            By.CSS_SELECTOR, 'line[data-from="client.default"][data-to="reviews-v1.default"] title'
        )
        assert "default/reviews-deny-client" in title.get_attribute("textContent")
        # productpage is not selected by the policy: its edge stays allowed.
        assert drv.find_element(By.CSS_SELECTOR, 'line[data-from="client.default"][data-to="productpage-v1.default"]'
                                ).get_attribute("data-state") == "allow"  # fmt: skip

        m.remove("bad.yaml")
        until(lambda: lds() == "SYNCED", "client LDS SYNCED again")
        fixed = drv.find_element(By.CSS_SELECTOR, client_nack)
        assert fixed.get_attribute("data-current") == "false"
        # Everything above happened in one page load: updates arrive by polling, not reloads.
        assert drv.execute_script("return window.performance.timeOrigin") == page_id
        shot = os.environ.get("MESH_PAGE_SCREENSHOT") or str(tmp_path / "mesh.png")
        m.write("bad.yaml", BAD_LUA)  # show a NACK in the screenshot
        until(lambda: lds() == "STALE", "client LDS STALE again")
        assert drv.save_screenshot(shot) and Path(shot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        drv.quit()
