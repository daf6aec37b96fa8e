"""The intervene routes in-process: what-if, optimise and time-to with the service's keys,
cost limits and error mapping."""

from __future__ import annotations

import pytest

from lmtwin.service import Settings
from tests.service.support import XU, client


def noisy_rows(n: int) -> list[dict]:
    import numpy as np

    rng = np.random.default_rng(0)
    rows, x = [], 5.0
    for t in range(n):
        u = float(rng.choice([0.0, 0.5, 1.0]))
        rows.append({"episode": "e", "t": float(t), "values": {"x": x, "u": u}})
        x = 0.9 * x + u + 0.05 * rng.standard_normal()
    return rows


@pytest.fixture
def api(tmp_path):
    with client(Settings(store=str(tmp_path / "twins.db"), max_simulation_steps=20_000,
                         cost_budget=1_000_000)) as c:
        assert c.post("/twins", json={"name": "plant", "variables": XU}).status_code == 201
        for lo in range(0, 300, 100):
            r = c.post("/twins/plant/observations/batch",
                       json={"observations": noisy_rows(300)[lo:lo + 100]})
            assert r.status_code == 201, r.text
        yield c


GOAL = {"minimise": {"x": 1.0}, "setpoints": {"x": 3.0}}


def test_whatif_optimise_and_time_to(api):
    r = api.post("/twins/plant/whatif", json={
        "state": {"x": 5.0}, "plans": {"rest": [{"u": 0.0}] * 6, "push": [{"u": 1.0}] * 6},
        "objective": GOAL, "n_paths": 100})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["beats"]["rest"]["push"] > 0.9
    assert len(body["plans"]["rest"]["paths"]["median"]["x"]) == 7
    r = api.post("/twins/plant/optimise", json={
        "state": {"x": 2.0}, "objective": {"minimise": {"x": 1.0}, "setpoints": {"x": 4.0}},
        "horizon": 6, "constraints": {"budget": {"u": 2.0}}, "n_paths": 4, "popsize": 6,
        "iterations": 4})
    assert r.status_code == 200, r.text
    best = r.json()
    assert sum(s["u"] for s in best["plan"]) <= 2.0 + 1e-9
    assert best["lower"] <= best["expected"] <= best["upper"]
    r = api.post("/twins/plant/time-to", json={
        "state": {"x": 2.0}, "variable": "x", "threshold": 5.0, "plan": [{"u": 1.0}] * 12,
        "n_paths": 200})
    assert r.status_code == 200, r.text
    t = r.json()
    assert t["probability"] > 0.9 and t["lower"] <= 5 <= t["upper"]
    assert sum(t["counts"]) == round(t["probability"] * 200)
    never = api.post("/twins/plant/time-to", json={
        "state": {"x": 2.0}, "variable": "x", "threshold": 50.0, "plan": [{"u": 0.0}] * 5})
    assert never.status_code == 200 and never.json()["median"] is None


def test_bad_input_and_cost_limits(api):
    history = len(api.get("/twins/plant/history").json())
    bad = [
        ("whatif", {"plans": {"a": [{"nope": 1.0}]}, "objective": GOAL}, 422, "UnknownVariable"),
        ("whatif", {"plans": {"a": [{"x": 1.0}]}, "objective": GOAL}, 422, "SchemaError"),
        ("whatif", {"plans": {"a": [{"u": 11.0}]}, "objective": GOAL}, 422, "InvalidValue"),
        ("whatif", {"plans": {"a": [{"u": 0.0}]}, "objective": {"minimise": {"y": 1.0}}},
         422, "UnknownVariable"),
        ("time-to", {"variable": "u", "threshold": 1.0, "plan": [{"u": 0.0}]}, 422,
         "SchemaError"),
        ("optimise", {"objective": GOAL, "horizon": 4,
                      "constraints": {"bounds": {"u": [0, 20]}}}, 422, "InvalidValue"),
        ("whatif", {"plans": {"a": [{"u": 0.0}] * 100}, "objective": GOAL, "n_paths": 300},
         413, None),
        ("optimise", {"objective": GOAL, "horizon": 100, "popsize": 32, "iterations": 50},
         413, None),
    ]
    for route, body, code, error in bad:
        r = api.post(f"/twins/plant/{route}", json={"state": {"x": 2.0}, **body})
        assert r.status_code == code, (route, body, r.text)
        if error:
            assert r.json()["error"] == error, r.text
    assert len(api.get("/twins/plant/history").json()) == history


