"""Encoders map a transition's context (state and action values) to a vector."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from lmtwin.schema import Schema
from lmtwin.types import Transition

Context = tuple[dict[str, float], dict[str, float]]  # (state, action)


@runtime_checkable
class Encoder(Protocol):
    """Embeds contexts. ``fit`` sets what the encoder needs from the stored data (scales,
    names); ``version`` changes whenever embeddings already computed are no longer valid."""

    version: int

    def fit(self, transitions: Sequence[Transition], schema: Schema) -> None: ...

    def covers(self, schema: Schema) -> bool:
        """Whether the encoder can embed every variable of ``schema`` as it stands."""
        ...

    def encode(self, contexts: Sequence[Context]) -> np.ndarray: ...


class RawEncoder:
    """Standardised raw features over the schema's state, context and action variables.

    A missing value is written as the variable's mean (0 after standardising): missing is
    not zero in the data, it is "no information" in the embedding.
    """

    def __init__(self, action_weight: float = 1.0) -> None:
        self.action_weight = action_weight
        self.names_: list[str] = []
        self.mean_ = np.zeros(0)
        self.std_ = np.ones(0)
        self.version = 0

    def fit(self, transitions: Sequence[Transition], schema: Schema) -> None:
        names = [f"s:{n}" for n in schema.states + schema.contexts] + [
            f"a:{n}" for n in schema.actions
        ]
        cols = [
            [v for tr in transitions if (v := _get(tr.state, tr.action, n)) is not None]
            for n in names
        ]
        self.names_ = names
        self.mean_ = np.array([np.mean(c) if c else 0.0 for c in cols])
        std = np.array([np.std(c) if c else 1.0 for c in cols])
        self.std_ = np.where(std > 0, std, 1.0)
        self.version += 1

    def covers(self, schema: Schema) -> bool:
        names = {f"s:{n}" for n in schema.states + schema.contexts} | {
            f"a:{n}" for n in schema.actions
        }
        return names == set(self.names_)

    def encode(self, contexts: Sequence[Context]) -> np.ndarray:
        out = np.zeros((len(contexts), len(self.names_)), dtype=np.float32)
        for i, (state, action) in enumerate(contexts):
            for j, n in enumerate(self.names_):
                v = _get(state, action, n)
                if v is not None:
                    out[i, j] = (v - self.mean_[j]) / self.std_[j]
        weights = np.array(
            [self.action_weight if n.startswith("a:") else 1.0 for n in self.names_],
            dtype=np.float32,
        )
        return out * weights

    def encode_columns(self, columns: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        """Embed ``n`` contexts given as columns keyed ``s:name`` / ``a:name`` (a missing
        key: every context lacks it): ``encode`` without a Python loop per context."""
        out = np.zeros((n, len(self.names_)), dtype=np.float32)
        for j, key in enumerate(self.names_):
            col = columns.get(key)
            if col is not None:
                w = self.action_weight if key.startswith("a:") else 1.0
                out[:, j] = (np.asarray(col, dtype=float) - self.mean_[j]) / self.std_[j] * w
        return out


def _get(state: dict[str, float], action: dict[str, float], key: str) -> float | None:
    return action.get(key[2:]) if key.startswith("a:") else state.get(key[2:])
