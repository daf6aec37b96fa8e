"""Bad input to simulate, compare, optimise and time_to: a typed error, nothing changes."""

import math

import pytest

from lmtwin import LocalRidge, Persistence, Twin, Variable
from lmtwin.errors import InvalidValue, NotReady, SchemaError, UnknownVariable
from lmtwin.intervene import MAX_HORIZON, MAX_PATHS, Constraints, Objective
from tests.intervene.test_rollout import _twin

GOAL = Objective({"x": 1.0})
REST = [{"u": 0.0}] * 4


@pytest.fixture(scope="module")
def twin():
    return _twin(200)


def snapshot(tw):
    return (len(tw.history()), len(tw.retriever), tw.schema.version, len(tw.scores_),
            dict(tw.hedge.loss_), tw.calibrator.n("x"))


CASES = {
    "unknown plan variable": (UnknownVariable, lambda t: t.simulate({"x": 1.0}, [{"nope": 1.0}])),
    "plan sets a state": (SchemaError, lambda t: t.simulate({"x": 1.0}, [{"x": 1.0}])),
    "plan steps differ": (SchemaError, lambda t: t.simulate({"x": 1.0}, [{"u": 0.0}, {}])),
    "action above its bound": (InvalidValue, lambda t: t.simulate({"x": 1.0}, [{"u": 3.0}])),
    "NaN in the plan": (InvalidValue, lambda t: t.simulate({"x": 1.0}, [{"u": math.nan}])),
    "inf in the state": (InvalidValue, lambda t: t.simulate({"x": math.inf}, REST)),
    "NaN in the state": (InvalidValue, lambda t: t.compare({"x": math.nan}, [REST], 4, 10, GOAL)),
    "action in the state": (SchemaError, lambda t: t.simulate({"x": 1.0, "u": 0.0}, REST)),
    "horizon 0": (InvalidValue, lambda t: t.simulate({"x": 1.0}, REST, horizon=0)),
    "horizon beyond the cap": (InvalidValue, lambda t: t.optimise(
        {"x": 1.0}, GOAL, horizon=MAX_HORIZON + 1)),
    "plan shorter than the horizon": (SchemaError, lambda t: t.compare(
        {"x": 1.0}, [REST], 9, 10, GOAL)),
    "too many paths": (InvalidValue, lambda t: t.simulate({"x": 1.0}, REST,
                                                          n_paths=MAX_PATHS + 1)),
    "no paths": (InvalidValue, lambda t: t.time_to("x", 5.0, REST, 4, {"x": 1.0}, n_paths=0)),
    "objective on an unknown variable": (UnknownVariable, lambda t: t.compare(
        {"x": 1.0}, [REST], 4, 10, Objective({"y": 1.0}))),
    "objective weighs an action as a state": (SchemaError, lambda t: t.compare(
        {"x": 1.0}, [REST], 4, 10, Objective({"u": 1.0}))),
    "objective with a NaN weight": (InvalidValue, lambda t: t.compare(
        {"x": 1.0}, [REST], 4, 10, Objective({"x": math.nan}))),
    "threshold on an action": (SchemaError, lambda t: t.time_to("u", 1.0, REST, 4, {"x": 1.0})),
    "NaN threshold": (InvalidValue, lambda t: t.time_to("x", math.nan, REST, 4, {"x": 1.0})),
    "infinite threshold": (InvalidValue, lambda t: t.time_to("x", math.inf, REST, 4, {"x": 1}),),
    "bound beyond the schema's": (InvalidValue, lambda t: t.optimise(
        {"x": 1.0}, GOAL, 4, Constraints(bounds={"u": (-1.0, 1.0)}))),
    "negative budget": (InvalidValue, lambda t: t.optimise(
        {"x": 1.0}, GOAL, 4, Constraints(budget={"u": -1.0}))),
    "constraint on a state": (SchemaError, lambda t: t.optimise(
        {"x": 1.0}, GOAL, 4, Constraints(rate={"x": 1.0}))),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_a_typed_error_and_changes_nothing(twin, case):
    error, call = CASES[case]
    before = snapshot(twin)
    with pytest.raises(error) as info:
        call(twin)
    assert str(info.value)
    assert snapshot(twin) == before


def test_action_outside_its_bound_names_the_bound(twin):
    with pytest.raises(InvalidValue, match="upper bound 2"):
        twin.simulate({"x": 1.0}, [{"u": 2.5}])


def test_optimise_needs_action_variables():
    tw = Twin("free", variables=[Variable("x")], predictors=[Persistence(), LocalRidge()])
    for t in range(40):
        tw.observe({"x": 0.9**t}, t=float(t))
    with pytest.raises(SchemaError, match="no action"):
        tw.optimise({"x": 1.0}, GOAL, horizon=4)


def test_too_little_data_is_not_ready_not_a_plan_of_noise():
    tw = Twin("new", variables=[Variable("x"), Variable("u", "action", lower=0, upper=2)],
              predictors=[Persistence(), LocalRidge()])
    for t in range(5):
        tw.observe({"x": 1.0 + t, "u": 0.0}, t=float(t))
    with pytest.raises(NotReady):
        tw.optimise({"x": 1.0}, GOAL, horizon=4)
    with pytest.raises(NotReady):
        tw.simulate({"x": 1.0}, REST, n_paths=10)
    with pytest.raises(NotReady):
        tw.time_to("x", 3.0, REST, 4, {"x": 1.0})
