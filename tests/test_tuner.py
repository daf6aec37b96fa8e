"""The tuner: the retrieval encoder re-tuned in the background while the twin runs."""

from __future__ import annotations

import pytest

from lmtwin import InvalidValue, LLMPredictor, LocalRidge, Persistence, Twin
from lmtwin.retrieval.set_encoder import SetEncoder
from lmtwin.systems.cancer import CANCER_VARIABLES, simulate_patients
from lmtwin.tuner import Tuner

pytestmark = pytest.mark.slow


def feed(twin: Twin, patients: int, seed: int = 1, predict_every: int = 0) -> int:
    n = 0
    for i, p in enumerate(simulate_patients(patients, seed=seed, variant="cancer-chemo")):
        for t, row in enumerate(p.rows("cancer-chemo")):
            twin.observe(row, episode=f"s{seed}p{i}", t=float(t))
            if predict_every and t % predict_every == predict_every - 1 and "ca" in row:
                pred = twin.predict({"v": row["v"], "c": row["c"]}, {"ca": row["ca"]})
                assert set(pred.mean) == {"v", "c"}
                n += 1
    return n


def test_background_tuner_swaps_in_a_tuned_encoder_while_the_twin_runs():
    twin = Twin(variables=CANCER_VARIABLES[:3], predictors=[Persistence(), LocalRidge()])
    tuner = twin.start_tuner(every=150, steps=60, min_transitions=100)
    feed(twin, 3)  # about 180 transitions: one tuning is due
    assert tuner.wait(1, timeout=300), tuner.error_
    first = twin.retriever.encoder
    assert isinstance(first, SetEncoder) and tuner.error_ is None
    run = tuner.runs_[0]
    assert run.transitions >= 100 and run.seconds > 0 and run.last_loss < run.first_loss
    # predictions keep working on the tuned encoder while more data arrives
    assert feed(twin, 3, seed=2, predict_every=10) > 0
    assert tuner.wait(2, timeout=300), tuner.error_
    second = twin.retriever.encoder
    assert isinstance(second, SetEncoder) and second is not first  # a trained copy
    assert tuner.runs_[1].transitions > tuner.runs_[0].transitions
    twin.close()
    assert not tuner.running


def test_too_little_data_defers_tuning_and_reports_nothing_as_an_error():
    twin = Twin(variables=CANCER_VARIABLES[:2], predictors=[Persistence()])
    tuner = twin.start_tuner(every=2, steps=5, min_transitions=2)
    for t in range(4):  # 3 transitions: tuning needs 8
        twin.observe({"v": 10.0 + t, "c": 1.0}, t=float(t))
    assert not tuner.wait(1, timeout=3)
    assert tuner.error_ is None and tuner.runs_ == [] and tuner.running
    twin.close()


@pytest.mark.parametrize("kwargs", [{"every": 0}, {"steps": -1}, {"min_transitions": 1.5},
                                    {"every": True}])
def test_bad_tuner_settings_are_typed_errors(kwargs):
    twin = Twin(variables=CANCER_VARIABLES[:2], predictors=[Persistence()])
    with pytest.raises(InvalidValue):
        Tuner(twin, **kwargs)


@pytest.mark.model
def test_the_language_model_predicts_from_the_background_tuned_retrieval(gemma):
    twin = Twin(variables=CANCER_VARIABLES[:3],
                predictors=[Persistence(), LocalRidge(), LLMPredictor(gemma)])
    tuner = twin.start_tuner(every=100, steps=60, min_transitions=100)
    feed(twin, 2)
    assert tuner.wait(1, timeout=300), tuner.error_
    assert isinstance(twin.retriever.encoder, SetEncoder)
    pred = twin.predict({"v": 300.0, "c": 2.0}, {"ca": 5.0})
    assert "llm" in pred.by_predictor and not pred.provenance["skipped"]
    assert all(pred.mean[v] == pred.mean[v] for v in ("v", "c"))  # finite, not NaN
    twin.close()


def test_service_tunes_each_twin_in_the_background(tmp_path):
    from lmtwin.service import Settings
    from tests.service.support import client

    with client(Settings(store=str(tmp_path / "t.db"), tune_every=100)) as c:
        c.post("/twins", json={"name": "onc", "variables": [
            {"name": "v"}, {"name": "c"}, {"name": "ca", "role": "action"}]}
               ).raise_for_status()
        rows = [{"episode": f"p{i}", "t": float(t), "values": row}
                for i, p in enumerate(simulate_patients(2, seed=3, variant="cancer-chemo"))
                for t, row in enumerate(p.rows("cancer-chemo"))]
        assert c.post("/twins/onc/observations/batch",
                      json={"observations": rows}).status_code == 201
        import time

        deadline = time.monotonic() + 300
        while not (twin := c.get("/twins/onc").json())["tunings"]:
            assert time.monotonic() < deadline and twin["tuner_error"] is None, twin
            time.sleep(0.5)
        assert twin["encoder"] == "SetEncoder" and twin["tunings"][0]["transitions"] >= 100
        r = c.post("/twins/onc/predict", json={"state": {"v": 300.0, "c": 2.0},
                                               "action": {"ca": 5.0}})
        assert r.status_code == 200 and set(r.json()["mean"]) == {"v", "c"}
