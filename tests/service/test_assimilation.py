"""Data assimilation: with a declared sensor noise, the fused state tracks the truth
more closely than the raw readings do."""

from __future__ import annotations

import numpy as np

from lmtwin.service import Settings
from tests.service.support import client


def test_kalman_fused_state_beats_raw_readings(tmp_path):
    """The twin's forecast (persistence and ridge by default) is the prior."""
    rng = np.random.default_rng(0)
    t = np.arange(300.0)
    truth = 20 + 5 * np.sin(t / 25)
    readings = truth + rng.normal(0, 1.0, t.size)
    with client(Settings(store=str(tmp_path / "kf.db"))) as c:
        c.post("/twins", json={"name": "tank", "variables": [
            {"name": "level", "unit": "cm", "noise": {"sensor": 1.0, "process": 0.05}},
            {"name": "raw"}]}).raise_for_status()
        fused, raw = [], []
        for i in range(t.size):
            r = c.post("/twins/tank/observations",
                       json={"t": t[i], "values": {"level": readings[i], "raw": readings[i]}})
            assert r.status_code == 201
            if i % 10 == 9:
                s = c.get("/twins/tank/state").json()
                assert set(s["fused"]) == {"level"}  # only variables with declared noise
                fused.append((i, s["fused"]["level"]["mean"], s["fused"]["level"]["sd"]))
                raw.append(s["values"]["level"])
        idx = np.array([i for i, _, _ in fused])[5:]  # after the filter has settled
        f = np.array([m for _, m, _ in fused])[5:]
        z = np.array(raw)[5:]
        rmse_fused = float(np.sqrt(np.mean((f - truth[idx]) ** 2)))
        rmse_raw = float(np.sqrt(np.mean((z - truth[idx]) ** 2)))
        assert rmse_fused < 0.7 * rmse_raw, (rmse_fused, rmse_raw)
        sd = fused[-1][2]
        assert 0 < sd < 1.0  # the filter is more certain than one reading
        # the store keeps the raw readings; the fused state is served beside them
        assert c.get("/twins/tank/state").json()["values"]["level"] == readings[-1]
        before = c.get("/twins/tank/state").json()["fused"]["level"]
    # after a restart the filter is rebuilt from the stored readings
    with client(Settings(store=str(tmp_path / "kf.db"))) as c:
        after = c.get("/twins/tank/state").json()["fused"]["level"]
        # (from the last readings: it agrees within its spread, not to the last digit)
        assert abs(after["mean"] - before["mean"]) < before["sd"]
        assert after["source"] == "twin" and after["prior"] is not None
        # the filter can be switched off again
        r = c.patch("/twins/tank/variables/level", json={"clear_noise": True})
        assert r.status_code == 200 and r.json()["noise"] is None
        assert not c.get("/twins/tank/state").json().get("fused")
