"""Predict through the service with the real embedded language model (Gemma 3 270M)
beside the numeric predictors."""

from __future__ import annotations

import pytest

from lmtwin.service import Settings
from tests.service.support import XU, client, linear_rows

pytestmark = pytest.mark.model


def test_predict_through_the_service_with_gemma(tmp_path, gemma):
    with client(Settings(store=str(tmp_path / "g.db")), backend=gemma) as c:
        c.post("/twins", json={"name": "g", "variables": XU,
                               "knowledge": ["x decays by 10% per step; u adds to x"]}
               ).raise_for_status()
        twin = c.get("/twins/g").json()
        assert len(twin["predictors"]) == 3 and twin["predictors"][:2] == [
            "persistence", "numeric"]
        c.post("/twins/g/observations/batch",
               json={"observations": linear_rows(30)}).raise_for_status()
        r = c.post("/twins/g/predict", json={"state": {"x": 2.0}, "action": {"u": 0.5}})
        assert r.status_code == 200, r.text
        p = r.json()
        llm = twin["predictors"][2]
        assert set(p["by_predictor"]) == {"persistence", "numeric", llm}, p["provenance"]
        assert p["provenance"]["skipped"] == {}
        assert set(p["weights"]) == set(p["by_predictor"])
        assert abs(sum(p["weights"].values()) - 1) < 1e-6
        # the model answered with a number near the truth (2.3), not an exact value
        assert 0.0 < p["by_predictor"][llm]["x"] < 5.0
        assert p["provenance"]["n_examples"] > 0


def test_settings_turn_the_embedded_model_on():
    from lmtwin.schema import Variable
    from lmtwin.service import TwinService

    service = TwinService(Settings(store="memory", llm="gemma3-270m", llm_threads=2))
    try:
        service.create("m", [Variable("x")])
        assert service.describe("m")["predictors"] == ["persistence", "numeric", "llm"]
    finally:
        service.close()
    numeric = TwinService(Settings(store="memory"))
    numeric.create("n", [Variable("x")])
    assert numeric.describe("n")["predictors"] == ["persistence", "numeric"]
    numeric.close()
