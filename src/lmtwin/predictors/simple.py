"""Persistence and a numeric in-context learner fitted only on the retrieved examples."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lmtwin.errors import NotReady
from lmtwin.predictors.base import Forecast, Query
from lmtwin.types import Transition


class Persistence:
    """Next = current. Needs no data; the floor every other predictor must beat."""

    name = "persistence"
    k = 0

    def predict(self, query: Query, examples: Sequence[Transition]) -> Forecast:
        missing = [t for t in query.targets if t not in query.state]
        if missing:
            raise NotReady(f"persistence needs the current value of {missing}")
        return Forecast(np.array([[query.state[t] for t in query.targets]]))


def features(query: Query) -> list[str]:
    """Inputs a local model can use: every state, context and action value in the query."""
    return sorted(query.state) + sorted(f"a:{k}" for k in query.action)


def design(
    names: list[str], state: dict[str, float], action: dict[str, float]
) -> list[float] | None:
    row = []
    for n in names:
        value = action.get(n[2:]) if n.startswith("a:") else state.get(n)
        if value is None:
            return None
        row.append(value)
    return row


class LocalRidge:
    """Locally weighted ridge regression of each target's change on the query's inputs,
    fitted on the k retrieved examples only (nearer examples weigh more).

    Args:
        k: retrieved examples to fit on.
        alpha: ridge penalty on standardised inputs.
        min_examples: below this many usable examples, raise NotReady.
    """

    name = "numeric"

    def __init__(self, k: int = 64, alpha: float = 1e-3, min_examples: int = 3) -> None:
        self.k = k
        self.alpha = alpha
        self.min_examples = min_examples

    def predict(self, query: Query, examples: Sequence[Transition]) -> Forecast:
        names = features(query)
        q = design(names, query.state, query.action)
        if q is None:
            raise NotReady("numeric predictor needs every input of the query")
        rows, deltas = [], []
        targets = query.targets
        for ex in examples:
            nxt, now = ex.next_state, ex.state
            if not all(t in nxt and t in now for t in targets):
                continue
            row = design(names, now, ex.action)
            if row is not None:
                rows.append(row)
                deltas.append([nxt[t] - now[t] for t in targets])
        if len(rows) < self.min_examples:
            raise NotReady(
                f"numeric predictor has {len(rows)} usable examples, needs {self.min_examples}"
            )
        X, Y, xq = np.asarray(rows), np.asarray(deltas, dtype=float), np.asarray(q)
        mu, sd = X.mean(axis=0), X.std(axis=0)
        sd[sd == 0] = 1.0
        Z, zq = (X - mu) / sd, (xq - mu) / sd
        dist = np.sqrt(((Z - zq) ** 2).sum(axis=1))
        h = np.median(dist) + 1e-9
        w = np.exp(-0.5 * (dist / h) ** 2) + 1e-6
        A = np.hstack([np.ones((len(Z), 1)), Z])
        W = A * w[:, None]
        reg = self.alpha * np.eye(A.shape[1])
        reg[0, 0] = 0.0
        coef = np.linalg.solve(A.T @ W + reg, W.T @ Y)
        delta = np.hstack([1.0, zq]) @ coef
        base = np.array([query.state.get(t, 0.0) for t in query.targets])
        return Forecast((base + delta)[None, :], {"n_examples": len(rows)})


class NearestNeighbours:
    """Average change of the k nearest examples (in standardised input space)."""

    name = "knn"
    k = 32

    def __init__(self, neighbours: int = 5) -> None:
        self.neighbours = neighbours

    def predict(self, query: Query, examples: Sequence[Transition]) -> Forecast:
        names = features(query)
        q = design(names, query.state, query.action)
        pairs = [
            (design(names, e.state, e.action), [e.delta(t) for t in query.targets])
            for e in examples
        ]
        usable = [(r, d) for r, d in pairs if r is not None and None not in d]
        if q is None or not usable:
            raise NotReady("knn has no usable examples")
        X = np.asarray([r for r, _ in usable])
        Y = np.asarray([d for _, d in usable], dtype=float)
        sd = X.std(axis=0)
        sd[sd == 0] = 1.0
        dist = (((X - np.asarray(q)) / sd) ** 2).sum(axis=1)
        near = np.argsort(dist)[: self.neighbours]
        base = np.array([query.state[t] for t in query.targets])
        return Forecast((base + Y[near].mean(axis=0))[None, :])
