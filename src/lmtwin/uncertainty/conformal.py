"""Split conformal intervals on a rolling window of the twin's recent residuals (crepes).

The intervals are normalised: each residual is divided by a difficulty estimate (the
spread of the predictors plus the size of the predicted change), so a volatile moment
gets a wider interval than a quiet one. Coverage is measured, not assumed: see
:func:`coverage` and the benchmark.
"""

from __future__ import annotations

import warnings
from collections import deque

import numpy as np

from lmtwin.errors import DependencyNotInstalled


def difficulty(spread: float, change: float, scale: float) -> float:
    return spread + 0.5 * abs(change) + 1e-3 * scale + 1e-9


class Calibrator:
    """Per-target rolling residuals and a crepes ``ConformalRegressor`` fitted on them.

    Args:
        window: how many recent residuals per target calibrate the interval.
        min_residuals: below this many, no interval is given (reported as uncalibrated).
    """

    def __init__(self, window: int = 300, min_residuals: int = 20) -> None:
        try:
            from crepes import ConformalRegressor
        except ImportError as exc:
            raise DependencyNotInstalled("crepes", "core") from exc
        self._cls = ConformalRegressor
        self.window = window
        self.min_residuals = min_residuals
        self._res: dict[str, deque[tuple[float, float]]] = {}

    def add(self, target: str, actual: float, predicted: float, sigma: float) -> None:
        self._res.setdefault(target, deque(maxlen=self.window)).append((actual - predicted, sigma))

    def n(self, target: str) -> int:
        return len(self._res.get(target, ()))

    def interval(
        self, target: str, predicted: float, sigma: float, level: float
    ) -> tuple[float, float] | None:
        """The ``level`` interval around ``predicted``, or None while uncalibrated."""
        res = self._res.get(target)
        if res is None or len(res) < self.min_residuals:
            return None
        r = np.array([x for x, _ in res])
        s = np.array([x for _, x in res])
        cr = self._cls()
        cr.fit(residuals=r, sigmas=s)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # crepes warns when an interval is unbounded
            lo, hi = cr.predict_int(
                y_hat=np.array([predicted]), sigmas=np.array([sigma]), confidence=level
            )[0]
        if not (np.isfinite(lo) and np.isfinite(hi)):
            return None  # too few residuals for this level: uncalibrated, not infinite
        return float(lo), float(hi)


def coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of ``actual`` inside ``[lower, upper]``."""
    inside = (actual >= lower) & (actual <= upper)
    return float(np.mean(inside)) if inside.size else float("nan")
