"""Combining the predictors: weights from each one's recent errors, then one Prediction.

Weights (``Hedge``). At each scored step a predictor's loss is its squared error on each
target divided by the square of that target's typical step (the discounted mean absolute
change), capped, averaged over targets::

    loss_n = mean_t min(cap, ((f_nt - y_t) / s_t) ** 2)
    L_n   <- d * L_n + (1 - d) * loss_n / med_m loss_m   (only on the steps n was scored)
    w_n   ∝ exp(-eta * (L_n / min_m L_m - 1))     (over predictors with >= min_scored)

So each step's loss is a squared error in units of a typical step: aligned with the MSE
the combination is judged by, and scale-free across variables. The record ``L_n`` learns
it relative to that step's median loss over the predictors scored on it (``loss_n / med``):
every step counts alike whatever the size of everyone's errors then. Absolute losses let
the past rule: on the plankton series the errors fall a thousandfold as the system
settles, and the numeric learner, 100-1000x better than persistence on the last 15
steps, kept no weight because it had been 5x worse on the larger errors before them (the
combination equalled persistence, 8.2e-07 against the learner's 2.1e-08).

A predictor scored on a sample of steps only (the language model, whose calls are costly)
is compared with the others on the steps they share, never on different ones: its record
is the reference's (the predictor scored most often) plus its own discounted mean excess
over the reference on their common steps, ``L_n = L_ref + D_n,ref``. For predictors scored
on every step this is their own record exactly; for a sampled one it is a paired
comparison. (A record over its own, older steps against the others' recent ones let the
demo's language model keep 44% of the weight with 14x the numeric learner's error on one
variable and 1.2x on the other.)

Weights depend on the ratio of a predictor's error to the best one's: at ``eta = 5`` a
predictor 1.2x the best keeps 37% of the best's weight and one 2x the best under 1%, so
a combination stays close to its best member (it replaces a capped log loss that kept
28-53% of the weight on a language model with the worst error of three). A predictor
without ``min_scored`` scores has no weight while any other has a record: weight is
earned. Arithmetic never overflows: a value near the float limit gives the capped loss,
not an ``OverflowError``.

Combination (``combine``): the weighted mean; a normalised conformal interval from the
calibrator; samples drawn from the calibrated residual distribution at any level.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lmtwin.predictors.base import Forecast
from lmtwin.types import Prediction, Query, Transition
from lmtwin.uncertainty import Calibrator
from lmtwin.uncertainty.conformal import difficulty


class Hedge:
    """Exponential weights on each predictor's discounted, normalised squared error.

    Args:
        eta: sharpness of the weights on the error ratio to the best predictor.
        discount: factor on a predictor's past record at each of its scored steps.
        cap: largest loss one step can add (in squared typical steps).
        min_scored: scores a predictor needs before it gets any weight (while another
            predictor has a record).
    """

    def __init__(
        self, eta: float = 5.0, discount: float = 0.95, cap: float = 100.0, min_scored: int = 3
    ) -> None:
        self.eta = eta
        self.discount = discount
        self.cap = cap
        self.min_scored = min_scored
        self.loss_: dict[str, float] = {}
        self.n_updates_: dict[str, int] = {}
        self._step: dict[str, float] = {}
        self._seen: dict[str, int] = {}
        self._rel: dict[str, float] = {}
        # (n, m) -> discounted mean of loss_n - loss_m over the steps both were scored
        self._excess: dict[tuple[str, str], float] = {}

    def weights(self, names: Sequence[str]) -> dict[str, float]:
        """Weights of ``names`` (the predictors that answered), summing to one."""
        names = list(dict.fromkeys(names))
        if not names:
            return {}
        rated = [n for n in names if self.n_updates_.get(n, 0) >= self.min_scored]
        if not rated:
            return {n: 1.0 / len(names) for n in names}
        loss = self.paired_loss(rated)
        best = min(loss.values())
        floor = best + 1e-12
        raw = {n: math.exp(-self.eta * (loss[n] / floor - 1.0)) for n in rated}
        total = sum(raw.values())
        return {n: raw.get(n, 0.0) / total for n in names}

    def paired_loss(self, names: Sequence[str]) -> dict[str, float]:
        """Each predictor's record on the reference's steps: ``L_ref + D_n,ref``, where the
        reference is the one of ``names`` scored most often (its own record if it was
        never scored beside the reference)."""
        ref = max(names, key=lambda n: (self.n_updates_.get(n, 0), -self.loss_.get(n, 0.0)))
        out = {}
        for n in names:
            excess = self._excess.get((n, ref))
            out[n] = self.loss_[n] if n == ref or excess is None else max(
                0.0, self.loss_[ref] + excess)
        return out

    def step(self, target: str) -> float:
        """The typical size of one step of ``target`` (discounted mean absolute change)."""
        return self._step.get(target, 0.0)

    def relative_step(self, target: str) -> float:
        """The typical size of one step of ``target`` relative to its value (capped at 1)."""
        return self._rel.get(target, 0.0)

    def update(
        self,
        actual: Mapping[str, float],
        current: Mapping[str, float],
        forecasts: Mapping[str, Mapping[str, float]],
    ) -> dict[str, float]:
        """Score each predictor's point forecast against ``actual``; return the losses."""
        targets = [t for t in actual if t in current]
        for t in targets:
            change = abs(actual[t] - current[t])
            if not math.isfinite(change):
                continue
            # the mean of the changes so far until there are 20, then discounted: an
            # average started at the first change (0.02 on Hare-Lynx, whose steps are
            # 17) stayed far too small for its first dozens of steps
            seen = self._seen[t] = self._seen.get(t, 0) + 1
            rate = max(0.05, 1.0 / seen)
            self._step[t] = (1 - rate) * self._step.get(t, 0.0) + rate * change
            # a change beyond the whole value (from 0) counts as the whole value
            rel = min(1.0, change / abs(current[t])) if current[t] else 1.0
            self._rel[t] = (1 - rate) * self._rel.get(t, 0.0) + rate * rel
        per_target: dict[str, list[float]] = {}
        for t in targets:
            s = self._step.get(t, 0.0) + 1e-12 * (1.0 + min(abs(actual[t]), 1e150))
            for n, f in forecasts.items():
                if t not in f:
                    continue
                ratio = abs(f[t] - actual[t]) / s
                # NaN or inf (a value near the float limit): the capped loss
                err = self.cap if not ratio < math.sqrt(self.cap) else ratio * ratio
                per_target.setdefault(n, []).append(err)
        losses = {n: sum(v) / len(v) for n, v in per_target.items()}
        # the record learns each step's losses relative to the step's median one: a
        # settling system's errors fall a thousandfold, and absolute losses from before
        # would rule the record long after the ranking changed
        mid = float(np.median(list(losses.values()))) + 1e-12 if losses else 1.0
        relative = {n: v / mid for n, v in losses.items()}
        for n, loss_n in relative.items():
            for m, loss_m in relative.items():
                if m != n:
                    old_d = self._excess.get((n, m))
                    diff = loss_n - loss_m
                    self._excess[(n, m)] = diff if old_d is None else (
                        self.discount * old_d + (1 - self.discount) * diff)
        for name, loss in relative.items():
            old = self.loss_.get(name)
            self.loss_[name] = loss if old is None else self.discount * old + (
                1 - self.discount) * loss
            self.n_updates_[name] = self.n_updates_.get(name, 0) + 1
        return losses


