"""Split conformal intervals on a rolling window of the twin's recent residuals (crepes).

The intervals are normalised: each residual is divided by a difficulty estimate (the
spread of the predictors plus the size of the predicted change, at least the window's
typical relative error at this value: ``combine.sigmas``), so a volatile moment gets a
wider interval than a quiet one. Coverage is measured, not assumed: see
:func:`coverage` and the benchmark.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from typing import Any

import numpy as np

from lmtwin.errors import DependencyNotInstalled


def difficulty(spread: np.ndarray, change: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """How hard each prediction is: the predictors' spread plus half the change counted,
    floored by a thousandth of the variable's scale; finite whatever the inputs
    (arrays of one shape, element by element; the caller silences overflow warnings)."""
    value = np.asarray(spread + 0.5 * np.abs(change) + 1e-3 * scale + 1e-9, dtype=float)
    finite = np.isfinite(value)
    return value if finite.all() else np.where(finite, value, 1e300)


class Calibrator:
    """Per-target rolling residuals and a crepes ``ConformalRegressor`` fitted on them.

    Args:
        window: how many recent residuals per target calibrate the interval.
        min_residuals: below this many, no interval is given (reported as uncalibrated).
        refit_every: the fitted regressor is reused until this many new residuals have
            arrived (one in 30 of a full window: the interval hardly moves, and refitting
            on every scored transition cost as much as the prediction itself).

    Residuals may carry a ``group`` (the twin uses the predictor that dominated the
    combination): a question about a group that has ``min_residuals`` residuals in the
    window is calibrated on them only (Mondrian conformal prediction). So the errors a
    twin made while persistence alone could answer, 100x the numeric learner's in units
    of their difficulty, do not widen the numeric learner's intervals a hundredfold.
    """

    def __init__(self, window: int = 300, min_residuals: int = 20,
                 refit_every: int = 10) -> None:
        try:
            from crepes import ConformalRegressor
        except ImportError as exc:
            raise DependencyNotInstalled("crepes", None) from exc
        self._cls = ConformalRegressor
        self.window = window
        self.min_residuals = min_residuals
        self.refit_every = max(1, refit_every)
        self._res: dict[str, deque[tuple[float, float, str | None]]] = {}
        # each residual's size relative to its value, beside it in the same window
        self._rel: dict[str, deque[float]] = {}
        self._added: dict[str, int] = {}
        self._fitted: dict[tuple[Any, ...], tuple[int, Any]] = {}
        self._typical: dict[str, tuple[int, float]] = {}

    def add(self, target: str, actual: float, predicted: float, sigma: float,
            group: str | None = None) -> bool:
        """Keep one residual (of ``group``); a non-finite one (values near the float
        limit) is not kept and the call returns False."""
        residual = actual - predicted
        if not (math.isfinite(residual) and math.isfinite(sigma) and sigma > 0):
            return False
        self._res.setdefault(target, deque(maxlen=self.window)).append(
            (residual, sigma, group))
        size = max(abs(actual), abs(predicted))
        self._rel.setdefault(target, deque(maxlen=self.window)).append(
            min(abs(residual) / size, 2.0) if size > 0 else 0.0)
        self._added[target] = self._added.get(target, 0) + 1
        return True

    def typical_error(self, target: str) -> float:
        """The median size of the window's residuals relative to their values
        (``|actual - predicted| / max(|actual|, |predicted|)``); 0 before the first.

        The difficulty's floor at a value (``combine.sigmas``): unlike the typical
        relative step of the last ~20 transitions, which the floor used before, it is the
        median over the very window that calibrates the intervals, so the residuals and
        the new prediction are normalised alike. Refreshed every ``refit_every``
        residuals, or every tenth of the window once that is more (a median of 300 moves
        little in 30, and it is on every observation's path)."""
        rel = self._rel.get(target)
        if not rel:
            return 0.0
        added = self._added.get(target, 0)
        cached = self._typical.get(target)
        if cached is None or added - cached[0] >= min(max(self.refit_every, len(rel) // 10),
                                                      len(rel)):
            cached = self._typical[target] = (
                added, float(np.median(np.fromiter(rel, float, len(rel)))))
        return cached[1]

    def _arrays(self, target: str, group: str | None, min_group: int | None = None
                ) -> tuple[np.ndarray, np.ndarray, str | None]:
        """Residuals and difficulties of ``group`` when it has enough (``min_group``,
        default ``min_residuals``), else of all; and the group they are of (None: all)."""
        res = self._res.get(target, ())
        if group is not None:
            mine = [(r, s) for r, s, g in res if g == group]
            if len(mine) >= (self.min_residuals if min_group is None else min_group):
                return (np.array([r for r, _ in mine]), np.array([s for _, s in mine]),
                        group)
        return np.array([r for r, _, _ in res]), np.array([s for _, s, _ in res]), None

    def noise(self, target: str, sigmas: np.ndarray, rng: np.random.Generator,
              group: str | None = None) -> np.ndarray:
        """Draws of the error around a forecast, one per entry of ``sigmas``: normalised
        residuals resampled from the window, times each draw's difficulty. Their quantiles
        are the intervals' (at any level), unlike a normal guess. Zeros while the target
        has no residuals."""
        sigmas = np.asarray(sigmas, dtype=float)
        r, s, _ = self._arrays(target, group)
        if not len(r):
            return np.zeros_like(sigmas)
        scaled = r / s
        return scaled[rng.integers(len(scaled), size=sigmas.shape)] * sigmas

    def n(self, target: str) -> int:
        return len(self._res.get(target, ()))

    def interval(
        self, target: str, predicted: float, sigma: float, level: float,
        group: str | None = None, min_group: int | None = None,
    ) -> tuple[float, float] | None:
        """The ``level`` interval around ``predicted``, or None while uncalibrated.
        ``min_group``: residuals ``group`` needs to be calibrated on its own (default
        ``min_residuals``)."""
        res = self._res.get(target)
        if res is None or len(res) < self.min_residuals:
            return None
        added = self._added.get(target, 0)
        key = (target, group) if min_group is None else (target, group, min_group)
        fitted = self._fitted.get(key)
        if fitted is None or added - fitted[0] >= min(self.refit_every, len(res)):
            r, s, _ = self._arrays(target, group, min_group)
            cr = self._cls()
            cr.fit(residuals=r, sigmas=s)
            self._fitted[key] = (added, cr)
        else:
            cr = fitted[1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # crepes warns when an interval is unbounded
            lo, hi = cr.predict_int(
                y_hat=np.array([predicted]), sigmas=np.array([sigma]), confidence=level
            )[0]
        if not (np.isfinite(lo) and np.isfinite(hi)):
            return None  # too few residuals for this level: uncalibrated, not infinite
        return float(lo), float(hi)

    def residual_quantiles(self, target: str, u: np.ndarray,
                           sigmas: np.ndarray | None = None, bins: int = 5,
                           group: str | None = None) -> np.ndarray | None:
        """The recent normalised residuals (residual / sigma) of ``target`` at
        probabilities ``u``: the inverse of their empirical distribution. Noise for a
        prediction with difficulty ``sigma`` is ``sigma * residual_quantiles(t, u)``;
        feeding the same uniforms ``u`` to two plans gives them common random numbers.
        None while uncalibrated (fewer than ``min_residuals``).

        With ``sigmas`` (one per entry of ``u``), each draw comes from the residuals whose
        difficulty fell in the same of ``bins`` quantile bins (Mondrian by difficulty): where
        the difficulty is a poor scale of the error (additive noise, a difficulty that grows
        with the predicted change), the normalised residuals of easy and hard predictions
        differ several-fold, and mixing them draws hard-looking noise for easy steps and
        the reverse (measured on a noisy tank: time-to-threshold intervals 3x too wide).
        """
        res = self._res.get(target)
        if res is None or len(res) < self.min_residuals:
            return None
        r, s, _ = self._arrays(target, group)
        z = r / s
        u = np.asarray(u, dtype=float)
        per_bin = len(z) // max(bins, 1)
        if sigmas is None or bins < 2 or per_bin < self.min_residuals:
            return np.asarray(np.quantile(z, u))
        edges = np.quantile(s, np.linspace(0, 1, bins + 1)[1:-1])
        where = np.searchsorted(edges, s)
        which = np.searchsorted(edges, np.broadcast_to(np.asarray(sigmas, float), u.shape))
        out = np.empty(u.shape)
        for b in range(bins):
            mask = which == b
            if mask.any():
                out[mask] = np.quantile(z[where == b], u[mask])
        return out

    def pvalue(
        self,
        target: str,
        actual: float,
        predicted: float,
        sigma: float,
        smoothing: bool = False,
        seed: int | None = None,
        group: str | None = None,
    ) -> float | None:
        """The conformal p-value of ``actual`` against the target's normalised residuals
        (crepes ``predict_p``), or None before the first residual.

        Not smoothed, ``P(p <= a) <= a`` for exchangeable residuals but ``p`` is never
        below ``1 / (n + 1)``; smoothed (a tie-breaking draw seeded by ``seed``), ``p`` is
        exactly uniform, as a conformal test martingale needs.
        """
        if not self._res.get(target):
            return None
        r, s, _ = self._arrays(target, group)
        cr = self._cls().fit(residuals=r, sigmas=s)
        p = cr.predict_p(
            np.array([predicted]),
            np.array([actual]),
            sigmas=np.array([sigma]),
            smoothing=smoothing,
            seed=seed,
        )
        return float(p[0])


def coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of ``actual`` inside ``[lower, upper]``."""
    inside = (actual >= lower) & (actual <= upper)
    return float(np.mean(inside)) if inside.size else float("nan")
