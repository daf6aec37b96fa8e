"""The predictor contract: every in-context learner and every baseline answers it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from lmtwin.types import Query, Transition


@dataclass
class Forecast:
    """Samples of the next value of each target: shape (n_samples, n_targets)."""

    samples: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def mean(self) -> np.ndarray:
        return np.asarray(self.samples.mean(axis=0))


@runtime_checkable
class Predictor(Protocol):
    """Predicts from the retrieved ``examples`` only; never trained on the stream.

    Raise ``NotReady`` when it cannot answer (too few examples); ``ParseError`` or
    ``BackendError`` when its model fails. Subclasses set ``name`` and ``k``, the number
    of retrieved examples they want (0 for none): a language model's prompt budget allows
    few, a local regression fits better on more. One that widens its fit where its ``k``
    nearest do not suffice also sets ``reach``, how many it may look at (``wanted``). A
    predictor whose calls are costly (a language model) also sets ``costly = True``: the
    twin then scores it on a sample of the stream only.
    """

    name: str
    k: int

    def predict(self, query: Query, examples: Sequence[Transition]) -> Forecast: ...


class Examples(list[Transition]):
    """Retrieved transitions, nearest last, that can fetch more of the same query's:
    ``wider(k)`` returns its k nearest (the twin passes these; a predictor that widens
    its fit past what it was given asks, ``LocalRidge``)."""

    def __init__(self, items: Sequence[Transition],
                 wider: Callable[[int], Sequence[Transition]] | None = None) -> None:
        super().__init__(items)
        self.wider = wider

    def last(self, n: int) -> Examples:
        """The n nearest, still able to fetch more."""
        return Examples(self[max(0, len(self) - n):] if n else [], self.wider)


def wanted(predictor: Any) -> int:
    """How many retrieved examples ``predictor`` is given: its ``reach`` if it has one,
    else its ``k``."""
    return int(getattr(predictor, "reach", predictor.k))


def check_predictor(predictor: Predictor, examples: Sequence[Transition], query: Query) -> None:
    """Raise AssertionError unless ``predictor`` answers the contract on this data."""
    assert isinstance(predictor, Predictor)
    out = predictor.predict(query, examples)
    assert isinstance(out, Forecast)
    assert out.samples.ndim == 2 and out.samples.shape[1] == len(query.targets), out.samples.shape
    assert out.samples.shape[0] >= 1
    assert np.all(np.isfinite(out.samples)), out.samples