def change_scale(change: float, forecasts: np.ndarray, step: float, typical: float) -> float:
    """The change a prediction's difficulty counts: the largest of the predicted
    ``change``, half the range of the predictors' ``forecasts`` (persistence leading a
    learner that is not yet trusted still disagrees with it) and the ``typical`` change
    at this value (the typical relative step times the current value); for a lone
    forecast (persistence on a cold start) at least the typical ``step``.

    Difficulty grew with the predicted change only, so a forecast of little or no change
    got the floor (a thousandth of the value): on Hare-Lynx its normalised residuals
    were 100-1000x the others' and the 90% intervals 201 standard deviations wide."""
    floor = max(abs(change), typical)
    if len(forecasts) < 2:
        return max(floor, step)
    return max(floor, 0.5 * float(np.ptp(forecasts)))


def fewest_residuals(level: float) -> int:
    """The fewest residuals whose split-conformal quantile at ``level`` is finite (crepes:
    ``int((1 - level) * (n + 1)) >= 1``; 10 at 90%).

    A prediction is calibrated on the residuals of predictions led by the same predictor
    once there are this many of them, not only from the calibrator's ``min_residuals``:
    the pooled residuals it fell back to before were other leaders'. On Hare-Lynx they
    were persistence's from the cold start, normalised by a no-change difficulty (the
    floor of a thousandth of the value) and so 100-1000x the numeric learner's: its 90%
    intervals were 201 standard deviations wide. With fewer than this many, the pooled
    residuals remain the rule (stated in ``Calibrator``)."""
    n = max(1, math.ceil(1.0 / (1.0 - level)) - 1)
    while int((1.0 - level) * (n + 1)) < 1:
        n += 1
    return n