def test_dashboard_draws_a_whatif_fan_chart(tmp_path):
    """The what-if panel in a real headless Chromium: compare two plans, see the fan."""
    import base64
    from pathlib import Path

    import httpx

    from tests.service.support import Chromium, live_server, wait_for

    admin = "whatif-admin-key-0123456789"
    browser = Chromium(tmp_path / "profile")
    try:
        with live_server(Settings(store=str(tmp_path / "d.db"), admin_key=admin)) as url:
            http = httpx.Client(base_url=url, timeout=30,
                                headers={"Authorization": f"Bearer {admin}"})
            http.post("/twins", json={"name": "plant", "variables": XU}).raise_for_status()
            rows = [{**r, "episode": "default"} for r in noisy_rows(250)]
            for lo in range(0, 250, 125):
                http.post("/twins/plant/observations/batch",
                          json={"observations": rows[lo:lo + 125]}).raise_for_status()
            key = http.post("/keys", json={"name": "viewer", "twins": ["plant"],
                                           "scopes": ["read"]}).json()["key"]
            browser.page("Page.navigate", url=f"{url}/twins/plant/dashboard?key={key}")
            wait_for(lambda: browser.eval("document.getElementById('whatif-go') !== null"),
                     timeout=20)
            browser.eval("document.querySelector('#whatif-form input[data-plan=A]').value"
                         " = '0'")
            browser.eval("document.querySelector('#whatif-form input[data-plan=B]').value"
                         " = '1'")
            browser.eval("document.getElementById('whatif-go').click()")
            wait_for(lambda: browser.eval("document.getElementById('whatif').dataset.done")
                     == "yes", timeout=30)
            text = browser.eval("document.getElementById('whatif-msg').textContent")
            assert "P(A gives a lower mean x" in text
            # no push (A) lowers x more than a push of 1 every step (B), on every path
            assert float(text.split("= ")[1].split()[0]) > 0.9
            browser.eval("document.getElementById('whatif').scrollIntoView()")
            shot = base64.b64decode(browser.page("Page.captureScreenshot", format="png")["data"])
            out = Path(__file__).resolve().parents[2] / "out" / "service"
            out.mkdir(parents=True, exist_ok=True)
            (out / "dashboard_whatif.png").write_bytes(shot)
            assert shot[:8] == b"\x89PNG\r\n\x1a\n"
            browser.page("Page.navigate", url="about:blank")
            http.close()
    finally:
        browser.close()


def test_the_default_limits_allow_the_default_requests(tmp_path):
    """A service with default settings answers what-if and optimise with their default
    sizes (a cap of 2,000 path-steps once made every default optimise a 413)."""
    with client(Settings(store=str(tmp_path / "d.db"))) as api:
        assert api.post("/twins", json={"name": "plant", "variables": XU}).status_code == 201
        r = api.post("/twins/plant/observations/batch", json={"observations": noisy_rows(300)})
        assert r.status_code == 201, r.text
        plans = {"low": [{"u": 0.0}] * 30, "high": [{"u": 1.0}] * 30}
        r = api.post("/twins/plant/whatif", json={"state": {"x": 5.0}, "plans": plans,
                                                  "horizon": 30, "objective": GOAL})
        assert r.status_code == 200, r.text
        r = api.post("/twins/plant/optimise",
                     json={"state": {"x": 5.0}, "horizon": 30, "objective": GOAL})
        assert r.status_code == 200, r.text
