"""The HTTP API in-process: twins CRUD, schema, knowledge, ingest, history, state,
predict/simulate, error mapping and bad input."""

from __future__ import annotations

import json
import time

import pytest

from lmtwin.service import Settings
from tests.service.support import XU, client, linear_rows


@pytest.fixture
def api(tmp_path):
    with client(Settings(store=str(tmp_path / "twins.db"), max_body_bytes=20_000,
                         max_batch=100, max_simulation_steps=200)) as c:
        r = c.post("/twins", json={"name": "plant", "variables": XU,
                                   "knowledge": ["the push acts at once"]})
        assert r.status_code == 201, r.text
        yield c


def test_twin_crud(api):
    body = api.get("/twins/plant").json()
    assert [v["name"] for v in body["variables"]] == ["x", "u"]
    assert body["predictors"] == ["persistence", "numeric"]  # numeric by default
    assert body["n_notes"] == 1 and body["strict"] is True
    assert api.get("/twins").json() == ["plant"]
    r = api.patch("/twins/plant", json={"description": "a test plant", "level": 0.8})
    assert r.status_code == 200 and r.json()["level"] == 0.8
    assert api.post("/twins", json={"name": "plant"}).status_code == 409
    assert api.delete("/twins/plant").status_code == 204
    assert api.get("/twins/plant").status_code == 404
    assert api.get("/twins").json() == []
    # the append-only store keeps the history, so the name stays taken
    assert api.post("/twins", json={"name": "plant"}).status_code == 409
    assert api.post("/twins", json={"name": "bad name!"}).status_code == 422


def test_schema_changes_and_knowledge(api):
    r = api.post("/twins/plant/variables",
                 json={"name": "flow", "unit": "l/s", "description": "coolant flow"})
    assert r.status_code == 201 and r.json()["kind"] == "add"
    assert api.post("/twins/plant/variables", json={"name": "flow"}).status_code == 409
    r = api.patch("/twins/plant/variables/flow", json={"unit": "m3/s", "lower": 0})
    assert r.status_code == 200 and r.json()["variable"]["unit"] == "m3/s"
    assert api.patch("/twins/plant/variables/nope", json={"unit": "m"}).status_code == 404
    assert api.delete("/twins/plant/variables/nope").status_code == 404
    schema = api.get("/twins/plant/schema").json()
    assert schema["version"] == 4 and [c["kind"] for c in schema["history"]] == [
        "add", "add", "add", "describe"]
    before_removal = time.time()
    assert api.delete("/twins/plant/variables/flow").json()["kind"] == "remove"
    past = api.get("/twins/plant/schema", params={"as_of": before_removal}).json()
    assert past["version"] == 4 and "flow" in [v["name"] for v in past["variables"]]
    assert "flow" not in [v["name"] for v in api.get("/twins/plant/schema").json()["variables"]]
    # a variable added while the twin runs takes data at once
    api.post("/twins/plant/variables", json={"name": "temp"})
    assert api.post("/twins/plant/observations",
                    json={"values": {"x": 1.0, "temp": 20}}).status_code == 201
    r = api.post("/twins/plant/knowledge", json={"text": "the pump was replaced"})
    assert r.status_code == 201
    assert [n["text"] for n in api.get("/twins/plant/knowledge").json()] == [
        "the push acts at once", "the pump was replaced"]
    assert api.post("/twins/plant/knowledge", json={"text": ""}).status_code == 422


def test_observations_history_state_as_of(api):
    r = api.post("/twins/plant/observations", json={"episode": "e", "values": {"x": 1.0}})
    assert r.status_code == 201 and r.json() == {"stored": 1, "last_t": {"e": 0.0},
                                                 "replayed": False}
    r = api.post("/twins/plant/observations", json={"episode": "e", "values": {"u": 0.5}})
    assert r.json()["last_t"] == {"e": 1.0}  # t defaults to the episode's last time + 1
    time.sleep(0.01)
    before = time.time()
    time.sleep(0.01)
    r = api.post("/twins/plant/observations/batch",
                 json={"observations": linear_rows(10, start=2)})
    assert r.status_code == 201 and r.json()["stored"] == 8
    state = api.get("/twins/plant/state", params={"episode": "e"}).json()
    assert state["t"] == 9.0 and set(state["values"]) == {"x", "u"}
    past = api.get("/twins/plant/state", params={"episode": "e", "as_of": before}).json()
    assert past["values"] == {"x": 1.0, "u": 0.5}
    hist = api.get("/twins/plant/history", params={"episode": "e", "variable": "x"}).json()
    assert [h["t"] for h in hist] == [0.0, *[float(t) for t in range(2, 10)]]
    assert len(api.get("/twins/plant/history", params={"as_of": before}).json()) == 2
    assert len(api.get("/twins/plant/history", params={"limit": 3}).json()) == 3
    assert api.get("/twins/plant/state", params={"episode": "none"}).json()["values"] == {}


