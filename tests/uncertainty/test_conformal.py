"""The calibrator's typical relative error: the floor of every prediction's difficulty."""

from __future__ import annotations

import pytest

from lmtwin.uncertainty import Calibrator


def test_typical_error_is_the_median_relative_residual_of_the_window():
    cal = Calibrator(window=5, refit_every=1)
    assert cal.typical_error("x") == 0.0
    for actual, predicted in [(100.0, 99.0), (10.0, 10.2), (1.0, 1.0), (-50.0, -45.0),
                              (0.0, 0.0)]:
        cal.add("x", actual, predicted, 1.0)
    # 0.01, 0.2 / 10.2, 0, 0.1, 0 -> median 0.01
    assert cal.typical_error("x") == pytest.approx(0.01)
    for _ in range(5):  # the window moves on: the old residuals no longer count
        cal.add("x", 2.0, 1.0, 1.0)
    assert cal.typical_error("x") == pytest.approx(0.5)


def test_a_non_finite_residual_does_not_enter_the_typical_error():
    cal = Calibrator(refit_every=1)
    cal.add("x", 10.0, 9.0, 1.0)
    assert not cal.add("x", float("inf"), 9.0, 1.0)
    assert cal.typical_error("x") == pytest.approx(0.1)
