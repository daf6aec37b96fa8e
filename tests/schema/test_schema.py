import math

import numpy as np
import pytest

from lmtwin import InvalidValue, Schema, SchemaError, UnknownVariable, Variable


def test_add_remove_describe_are_versioned_and_timestamped():
    s = Schema([Variable("v", "state", "cm3", "tumour volume", lower=0)])
    s.add(Variable("ca", "action"))
    s.describe("ca", description="chemo dose", unit="mg")
    s.remove("ca")
    assert [c.kind for c in s.history] == ["add", "add", "describe", "remove"]
    assert [c.version for c in s.history] == [1, 2, 3, 4]
    assert all(c.at > 0 for c in s.history)
    assert s.names() == ["v"]
    past = s.as_of(s.history[2].at)
    assert "ca" in past and past["ca"].unit == "mg"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, np.nan])
def test_non_finite_values_are_rejected(value):
    with pytest.raises(InvalidValue, match="finite"):
        Schema([Variable("x")]).validate({"x": value})


@pytest.mark.parametrize("value", ["1.0", None, [1.0], True])
def test_non_numbers_are_rejected(value):
    with pytest.raises(InvalidValue, match="expected a number"):
        Schema([Variable("x")]).validate({"x": value})


def test_bounds():
    s = Schema([Variable("x", lower=0, upper=10)])
    assert s.validate({"x": np.float32(3)}) == {"x": 3.0}
    with pytest.raises(InvalidValue, match="lower bound"):
        s.validate({"x": -1})
    with pytest.raises(InvalidValue, match="upper bound"):
        s.validate({"x": 11})


def test_unknown_variable_strict_and_lenient():
    s = Schema([Variable("x")])
    with pytest.raises(UnknownVariable) as info:
        s.validate({"y": 1.0})
    assert info.value.known == ["x"]
    assert s.validate({"y": 1.0}, strict=False) == {"y": 1.0}
    with pytest.raises(SchemaError):
        s.validate({"bad name!": 1.0}, strict=False)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "1x"},
        {"name": "x", "role": "output"},
        {"name": "x", "lower": 2, "upper": 1},
        {"name": "x", "lower": math.nan},
    ],
)
def test_invalid_variables(kwargs):
    with pytest.raises(SchemaError):
        Variable(**kwargs)


def test_duplicate_and_bad_describe():
    s = Schema([Variable("x")])
    with pytest.raises(SchemaError):
        s.add(Variable("x"))
    with pytest.raises(SchemaError):
        s.describe("x", colour="red")
    with pytest.raises(UnknownVariable):
        s.remove("nope")