def test_idempotency_key_stores_once(api):
    rows = linear_rows(5)
    headers = {"Idempotency-Key": "batch-001"}
    first = api.post("/twins/plant/observations/batch", json={"observations": rows},
                     headers=headers)
    again = api.post("/twins/plant/observations/batch", json={"observations": rows},
                     headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["replayed"] is False and again.json()["replayed"] is True
    assert again.json()["stored"] == 5
    assert len(api.get("/twins/plant/history").json()) == 5
    # the same key with another body is a client error, not a silent replay
    other = api.post("/twins/plant/observations/batch", json={"observations": rows[:2]},
                     headers=headers)
    assert other.status_code == 409 and other.json()["error"] == "Conflict"
    # without a key, a repeated delivery is refused by time order, never stored twice
    dup = api.post("/twins/plant/observations/batch", json={"observations": rows})
    assert dup.status_code == 422 and dup.json()["error"] == "InvalidValue"
    assert len(api.get("/twins/plant/history").json()) == 5


def test_bad_input_is_mapped_by_type(api):
    url = "/twins/plant/observations"
    r = api.post(url, content=b'{"values": {"x": 1.0', headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "MalformedJSON"
    for values in ({"x": "abc"}, {"x": True}, {"x": None}, {"x": [1]}):
        r = api.post(url, json={"values": values})
        assert r.status_code == 422 and r.json()["error"] == "ValidationError", values
    assert api.post(url, json={"values": {"x": 1}, "extra": 1}).status_code == 422
    r = api.post(url, json={"values": {"y": 1.0}})
    assert r.status_code == 422 and r.json()["error"] == "UnknownVariable"
    assert r.json()["known"] == ["u", "x"]
    r = api.post(url, json={"values": {"u": 11.0}})
    assert r.status_code == 422 and r.json()["error"] == "InvalidValue"
    assert r.json()["variable"] == "u"
    r = api.post("/twins/nope/observations", json={"values": {"x": 1.0}})
    assert r.status_code == 404 and r.json()["error"] == "TwinNotFound"
    r = api.post(url, json={"values": {"x": 1.0}, "padding": "z" * 30_000})
    assert r.status_code == 413 and r.json()["error"] == "PayloadTooLarge"
    r = api.post(url + "/batch", json={"observations": linear_rows(101)})
    assert r.status_code == 413
    r = api.post(url + "/batch", json={"observations": []})
    assert r.status_code == 422
    api.post(url, json={"episode": "a", "t": 5, "values": {"x": 1.0}})
    r = api.post(url, json={"episode": "a", "t": 4, "values": {"x": 1.0}})
    assert r.status_code == 422 and r.json()["variable"] == "t"
    r = api.post("/twins/plant/predict", json={"state": {"nope": 1.0}})
    assert r.status_code == 422 and r.json()["error"] == "UnknownVariable"
    assert api.post("/twins/plant/simulate",
                    json={"plan": [{"u": 0.0}], "n_paths": 0}).status_code == 422
    assert api.post("/twins/plant/predict", json={"state": {"x": "1"}}).status_code == 422
    for path in ("/twins/nope", "/twins/nope/history", "/twins/nope/state",
                 "/twins/nope/schema", "/twins/nope/knowledge", "/twins/nope/dashboard"):
        assert api.get(path).status_code == 404, path
    assert api.post("/twins/nope/predict", json={}).status_code == 404
    # nothing of the refused requests was stored
    assert len(api.get("/twins/plant/history").json()) == 1


def test_predict_and_simulate_with_intervals(api):
    api.post("/twins/plant/observations/batch", json={"observations": linear_rows(40)})
    last = api.get("/twins/plant/state", params={"episode": "e"}).json()["values"]
    x, t = 0.9 * last["x"] + last["u"], 40
    # observe-then-predict on the stream: each prediction is scored by the next observation
    for step in range(25):
        u = 0.5 if step % 3 == 0 else 0.0
        r = api.post("/twins/plant/observations",
                     json={"episode": "e", "t": t, "values": {"x": x, "u": u}})
        assert r.status_code == 201, r.text
        r = api.post("/twins/plant/predict",
                     json={"state": {"x": x}, "action": {"u": u}, "episode": "e"})
        assert r.status_code == 200, r.text
        x, t = 0.9 * x + u, t + 1
    perf = api.get("/twins/plant/performance").json()
    # at least the 24 answered predictions (the last awaits its answer); the twin may
    # also score the stored transitions prequentially
    assert perf["scored"] >= 24 and perf["n_intervals"] > 0
    assert perf["mse"]["numeric"] < perf["mse"]["persistence"]
    assert set(perf["weights"]) == {"persistence", "numeric"}
    assert perf["weights"]["numeric"] > perf["weights"]["persistence"]
    p = api.post("/twins/plant/predict", json={"state": {"x": 2.0}, "action": {"u": 0.5}}).json()
    assert p["provenance"]["calibrated"] is True
    assert p["lower"]["x"] <= p["mean"]["x"] <= p["upper"]["x"]
    assert abs(p["mean"]["x"] - 2.3) < 0.2
    assert set(p["by_predictor"]) == {"persistence", "numeric"}
    # state omitted: the episode's latest state
    assert api.post("/twins/plant/predict", json={"episode": "e"}).status_code == 200
    sim = api.post("/twins/plant/simulate",
                   json={"state": {"x": 1.0}, "plan": [{"u": 0.0}] * 5, "n_paths": 4})
    assert sim.status_code == 200, sim.text
    s = sim.json()
    assert s["horizon"] == 5 and len(s["mean"]["x"]) == 6
    assert all(lo <= hi for lo, hi in zip(s["lower"]["x"], s["upper"]["x"], strict=True))
    assert s["median"]["x"][-1] < 1.0  # decays without pushes
    r = api.post("/twins/plant/simulate", json={"plan": [{"u": 0.0}] * 100, "n_paths": 5})
    assert r.status_code == 413
    r = api.post("/twins/plant/predict", json={"state": {"x": 1.0}, "action": {"x": 1.0}})
    assert r.status_code == 422 and r.json()["error"] == "SchemaError"


def test_lenient_twin_adds_unknown_variables_from_data(api):
    assert api.patch("/twins/plant", json={"strict": False}).json()["strict"] is False
    r = api.post("/twins/plant/observations/batch", json={"observations": [
        {"t": 0, "values": {"x": 1.0, "temp": 20.0}}, {"t": 1, "values": {"flow": 2.0}}]})
    assert r.status_code == 201
    r = api.post("/twins/plant/observations", json={"values": {"pressure": 1.0}})
    assert r.status_code == 201
    names = [v["name"] for v in api.get("/twins/plant/schema").json()["variables"]]
    assert names == ["x", "u", "temp", "flow", "pressure"]


def test_predict_without_state_is_not_ready(api):
    r = api.post("/twins/plant/predict", json={"episode": "empty"})
    assert r.status_code == 409 and r.json()["error"] == "NotReady"


def test_openapi_and_restart_keeps_everything(tmp_path):
    settings = Settings(store=str(tmp_path / "t.db"))
    with client(settings) as c:
        c.post("/twins", json={"name": "a", "variables": XU})
        c.post("/twins/a/observations/batch", json={"observations": linear_rows(5)},
               headers={"Idempotency-Key": "k1"})
        c.patch("/twins/a/variables/x", json={"noise": {"sensor": 0.1, "process": 0.1}})
        spec = c.get("/openapi.json").json()
        assert {"/twins", "/twins/{name}/observations/batch", "/twins/{name}/predict",
                "/twins/{name}/events", "/keys"} <= set(spec["paths"])
        assert "Idempotency-Key" in json.dumps(spec["paths"]["/twins/{name}/observations"])
    with client(settings) as c:
        assert c.get("/twins").json() == ["a"]
        assert c.get("/twins/a").json()["noise"] == {"x": {"sensor": 0.1, "process": 0.1}}
        assert c.get("/twins/a/state", params={"episode": "e"}).json()["t"] == 4.0
        again = c.post("/twins/a/observations/batch", json={"observations": linear_rows(5)},
                       headers={"Idempotency-Key": "k1"})
        assert again.json()["replayed"] is True
        assert len(c.get("/twins/a/history").json()) == 5
