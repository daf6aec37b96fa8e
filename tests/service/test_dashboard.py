"""The dashboard page in a real headless Chromium, driven over the DevTools protocol
(``--remote-debugging-pipe``, so no extra library): it loads the twin's state and
history, follows live updates, and a screenshot is saved to out/service/dashboard.png."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx

from lmtwin.service import Settings
from tests.service.support import XU, Chromium, linear_rows, live_server, wait_for

OUT = Path(__file__).resolve().parents[2] / "out" / "service"


def test_dashboard_renders_and_follows_live_updates(tmp_path):
    admin = "dashboard-admin-key-0123456789"
    browser = Chromium(tmp_path / "profile")
    try:
        with live_server(Settings(store=str(tmp_path / "d.db"), admin_key=admin)) as url:
            http = httpx.Client(base_url=url, timeout=10,
                                headers={"Authorization": f"Bearer {admin}"})
            http.post("/twins", json={"name": "plant", "variables": [
                {**XU[0], "noise": {"sensor": 0.05, "process": 0.05}}, XU[1]],
                "knowledge": ["the push acts at once", "<img src=x onerror=alert(1)>"]}
            ).raise_for_status()
            http.post("/twins/plant/observations/batch",
                      json={"observations": linear_rows(60, episode="default")}
                      ).raise_for_status()
            # observe-then-predict for a while, so the twin has scores and intervals
            last = http.get("/twins/plant/state").json()["values"]
            x = 0.9 * last["x"] + last["u"]
            for t in range(60, 85):
                u = 0.5 if t % 3 == 0 else 0.0
                http.post("/twins/plant/observations",
                          json={"t": t, "values": {"x": x, "u": u}}).raise_for_status()
                http.post("/twins/plant/predict", json={"state": {"x": x}, "action": {"u": u},
                                                        "episode": "default"}
                          ).raise_for_status()
                x = 0.9 * x + u
            key = http.post("/keys", json={"name": "viewer", "twins": ["plant"],
                                           "scopes": ["read"]}).json()["key"]
            # record any Content-Security-Policy violation from the page's first moment
            browser.page("Page.enable")
            browser.page("Page.addScriptToEvaluateOnNewDocument", source=(
                "window.__csp = []; document.addEventListener('securitypolicyviolation',"
                " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"))
            page = httpx.get(f"{url}/twins/plant/dashboard", params={"key": key})
            assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
            browser.page("Page.navigate", url=f"{url}/twins/plant/dashboard?key={key}")
            wait_for(lambda: browser.eval("document.body && document.body.dataset.loaded"),
                     timeout=20)
            assert browser.eval("document.body.dataset.loaded") == "yes"
            # the page runs under its policy without tripping it (scripts by nonce)
            rows = browser.eval("[...document.querySelectorAll('#state tbody tr')]"
                                ".map(r => r.dataset.variable)")
            assert sorted(rows) == ["u", "x"]
            text = browser.eval("document.body.innerText")
            assert "the push acts at once" in text
            # text from the twin is shown as text, never run as markup
            assert "<img src=x onerror=alert(1)>" in text
            assert browser.eval("document.querySelectorAll('#notes img').length") == 0
            fused = browser.eval("document.querySelector('#state tr[data-variable=x]')"
                                 ".children[2].textContent")
            assert fused  # the Kalman filter's estimate is shown beside the reading
            nxt = browser.eval("document.querySelector('#state tr[data-variable=x] .next')"
                               ".textContent")
            assert nxt and float(nxt.split()[0]) > 0  # the twin's next-step prediction
            shown = browser.eval("[...document.querySelectorAll('#predictors tbody tr')]"
                                 ".map(r => r.dataset.predictor)")
            assert shown == ["persistence", "numeric", "combined"]
            assert "[" in nxt  # calibrated: the 90% interval is shown
            assert "intervals held the outcome" in browser.eval(
                "document.getElementById('coverage').textContent")
            wait_for(lambda: browser.eval("document.getElementById('status').textContent")
                     == "live", timeout=10)
            # a new observation reaches the open page over Server-Sent Events
            http.post("/twins/plant/observations",
                      json={"t": 85, "values": {"x": 42.0, "u": 0.0}}).raise_for_status()
            wait_for(lambda: browser.eval(
                "document.querySelector('#state tr[data-variable=x]').children[1]"
                ".textContent") == "42.000", timeout=10)
            assert browser.eval("document.getElementById('count').textContent") == "1"
            assert browser.eval("window.__csp") == []
            shot = browser.page("Page.captureScreenshot", format="png")
            OUT.mkdir(parents=True, exist_ok=True)
            png = base64.b64decode(shot["data"])
            (OUT / "dashboard.png").write_bytes(png)
            assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
            # without a key the page is refused
            assert httpx.get(f"{url}/twins/plant/dashboard").status_code == 401
            browser.page("Page.navigate", url="about:blank")
            http.close()
    finally:
        browser.close()
