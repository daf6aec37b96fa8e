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


def test_fallbacks_to_a_random_walk_are_recorded_and_counted():
    from lmtwin.llm import ScriptedBackend

    twin = Twin(variables=[Variable("x")], predictors=[
        Persistence(), LLMPredictor(ScriptedBackend(["no number here"]))])
    kf = Assimilator(twin, {"x": Noise(0.5, 0.1)}, using=["llm"])
    kf.update(twin.observe({"x": 1.0}))
    fused = kf.update(twin.observe({"x": 2.0}))["x"]
    # the model's unparseable reply is not swallowed: the reason travels with the value
    assert fused.source == "random walk" and fused.reason is not None
    assert "ParseError" in fused.reason or "NotReady" in fused.reason, fused.reason
    third = kf.update(twin.observe({"x": 3.0}))["x"]
    assert sum(kf.fallbacks_.values()) == 2 and kf.last_fallback_ == third.reason
    # a twin with too little data: counted under its own cause
    ridge = Twin(variables=[Variable("x")], predictors=[LocalRidge(min_examples=5)])
    kf = Assimilator(ridge, {"x": Noise(0.5, 0.1)})
    for x in (1.0, 2.0, 3.0):
        last = kf.update(ridge.observe({"x": x}))["x"]
    assert last.reason is not None and last.reason.startswith("NotReady")
    assert kf.fallbacks_ == {"NotReady": 2}
    for x in range(4, 12):
        last = kf.update(ridge.observe({"x": float(x)}))["x"]
    assert last.source == "twin" and last.reason is None


def test_huge_readings_are_refused_before_storing_and_the_filter_stays_finite():
    twin = Twin(variables=[Variable("x"), Variable("y")], predictors=[Persistence()])
    kf = Assimilator(twin, {"x": Noise(1.0, 0.1)})
    from lmtwin.types import Observation

    with pytest.raises(InvalidValue, match="within"):
        kf.check(Observation("e", 0.0, {"x": 1e200}))
    kf.check(Observation("e", 0.0, {"x": 1e150, "y": 1e200}))  # y is not filtered
    with pytest.raises(InvalidValue):
        Noise(1e200, 0.1)
    # at the edge of the accepted range the filter stays finite, whatever arrives
    for t, x in enumerate([-1e150, 1e150, -1e150, 1e150, 0.0]):
        fused = kf.update(twin.observe({"x": x}, t=float(t)))["x"]
        assert math.isfinite(fused.mean) and math.isfinite(fused.sd), fused
        assert math.isfinite(fused.gain)
