"""Faults found by probing the service (issue 12, section 4): each answered with a typed
JSON error that changes nothing, and no twin is ever bricked."""

from __future__ import annotations

import sqlite3

import httpx

from lmtwin.llm import ScriptedBackend
from lmtwin.service import Settings
from tests.service.support import XU, client, linear_rows, live_server, wait_for

ADMIN = "faults-admin-key-0123456789abcdef"
NOISY = [{**XU[0], "noise": {"sensor": 0.1, "process": 0.1}}, XU[1]]


def test_huge_readings_of_a_filtered_variable_are_refused_before_commit(tmp_path):
    settings = Settings(store=str(tmp_path / "f.db"))
    with client(settings) as c:
        c.post("/twins", json={"name": "k", "variables": NOISY}).raise_for_status()
        c.post("/twins/k/observations", json={"values": {"x": 1.0}}).raise_for_status()
        r = c.post("/twins/k/observations/batch", json={"observations": [
            {"values": {"x": -1e200}}, {"values": {"x": 1e200}}]})
        assert r.status_code == 422 and r.json()["error"] == "InvalidValue", r.text
        assert r.json()["variable"] == "x"
        assert len(c.get("/twins/k/history").json()) == 1  # nothing of the batch stored
        assert c.post("/twins/k/observations", json={"values": {"x": 2.0}}).status_code == 201
    with client(settings) as c:  # and the twin loads after a restart
        state = c.get("/twins/k/state").json()
        assert state["t"] == 1.0 and state["fused"]["x"]["mean"] is not None


def test_a_twin_that_cannot_load_is_reported_and_removable(tmp_path):
    db = tmp_path / "b.db"
    settings = Settings(store=str(db))
    with client(settings) as c:
        for name in ("good", "bad", "huge"):
            c.post("/twins", json={"name": name, "variables": NOISY}).raise_for_status()
            c.post(f"/twins/{name}/observations/batch",
                   json={"observations": linear_rows(5)}).raise_for_status()
    with sqlite3.connect(db) as con:
        # a stored schema change no version of lmtwin can read
        con.execute("INSERT INTO schema_changes (twin, change) VALUES ('bad', '{broken')")
        # readings stored before they were validated (as older versions did)
        con.executemany("INSERT INTO observations (twin, episode, t, variable, value,"
                        " schema_version, recorded_at) VALUES ('huge', 'e', ?, 'x', ?, 2, 0)",
                        [(5.0, -1e200), (6.0, 1e200)])
    with client(settings) as c:
        # the filter stays finite on what it cannot have refused: the twin loads
        fused = c.get("/twins/huge/state", params={"episode": "e"}).json()["fused"]["x"]
        assert fused["mean"] is not None and fused["sd"] is not None
        for method, path, body in [
                ("GET", "/twins/bad", None), ("GET", "/twins/bad/state", None),
                ("GET", "/twins/bad/history", None), ("POST", "/twins/bad/predict", {}),
                ("POST", "/twins/bad/observations", {"values": {"x": 1.0}})]:
            r = c.request(method, path, json=body)
            assert r.status_code == 503, (path, r.text)
            assert r.json()["error"] == "TwinUnavailable" and r.json()["reason"]
        assert c.get("/twins").json() == ["bad", "good", "huge"]
        assert c.get("/health").json()["unavailable"] == 1
        assert c.get("/twins/good").status_code == 200  # the others are untouched
        assert c.delete("/twins/bad").status_code == 204
        assert c.get("/twins/bad").status_code == 404
        assert c.get("/health").json()["unavailable"] == 0


def test_observations_without_values_are_refused_in_a_batch_too(tmp_path):
    with client(Settings(store=str(tmp_path / "e.db"))) as c:
        c.post("/twins", json={"name": "k", "variables": XU}).raise_for_status()
        single = c.post("/twins/k/observations", json={"values": {}})
        batch = c.post("/twins/k/observations/batch", json={"observations": [
            {"t": 5, "values": {}}, {"t": 6, "values": {}}]})
        assert single.status_code == batch.status_code == 422, batch.text
        assert batch.json()["error"] == "SchemaError"
        assert c.get("/twins/k/history").json() == []
        # the episode's clock did not move: an earlier time is still accepted
        assert c.post("/twins/k/observations",
                      json={"t": 1, "values": {"x": 1.0}}).status_code == 201


def test_twin_creation_is_all_or_nothing(tmp_path):
    with client(Settings(store=str(tmp_path / "c.db"))) as c:
        r = c.post("/twins", json={"name": "k", "variables": XU,
                                   "knowledge": ["a fine note", "   "]})
        assert r.status_code == 422 and r.json()["error"] == "SchemaError"
        r = c.post("/twins", json={"name": "k", "variables": [
            {"name": "x", "noise": {"sensor": 1e200, "process": 0.1}}]})
        assert r.status_code == 422
        assert c.get("/twins/k").status_code == 404 and c.get("/twins").json() == []
        r = c.post("/twins", json={"name": "k", "variables": XU, "knowledge": ["fine"]})
        assert r.status_code == 201  # the name was never taken
        assert r.json()["n_notes"] == 1 and len(r.json()["variables"]) == 2


