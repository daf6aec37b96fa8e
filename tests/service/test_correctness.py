"""Silent wrong answers of the service (issue 12, section 2): each now refused, recorded
or honoured as documented."""

from __future__ import annotations

import time

import numpy as np

from lmtwin.service import Settings
from tests.service.support import XU, client, linear_rows


def test_a_refused_lenient_batch_changes_no_schema(tmp_path):
    with client(Settings(store=str(tmp_path / "n.db"))) as c:
        c.post("/twins", json={"name": "k", "variables": XU, "strict": False}
               ).raise_for_status()
        version = c.get("/twins/k/schema").json()["version"]
        r = c.post("/twins/k/observations/batch", json={"observations": [
            {"t": 0, "values": {"x": 1.0, "temp": 20.0}},
            {"t": 1, "values": {"x": 1.0, "u": 99.0}}]})  # u is bounded to [-10, 10]
        assert r.status_code == 422 and r.json()["variable"] == "u"
        schema = c.get("/twins/k/schema").json()
        assert schema["version"] == version and "temp" not in [
            v["name"] for v in schema["variables"]]
        assert c.get("/twins/k/history").json() == []
        r = c.post("/twins/k/observations/batch", json={"observations": [
            {"t": 0, "values": {"x": 1.0, "temp": 20.0}}, {"t": 1, "values": {"flow": 2.0}}]})
        assert r.status_code == 201
        assert [v["name"] for v in c.get("/twins/k/schema").json()["variables"]] == [
            "x", "u", "temp", "flow"]


def test_idempotency_keys_expire_while_the_service_runs(tmp_path):
    with client(Settings(store=str(tmp_path / "i.db"), idempotency_ttl_s=0.5)) as c:
        c.post("/twins", json={"name": "k", "variables": XU}).raise_for_status()
        key = {"Idempotency-Key": "once"}
        first = c.post("/twins/k/observations/batch",
                       json={"observations": linear_rows(3)}, headers=key)
        again = c.post("/twins/k/observations/batch",
                       json={"observations": linear_rows(3)}, headers=key)
        assert first.json()["replayed"] is False and again.json()["replayed"] is True
        time.sleep(0.6)
        # expired: the key is free again, for another request
        later = c.post("/twins/k/observations/batch",
                       json={"observations": linear_rows(6, start=3)}, headers=key)
        assert later.status_code == 201 and later.json()["replayed"] is False
        # and expired keys are purged from the table while the service runs
        time.sleep(0.6)
        c.post("/twins/k/observations", json={"values": {"x": 1.0}},
               headers={"Idempotency-Key": "other"}).raise_for_status()
        keys = c.app.state.service.db.execute("SELECT key FROM service_idempotency")
        assert keys == [("other",)]


def test_simulate_uses_the_twins_level(tmp_path):
    with client(Settings(store=str(tmp_path / "l.db"))) as c:
        c.post("/twins", json={"name": "k", "variables": XU}).raise_for_status()
        rng = np.random.default_rng(0)
        rows = [{**r, "values": {"x": r["values"]["x"] + float(rng.normal(0, 0.1)),
                                 "u": r["values"]["u"]}} for r in linear_rows(120)]
        c.post("/twins/k/observations/batch", json={"observations": rows}).raise_for_status()
        body = {"state": {"x": 1.0}, "plan": [{"u": 0.0}] * 3, "n_paths": 200}
        widths = {}
        for level in (0.5, 0.95):
            c.patch("/twins/k", json={"level": level}).raise_for_status()
            sim = c.post("/twins/k/simulate", json=body).json()
            assert sim["level"] == level
            widths[level] = sim["upper"]["x"][-1] - sim["lower"]["x"][-1]
        assert 0 < widths[0.5] < 0.7 * widths[0.95], widths


def test_assimilation_fallbacks_are_visible(tmp_path):
    with client(Settings(store=str(tmp_path / "a.db"),
                         assimilation_predictors=["numeric"])) as c:
        c.post("/twins", json={"name": "k", "variables": [
            {"name": "x", "noise": {"sensor": 0.5, "process": 0.1}}]}).raise_for_status()
        for t in range(3):  # too few transitions for the numeric learner
            c.post("/twins/k/observations", json={"t": t, "values": {"x": float(t)}}
                   ).raise_for_status()
        fused = c.get("/twins/k/state").json()["fused"]["x"]
        assert fused["source"] == "random walk" and fused["reason"].startswith("NotReady")
        twin = c.get("/twins/k").json()
        assert twin["assimilation"]["fallbacks"] == {"NotReady": 2}
        assert twin["assimilation"]["last_fallback"] == fused["reason"]
