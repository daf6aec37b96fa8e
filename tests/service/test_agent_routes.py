"""The agent's routes: POST /twins/{name}/agent, approvals, GET /twins/{name}/audit."""

from __future__ import annotations

import pytest

from lmtwin.agent import LoggingActuator
from lmtwin.agent.suite import load
from lmtwin.service import Settings
from tests.service.support import client

TANK = load("bench")["twins"]["tank"]["variables"]


@pytest.fixture
def api(tmp_path):
    with client(Settings(store=str(tmp_path / "twins.db"))) as c:
        assert c.post("/twins", json={"name": "tank", "variables": TANK}).status_code == 201
        rows = [{"t": float(t), "values": {"level": 50.0 + t, "valve": 0.5, "pump": 10.0}}
                for t in range(30)]
        assert c.post("/twins/tank/observations/batch",
                      json={"observations": rows}).status_code == 201
        c.app.state.actuator = LoggingActuator()
        yield c


def ask(api, text, **kw):
    return api.post("/twins/tank/agent", json={"request": text, "time_unit": "minute", **kw})


def test_ask_approve_and_audit(api):
    r = ask(api, "what's the current water level")
    assert r.status_code == 200, r.text
    [out] = r.json()["outcomes"]
    assert out["tool"] == "get_state" and out["status"] == "done"
    assert out["result"]["values"]["level"] == pytest.approx(79.0)
    r = ask(api, "open the valve to 40%")
    [out] = r.json()["outcomes"]
    assert out["status"] == "pending" and out["args"]["value"] == pytest.approx(0.4)
    assert [p["call_id"] for p in api.get("/twins/tank/approvals").json()] == [out["call_id"]]
    assert api.app.state.actuator.applied == []
    r = api.post(f"/twins/tank/approvals/{out['call_id']}", json={"decision": "approve"})
    assert r.status_code == 200 and r.json()["status"] == "done"
    assert [a["values"] for a in api.app.state.actuator.applied] == [{"valve": 0.4}]
    again = api.post(f"/twins/tank/approvals/{out['call_id']}", json={"decision": "reject"})
    assert again.status_code == 409 and again.json()["error"] == "AlreadyDecided"
    unknown = api.post("/twins/tank/approvals/nope", json={"decision": "approve"})
    assert unknown.status_code == 404 and unknown.json()["error"] == "UnknownApproval"
    events = [e["payload"]["event"] for e in api.get("/twins/tank/audit").json()]
    assert events.count("request") == 2 and "approved" in events and "executed" in events
    later = api.get("/twins/tank/audit", params={"after": 3}).json()
    assert all(e["id"] > 3 for e in later)


@pytest.mark.parametrize("text, status, error", [
    ("", 422, "RequestRejected"),
    ("x" * 100_000, 422, "RequestRejected"),
    ("¿Cuál es el nivel del agua?", 422, "RequestRejected"),
    ("set the pressure to 3 bar", 422, "CallRefused"),
    ("open the valve to 150%", 422, "CallRefused"),
    ("set the valve to 40 cm", 422, "CallRefused"),
])
def test_bad_requests_change_nothing(api, text, status, error):
    r = ask(api, text)
    assert r.status_code == status and r.json()["error"] == error, r.text
    assert api.get("/twins/tank/approvals").json() == []
    assert api.app.state.actuator.applied == []


def test_read_key_gets_read_only_answers(api):
    key = api.post("/keys", json={"name": "r", "twins": ["tank"], "scopes": ["read"]}
                   ).json()["key"]
    headers = {"Authorization": f"Bearer {key}"}
    r = api.post("/twins/tank/agent", json={"request": "open the valve fully"},
                 headers=headers)
    assert r.status_code == 403 and r.json()["error"] == "ActionDenied"
    r = api.post("/twins/tank/approvals/x", json={"decision": "approve"}, headers=headers)
    assert r.status_code == 403
    assert api.get("/twins/tank/approvals").json() == []


def test_mcp_over_streamable_http_needs_a_key(tmp_path):
    import anyio
    import httpx
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    from tests.service.support import TEST_ADMIN, live_server

    settings = Settings(store=str(tmp_path / "t.db"), admin_key=TEST_ADMIN)
    with live_server(settings) as url:
        admin = httpx.Client(base_url=url, timeout=60,
                             headers={"Authorization": f"Bearer {TEST_ADMIN}"})
        admin.post("/twins", json={"name": "tank", "variables": TANK}).raise_for_status()
        admin.post("/twins", json={"name": "other", "variables": TANK}).raise_for_status()
        rows = [{"t": float(t), "values": {"level": 50.0 + t, "valve": 0.5, "pump": 10.0}}
                for t in range(30)]
        admin.post("/twins/tank/observations/batch",
                   json={"observations": rows}).raise_for_status()
        key = admin.post("/keys", json={"name": "r", "twins": ["tank"], "scopes": ["read"]}
                         ).json()["key"]
        assert httpx.post(f"{url}/mcp/", json={}, timeout=60).status_code == 401

        async def work():
            http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60)
            async with Client(streamable_http_client(f"{url}/mcp/", http_client=http)) as c:
                tools = {t.name for t in (await c.list_tools()).tools}
                state = await c.call_tool("get_state", {"twin": "tank"})
                other = await c.call_tool("get_state", {"twin": "other"})
                return tools, state, other

        tools, state, other = anyio.run(work)
    assert "get_state" in tools and "actuate" not in tools  # read-only over HTTP
    assert state.structured_content["result"]["values"]["level"] == pytest.approx(79.0)
    assert other.is_error and "Forbidden" in other.content[0].text
