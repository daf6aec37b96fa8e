"""Plain data types that flow through the engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lmtwin.schema import Schema


@dataclass(frozen=True)
class Note:
    """A free-text fact with the time it became known."""

    at: float
    text: str


@dataclass(frozen=True)
class Observation:
    """Values of some variables of one episode at one time. Missing is not zero."""

    episode: str
    t: float
    values: dict[str, float]


@dataclass(frozen=True)
class Transition:
    """What happened between two consecutive observations of one episode.

    ``state`` holds state and context variables at ``t``, ``action`` the actions taken at
    ``t``, ``next_state`` the state variables at the next time. Any may miss variables.
    """

    episode: str
    t: float
    state: dict[str, float]
    action: dict[str, float]
    next_state: dict[str, float]

    def delta(self, name: str) -> float | None:
        """Change of a state variable over the transition, or None when either end is missing."""
        if name in self.state and name in self.next_state:
            return self.next_state[name] - self.state[name]
        return None


@dataclass
class Query:
    """What to predict: the next value of ``targets`` from ``state`` (state and context
    variables at t) under ``action``. ``schema`` and ``notes`` describe the system."""

    state: dict[str, float]
    action: dict[str, float]
    targets: list[str]
    schema: Schema = field(default_factory=Schema)
    notes: list[Note] = field(default_factory=list)


@dataclass
class Prediction:
    """A prediction of the next state, with a sample axis (samples x variables).

    ``mean`` is the combined point forecast; ``lower``/``upper`` the calibrated interval at
    ``level``; ``by_predictor`` each predictor's point forecast; ``weights`` the combination
    weights used; ``provenance`` what was retrieved, tokens used and any fallback.
    """

    variables: list[str]
    samples: np.ndarray
    mean: dict[str, float]
    lower: dict[str, float] = field(default_factory=dict)
    upper: dict[str, float] = field(default_factory=dict)
    level: float = 0.9
    by_predictor: dict[str, dict[str, float]] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "variables": self.variables,
            "mean": self.mean,
            "lower": self.lower,
            "upper": self.upper,
            "level": self.level,
            "by_predictor": self.by_predictor,
            "weights": self.weights,
            "n_samples": int(self.samples.shape[0]),
            "provenance": self.provenance,
        }
