"""Prequential scoring: every new transition is predicted from what was stored before it,
then learnt (river's order), so the combination weights and the intervals are current
whatever path the data took (observe, observe_many, a reopened store, the service).

    new transition -> forecasts (cheap predictors always; costly ones every n-th)
                   -> combined as a prediction would be -> Score
                   -> listeners (alerts: before the residual is learnt)
                   -> Hedge.update, Calibrator.add

A live ``predict(..., episode=...)`` made from the same state and action is reused as the
transition's forecast (with the language model's answer, when it was asked), so nothing
is scored twice.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from lmtwin.predictors.combine import Hedge
from lmtwin.types import Prediction, Transition
from lmtwin.uncertainty import Calibrator


@dataclass
class Score:
    """One scored prediction of one target, kept in ``Twin.scores_``.

    ``source`` is "live" for a prediction a caller made with ``episode``, "prequential"
    for one the twin made itself when the transition arrived.
    """

    episode: str
    t: float
    target: str
    actual: float
    combined: float
    lower: float | None
    upper: float | None
    by_predictor: dict[str, float] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    sigma: float = float("nan")
    previous: float = float("nan")
    source: str = "prequential"


Listener = Callable[[Score], None]


class Scorer:
    """Turns a transition and the prediction made for it into Scores, and teaches them to
    the Hedge weights and the calibrator.

    Args:
        hedge, calibrator: what learns from the scores.
        keep: scores kept in ``scores`` (older ones are dropped, oldest first).
    """

    def __init__(self, hedge: Hedge, calibrator: Calibrator, keep: int = 20_000) -> None:
        self.hedge = hedge
        self.calibrator = calibrator
        self.keep = keep
        self.scores: list[Score] = []
        self.listeners: list[Listener] = []
        self.unscored: Counter[str] = Counter()

    def record(self, transition: Transition, prediction: Prediction, source: str,
               at: float | None = None) -> list[Score]:
        """Score ``prediction`` against the transition's next state and learn from it;
        the scores are dated ``at``, the time of the observation judged (default: the
        transition's start)."""
        actual = {
            t: v for t, v in transition.next_state.items()
            if t in prediction.mean and t in transition.state
        }
        if not actual:
            return []
        sigma = prediction.provenance.get("sigma", {})
        when = transition.t if at is None else at
        out = [
            Score(
                transition.episode,
                when,
                target,
                value,
                prediction.mean[target],
                prediction.lower.get(target),
                prediction.upper.get(target),
                {n: f[target] for n, f in prediction.by_predictor.items() if target in f},
                dict(prediction.weights),
                float(sigma.get(target, math.nan)),
                transition.state[target],
                source,
            )
            for target, value in actual.items()
        ]
        for score in out:
            for listener in self.listeners:
                listener(score)
        self.hedge.update(actual, transition.state, prediction.by_predictor)
        group = dominant(prediction.weights)
        for score in out:
            if not self.calibrator.add(score.target, score.actual, score.combined, score.sigma,
                                       group):
                self.unscored["non-finite residual"] += 1
        self.scores.extend(out)
        if len(self.scores) > 2 * self.keep:
            del self.scores[: len(self.scores) - self.keep]
        return out


def dominant(weights: dict[str, float]) -> str | None:
    """The predictor with the largest weight: the calibration group of a prediction."""
    return max(weights, key=weights.__getitem__) if weights else None