def test_revoking_a_key_closes_its_live_streams(tmp_path):
    with live_server(Settings(store=str(tmp_path / "r.db"), admin_key=ADMIN)) as url:
        admin = httpx.Client(base_url=url, timeout=10,
                             headers={"Authorization": f"Bearer {ADMIN}"})
        admin.post("/twins", json={"name": "k", "variables": XU}).raise_for_status()
        key = admin.post("/keys", json={"name": "viewer", "twins": ["k"],
                                        "scopes": ["read"]}).json()
        other = admin.post("/keys", json={"name": "other", "twins": ["k"],
                                          "scopes": ["read"]}).json()
        with httpx.Client(base_url=url, timeout=10) as sse, \
                sse.stream("GET", "/twins/k/events", params={"key": key["key"]}) as mine, \
                sse.stream("GET", "/twins/k/events", params={"key": other["key"]}):
            lines = mine.iter_lines()
            assert next(lines).startswith("retry:")
            wait_for(lambda: admin.get("/twins/k").json()["subscribers"] == 2)
            assert admin.delete(f"/keys/{key['id']}").status_code == 204
            rest = list(lines)  # the stream ends
            assert "event: closed" in rest
            # the other key's stream is still open
            assert admin.get("/twins/k").json()["subscribers"] == 1
        admin.close()


def test_a_key_revoked_by_another_process_closes_its_streams_by_the_next_ping(tmp_path):
    db = tmp_path / "p.db"
    with live_server(Settings(store=str(db), admin_key=ADMIN, sse_ping_s=0.3)) as url:
        admin = httpx.Client(base_url=url, timeout=10,
                             headers={"Authorization": f"Bearer {ADMIN}"})
        admin.post("/twins", json={"name": "k", "variables": XU}).raise_for_status()
        key = admin.post("/keys", json={"name": "viewer", "twins": ["k"],
                                        "scopes": ["read"]}).json()
        with httpx.Client(base_url=url, timeout=10) as sse, \
                sse.stream("GET", "/twins/k/events", params={"key": key["key"]}) as r:
            lines = r.iter_lines()
            assert next(lines).startswith("retry:")
            with sqlite3.connect(db) as other:  # another service process on the same file
                other.execute("UPDATE service_keys SET revoked_at = 1 WHERE id = ?",
                              (key["id"],))
            assert "event: closed" in list(lines)
        admin.close()


def test_reading_never_changes_what_the_twin_learns(tmp_path):
    settings = Settings(store=str(tmp_path / "s.db"), admin_key=ADMIN)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with client(settings) as c:
        c.post("/twins", json={"name": "k", "variables": XU}, headers=admin).raise_for_status()
        rows = linear_rows(41)
        c.post("/twins/k/observations/batch", json={"observations": rows[:40]},
               headers=admin).raise_for_status()
        reader = {"Authorization": "Bearer " + c.post("/keys", headers=admin, json={
            "name": "r", "twins": ["k"], "scopes": ["read"]}).json()["key"]}
        # a reader's wild prediction on the live episode is not scored
        r = c.post("/twins/k/predict", headers=reader,
                   json={"state": {"x": 1e6}, "action": {"u": 0.0}, "episode": "e"})
        assert r.status_code == 200 and r.json()["scored"] is False
        r = c.post("/twins/k/predict", headers=reader,
                   json={"state": {"x": 1e6}, "episode": "e", "score": True})
        assert r.status_code == 403 and r.json()["error"] == "Forbidden"
        c.post("/twins/k/observations", json=rows[40], headers=admin).raise_for_status()
        after = c.get("/twins/k/performance", headers=admin).json()
        assert after["mse"]["combined"] is None or after["mse"]["combined"] < 1.0, after
        # a writer's prediction is scored by default
        r = c.post("/twins/k/predict", headers=admin, json={"episode": "e"})
        assert r.status_code == 200 and r.json()["scored"] is True


def test_every_error_is_json_even_a_bug(tmp_path):
    def broken(prompt: str) -> str:
        raise RuntimeError("a bug inside a backend")

    settings = Settings(store=str(tmp_path / "j.db"))
    with client(settings, raise_server_exceptions=False,
                backend=ScriptedBackend(broken)) as c:
        c.post("/twins", json={"name": "k", "variables": XU}).raise_for_status()
        c.post("/twins/k/observations/batch",
               json={"observations": linear_rows(30)}).raise_for_status()
        r = c.post("/twins/k/predict", json={"state": {"x": 1.0}, "action": {"u": 0.0}})
        assert r.status_code == 500 and r.json()["error"] == "InternalError", r.text
        assert r.headers["content-type"] == "application/json"
        r = c.get("/no/such/route")
        assert r.status_code == 404 and r.json()["error"] == "NotFound"
        r = c.put("/twins")
        assert r.status_code == 405 and r.json()["error"] == "MethodNotAllowed"
        # values near the float limit in history: an answer or a typed error, never a 500
        c.post("/twins", json={"name": "big", "variables": XU}).raise_for_status()
        c.post("/twins/big/observations/batch", json={"observations": [
            {"t": t, "values": {"x": 1.7e308 * (-1) ** t, "u": 0.0}} for t in range(30)]})
        r = c.post("/twins/big/predict", json={"state": {"x": 1e308}, "action": {"u": 0.0}})
        assert r.headers["content-type"] == "application/json", r.text
        assert r.status_code < 500 or r.json()["error"] != "", r.text


def test_the_service_store_commits_durably(tmp_path):
    with client(Settings(store=str(tmp_path / "d.db"))) as c:
        service = c.app.state.service
        [(level,)] = service.store.execute("PRAGMA synchronous")
        assert level == 2  # FULL: fsynced at each commit, before the answer


def test_dashboard_forbids_framing_and_foreign_scripts(tmp_path):
    with client(Settings(store=str(tmp_path / "h.db"))) as c:
        c.post("/twins", json={"name": "k", "variables": XU}).raise_for_status()
        r = c.get("/twins/k/dashboard")
        policy = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy
        assert r.headers["x-frame-options"] == "DENY"
        nonce = policy.split("'nonce-")[1].split("'")[0]
        assert f'<script nonce="{nonce}">' in r.text
        assert c.get("/twins/k/dashboard").headers["content-security-policy"] != policy
