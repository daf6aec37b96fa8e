"""Data assimilation: the twin's forecast is the Kalman prior of noisy readings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lmtwin import InvalidValue, LLMPredictor, LocalRidge, Persistence, Twin, Variable
from lmtwin.assimilation import Assimilator, Noise
from lmtwin.systems import TANK_VARIABLES, simulate_tank


def tank_twin() -> Twin:
    return Twin(variables=TANK_VARIABLES, predictors=[Persistence(), LocalRidge()])


def run(readings: np.ndarray, valves: np.ndarray, using: list[str] | None) -> np.ndarray:
    twin = tank_twin()
    kf = Assimilator(twin, {"level": Noise(sensor=1.0, process=0.05)}, using=using)
    fused = [kf.update(twin.observe({"level": z, "valve": u}))["level"].mean
             for z, u in zip(readings, valves, strict=True)]
    return np.array(fused)


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a[40:] - b[40:]) ** 2)))  # after the filter settles


def test_fused_state_beats_raw_readings_and_a_random_walk():
    truth, valves = simulate_tank(200)
    readings = truth + np.random.default_rng(0).normal(0, 1.0, truth.size)
    fused_twin = run(readings, valves, None)  # the twin's combined forecast
    fused_walk = run(readings, valves, ["persistence"])  # a random-walk model
    raw, twin, walk = rmse(readings, truth), rmse(fused_twin, truth), rmse(fused_walk, truth)
    assert twin < 0.85 * raw, (twin, raw)
    assert twin < walk, (twin, walk)  # the twin's model of the valve is what helps


def test_fused_reports_its_prior_gain_and_source():
    twin = Twin(variables=[Variable("x")], predictors=[LocalRidge(min_examples=3)])
    kf = Assimilator(twin, {"x": Noise(0.5, 0.1)})
    first = kf.update(twin.observe({"x": 1.0}))["x"]
    assert (first.mean, first.sd, first.prior, first.gain, first.source) == \
        (1.0, 0.5, None, 1.0, "first reading")
    # ridge needs 3 transitions: until then the prior is a random walk
    second = kf.update(twin.observe({"x": 2.0}))["x"]
    assert second.source == "random walk" and second.prior == 1.0
    assert 1.0 < second.mean < 2.0 and 0 < second.gain < 1 and second.sd < 0.5
    for x in range(3, 12):
        last = kf.update(twin.observe({"x": float(x)}))["x"]
    assert last.source == "twin" and last.prior is not None and abs(last.prior - 11) < 1
    assert kf.fused("default")["x"] == last and kf.fused("other") == {}


def test_only_declared_variables_are_filtered_and_noise_can_change():
    twin = Twin(variables=[Variable("x"), Variable("y")], predictors=[Persistence()])
    kf = Assimilator(twin, {"x": Noise(1.0, 0.1)})
    assert set(kf.update(twin.observe({"x": 1.0, "y": 5.0}))) == {"x"}
    kf.update(twin.observe({"x": 3.0, "y": 5.0}))
    kf.set_noise("y", Noise(2.0, 0.1))
    assert set(kf.fused("default")) == {"x"}  # y's filter starts with its next reading
    assert set(kf.update(twin.observe({"x": 2.0, "y": 6.0}))) == {"x", "y"}
    kf.set_noise("x", None)
    assert set(kf.update(twin.observe({"x": 2.0, "y": 6.0}))) == {"y"}
    kf.forget("y")
    assert kf.fused("default") == {} and kf.noise == {}


@pytest.mark.parametrize("sensor,process", [(-1.0, 0.1), (1.0, 0.0), (math.nan, 0.1),
                                            (1.0, math.inf), ("1", 0.1), (True, 0.1)])
def test_bad_noise_is_a_typed_error(sensor, process):
    with pytest.raises(InvalidValue):
        Noise(sensor, process)


def test_bad_predictor_names_are_a_typed_error():
    twin = tank_twin()
    with pytest.raises(InvalidValue, match="persistence"):
        Assimilator(twin, using=["llm"])
    with pytest.raises(InvalidValue):
        Assimilator(twin, using=[])
    with pytest.raises(InvalidValue):
        twin.predict({"level": 1.0}, predictors=["nope"])


class Counted:
    """The real backend, counting its completions."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0
        self.name, self.supports_grammar = inner.name, inner.supports_grammar

    def complete(self, prompt, **kwargs):
        self.calls += 1
        return self.inner.complete(prompt, **kwargs)

    def close(self):
        pass


@pytest.mark.model
def test_assimilation_with_the_real_language_model_in_the_forecast(gemma):
    lm = Counted(gemma)
    truth, valves = simulate_tank(14)
    readings = truth + np.random.default_rng(1).normal(0, 1.0, truth.size)
    twin = Twin(variables=TANK_VARIABLES, predictors=[Persistence(), LocalRidge(),
                                                      LLMPredictor(lm)])
    kf = Assimilator(twin, {"level": Noise(1.0, 0.05)})  # all predictors, the LM included
    out = [kf.update(twin.observe({"level": z, "valve": u}))["level"]
           for z, u in zip(readings, valves, strict=True)]
    assert out[0].source == "first reading"
    assert {f.source for f in out[1:]} <= {"twin", "random walk"}
    assert out[-1].source == "twin"
    assert lm.calls >= 10  # the language model forecast (nearly) every reading
    for f in out[1:]:
        assert math.isfinite(f.mean) and 0 < f.sd < 1.0 and 0 < f.gain < 1
        assert f.prior is not None and math.isfinite(f.prior)