def combine(
    query: Query,
    forecasts: Mapping[str, Forecast],
    hedge: Hedge,
    calibrator: Calibrator,
    level: float,
    n_samples: int,
    rng: np.random.Generator,
    skipped: Mapping[str, str] | None = None,
    examples: Sequence[Transition] = (),
    schema_version: int = 0,
) -> Prediction:
    """One Prediction from the predictors' forecasts: Hedge-weighted mean, conformal
    interval at ``level`` and samples from the calibrated residuals (or, uncalibrated, from
    the predictors' own samples picked by weight)."""
    targets = query.targets
    weights = hedge.weights(list(forecasts))
    means = {n: f.mean for n, f in forecasts.items()}
    mean = np.zeros(len(targets))
    for n in forecasts:
        if weights[n] > 0:
            mean = mean + weights[n] * means[n]
    spread = np.sqrt(sum(weights[n] * (means[n] - mean) ** 2 for n in forecasts if weights[n] > 0))
    lower: dict[str, float] = {}
    upper: dict[str, float] = {}
    sigma: dict[str, float] = {}
    # calibrated on the residuals of predictions led by the same predictor (Mondrian)
    group = max(weights, key=weights.__getitem__) if weights else None
    every = np.stack([means[n] for n in forecasts]) if forecasts else np.zeros((1, len(targets)))
    for j, t in enumerate(targets):
        cur = query.state[t]
        sigma[t] = difficulty(float(spread[j]), change_scale(
            float(mean[j] - cur), every[:, j], hedge.step(t), hedge.relative_step(t) * abs(cur)),
            hedge.step(t) + abs(cur))
        interval = calibrator.interval(t, float(mean[j]), sigma[t], level, group,
                                       min_group=fewest_residuals(level))
        if interval is not None:
            lower[t], upper[t] = interval
    calibrated = len(lower) == len(targets)
    samples = np.empty((n_samples, len(targets)))
    if n_samples == 0:
        pass  # a point forecast with its interval (the twin's own scoring)
    elif calibrated:
        for j, t in enumerate(targets):
            samples[:, j] = mean[j] + calibrator.noise(t, np.full(n_samples, sigma[t]), rng,
                                                       group)
    else:
        names = [n for n in forecasts if weights[n] > 0]
        picks = rng.choice(len(names), size=n_samples, p=[weights[n] for n in names])
        for i, p in enumerate(picks):
            s = forecasts[names[p]].samples
            samples[i] = s[rng.integers(len(s))]
    info: dict[str, Any] = {n: f.info for n, f in forecasts.items() if f.info}
    return Prediction(
        variables=list(targets),
        samples=samples,
        mean={t: float(mean[j]) for j, t in enumerate(targets)},
        lower=lower,
        upper=upper,
        level=level,
        by_predictor={n: {t: float(m[j]) for j, t in enumerate(targets)} for n, m in means.items()},
        weights=weights,
        provenance={
            "n_examples": len(examples),
            "schema_version": schema_version,
            "skipped": dict(skipped or {}),
            "calibrated": calibrated,
            "sigma": sigma,
            "info": info,
        },
    )
