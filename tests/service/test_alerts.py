"""Alerts over real HTTP: a spike ingested raises an anomaly alert that is pushed on the
twin's SSE stream, listed at GET /twins/{name}/alerts, acknowledged once (write key),
and still there after the service restarts on the same SQLite file."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx

from lmtwin.service import Settings
from tests.service.support import XU, Chromium, linear_rows, live_server, wait_for
from tests.service.test_live import _events

ADMIN = "alerts-admin-key-0123456789abcdef"
OUT = Path(__file__).resolve().parents[2] / "out" / "service"


def _settings(path: str) -> Settings:
    # a short calibration window, so that 80 readings are enough to flag a spike
    return Settings(store=path, admin_key=ADMIN, alert_alpha=0.05, alert_window=100)


def test_alerts_are_raised_pushed_listed_and_acknowledged(tmp_path):
    db = str(tmp_path / "alerts.db")
    with live_server(_settings(db)) as url:
        admin = httpx.Client(base_url=url, timeout=10,
                             headers={"Authorization": f"Bearer {ADMIN}"})
        admin.post("/twins", json={"name": "plant", "variables": XU}).raise_for_status()
        keys = {scope: admin.post("/keys", json={"name": scope, "twins": ["plant"],
                                                  "scopes": [scope]}).json()["key"]
                for scope in ("read", "write")}
        reader = httpx.Client(base_url=url, timeout=10,
                              headers={"Authorization": f"Bearer {keys['read']}"})
        writer = httpx.Client(base_url=url, timeout=10,
                              headers={"Authorization": f"Bearer {keys['write']}"})
        writer.post("/twins/plant/observations/batch",
                    json={"observations": linear_rows(80)}).raise_for_status()
        quiet = reader.get("/twins/plant/alerts")
        assert quiet.status_code == 200
        before = quiet.json()
        assert all(a["kind"] in ("anomaly", "drift") for a in before)
        last = reader.get("/twins/plant/state", params={"episode": "e"}).json()["values"]

        with httpx.Client(base_url=url, timeout=10) as sse, sse.stream(
                "GET", "/twins/plant/events",
                params={"episode": "e", "key": keys["read"]}) as stream:
            lines = stream.iter_lines()
            _events(lines, "state")
            # a reading 40 m off the twin's prediction (the system moves by < 1 m a step)
            writer.post("/twins/plant/observations", json={
                "episode": "e", "t": 80, "values": {"x": 0.9 * last["x"] + last["u"] + 40,
                                                     "u": 0.0}}).raise_for_status()
            pushed = _events(lines, "alert")
        assert pushed["kind"] == "anomaly" and pushed["variable"] == "x"
        assert pushed["p_value"] <= 0.05 and pushed["acknowledged"] is None

        listed = reader.get("/twins/plant/alerts", params={"after": pushed["id"] - 1}).json()
        assert listed[0] == pushed
        alert_id = pushed["id"]
        assert reader.post(f"/twins/plant/alerts/{alert_id}/ack").status_code == 403
        done = writer.post(f"/twins/plant/alerts/{alert_id}/ack",
                           json={"note": "sensor cable reseated"})
        assert done.status_code == 200, done.text
        assert done.json()["acknowledged"]["note"] == "sensor cable reseated"
        assert done.json()["acknowledged"]["by"]  # the key that acknowledged it

        # bad input: typed errors, and nothing changes
        snapshot = reader.get("/twins/plant/alerts").json()
        again = writer.post(f"/twins/plant/alerts/{alert_id}/ack")
        assert again.status_code == 409 and again.json()["error"] == "Conflict"
        unknown = writer.post("/twins/plant/alerts/999999/ack")
        assert unknown.status_code == 404 and unknown.json()["error"] == "NotFound"
        assert writer.post("/twins/plant/alerts/0/ack").status_code == 422
        assert writer.post(f"/twins/plant/alerts/{alert_id}/ack",
                           json={"note": "x", "extra": 1}).status_code == 422
        assert admin.get("/twins/nope/alerts").status_code == 404
        assert reader.get("/twins/plant/alerts", params={"limit": 0}).status_code == 422
        assert reader.get("/twins/plant/alerts").json() == snapshot
        open_only = reader.get("/twins/plant/alerts", params={"unacknowledged": True}).json()
        assert alert_id not in [a["id"] for a in open_only]

    # a restarted service on the same file shows the same alerts and acknowledgements
    with live_server(_settings(db)) as url:
        admin = httpx.Client(base_url=url, timeout=10,
                             headers={"Authorization": f"Bearer {ADMIN}"})
        assert admin.get("/twins/plant/alerts").json() == snapshot


def test_dashboard_alerts_panel_in_chromium(tmp_path):
    """The open alerts appear on the dashboard, a new one arrives live over SSE, and the
    page's button acknowledges one (a write key), all under the page's CSP."""
    browser = Chromium(tmp_path / "profile")
    try:
        with live_server(_settings(str(tmp_path / "d.db"))) as url:
            admin = httpx.Client(base_url=url, timeout=10,
                                 headers={"Authorization": f"Bearer {ADMIN}"})
            admin.post("/twins", json={"name": "plant", "variables": XU}).raise_for_status()
            admin.post("/twins/plant/observations/batch",
                       json={"observations": linear_rows(80, episode="default")}
                       ).raise_for_status()

            def spike(t: int) -> None:
                x = admin.get("/twins/plant/state").json()["values"]["x"]
                admin.post("/twins/plant/observations", json={
                    "t": t, "values": {"x": x + 50.0, "u": 0.0}}).raise_for_status()
                # the next reading back to normal, so the twin is not left on the spike
                admin.post("/twins/plant/observations", json={
                    "t": t + 1, "values": {"x": 0.9 * x, "u": 0.0}}).raise_for_status()

            spike(80)
            first = [a["id"] for a in admin.get("/twins/plant/alerts",
                                                params={"unacknowledged": True}).json()]
            assert first
            key = admin.post("/keys", json={"name": "operator", "twins": ["plant"],
                                            "scopes": ["read", "write"]}).json()["key"]
            browser.page("Page.navigate", url=f"{url}/twins/plant/dashboard?key={key}")
            wait_for(lambda: browser.eval("document.body && document.body.dataset.loaded"),
                     timeout=20)
            assert browser.eval("document.body.dataset.loaded") == "yes"
            rows = "[...document.querySelectorAll('#alerts tbody tr')]"
            shown = browser.eval(f"{rows}.map(r => Number(r.dataset.alert))")
            assert sorted(shown) == sorted(first[-50:])
            assert "anomaly" in browser.eval(f"{rows}.map(r => r.className)")
            wait_for(lambda: browser.eval("document.getElementById('status').textContent")
                     == "live", timeout=10)
            spike(90)  # a new alert reaches the open page over Server-Sent Events
            newest = admin.get("/twins/plant/alerts").json()[-1]["id"]
            assert newest > max(first)  # the second spike raised a new alert
            wait_for(lambda: newest in browser.eval(
                f"{rows}.map(r => Number(r.dataset.alert))"), timeout=10)
            browser.eval(f"document.querySelector('#alerts button[data-id=\"{newest}\"]')"
                         ".click()")
            wait_for(lambda: newest not in browser.eval(
                f"{rows}.map(r => Number(r.dataset.alert))"), timeout=10)
            assert "acknowledged" in browser.eval(
                "document.getElementById('alert-msg').textContent")
            done = {a["id"]: a for a in admin.get("/twins/plant/alerts").json()}
            assert done[newest]["acknowledged"]["by"]
            shot = base64.b64decode(browser.page("Page.captureScreenshot", format="png")["data"])
            OUT.mkdir(parents=True, exist_ok=True)
            (OUT / "dashboard-alerts.png").write_bytes(shot)
            assert shot[:8] == b"\x89PNG\r\n\x1a\n"
            browser.page("Page.navigate", url="about:blank")
            admin.close()
    finally:
        browser.close()


def test_the_service_watches_with_the_monitors_defaults(tmp_path):
    """The service's alert settings are those the detection bench chose (the Monitor's
    defaults), not a second set nobody measured."""
    from lmtwin.intervene.alerts import Monitor
    from lmtwin.store import MemoryStore

    s = Settings(store=str(tmp_path / "x.db"), admin_key=ADMIN)
    service = Monitor(store=MemoryStore(), name="a", alpha=s.alert_alpha, spike=s.alert_spike,
                      window=s.alert_window, threshold=s.alert_threshold,
                      refractory=s.alert_refractory)
    library = Monitor(store=MemoryStore(), name="b")
    for field in ("alpha", "spike", "window", "threshold", "refractory", "h", "k"):
        assert getattr(service, field) == getattr(library, field), field
    assert (library.alpha, library.spike, library.refractory) == (0.0, 0.0005, 50)
