"""Persistence and a numeric in-context learner fitted only on the retrieved examples."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lmtwin.errors import NotReady
from lmtwin.predictors.base import Forecast, Query
from lmtwin.types import Transition


@dataclass
class Batch:
    """Many queries over the same inputs and targets, each with its retrieved examples,
    as arrays (a rollout's paths at one step).

    ``inputs`` (n, F) are named by ``names`` (``features`` order, ``a:`` for actions);
    ``current`` (n, T) the targets' current values; ``ex_inputs`` (n, k, F) and
    ``ex_deltas`` (n, k, T) the retrieved examples' inputs and target changes, nearest
    first, NaN where a value (or the example) is missing. ``complete``: the builder
    knows every example has every value (``usable`` then needs no pass over them).
    """

    names: list[str]
    targets: list[str]
    inputs: np.ndarray
    current: np.ndarray
    ex_inputs: np.ndarray
    ex_deltas: np.ndarray
    complete: bool = False

    def nearest(self, k: int) -> Batch:
        """The same queries with only their ``k`` nearest examples."""
        return Batch(self.names, self.targets, self.inputs, self.current,
                     self.ex_inputs[:, :k], self.ex_deltas[:, :k], self.complete)

    def usable(self) -> np.ndarray:
        """(n, k): examples with every input and every target's change."""
        if self.complete:
            return np.ones(self.ex_inputs.shape[:2], dtype=bool)
        # a NaN or an infinity anywhere in a row makes its sum non-finite
        return (np.isfinite(self.ex_inputs @ np.ones(self.ex_inputs.shape[2]))
                & np.isfinite(self.ex_deltas @ np.ones(self.ex_deltas.shape[2])))


def _no_nan(x: np.ndarray, ok: np.ndarray) -> np.ndarray:
    return np.where(ok, x, 0.0)


def _masked_median(x: np.ndarray, use: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Row medians of ``x`` over the entries ``use`` marks (1.0 for an empty row)."""
    s = np.sort(np.where(use, x, np.inf), axis=1)
    c = np.maximum(count, 1)
    rows = np.arange(len(x))
    mid = 0.5 * (s[rows, (c - 1) // 2] + s[rows, c // 2])
    return np.where(count > 0, mid, 1.0)


class Persistence:
    """Next = current. Needs no data; the floor every other predictor must beat."""

    name = "persistence"
    k = 0

    def predict(self, query: Query, examples: Sequence[Transition]) -> Forecast:
        missing = [t for t in query.targets if t not in query.state]
        if missing:
            raise NotReady(f"persistence needs the current value of {missing}")
        return Forecast(np.array([[query.state[t] for t in query.targets]]))

    def predict_batch(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        """Point forecasts (n, T) and which queries were answered (n,): all of them."""
        return batch.current.copy(), np.ones(len(batch.current), dtype=bool)


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

    def predict_batch(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        """``predict`` for every query of ``batch`` at once (the same fit on the same
        examples, solved as one stack of small systems). Returns point forecasts (n, T)
        and which queries had at least ``min_examples`` usable examples (n,)."""
        b = batch.nearest(self.k)
        use = b.usable()
        count = use.sum(axis=1)
        ok = count >= self.min_examples
        every = bool(use.all())  # the usual case: no masking passes
        # feature-major views (n, F, k): broadcast passes run along the k examples, not
        # along F (2-3x faster; retrieve_batch lays the examples out this way)
        X = b.ex_inputs.transpose(0, 2, 1)
        Y = b.ex_deltas.transpose(0, 2, 1)
        if not every:
            X = np.where(use[:, None, :], X, 0.0)
            Y = np.where(use[:, None, :], Y, 0.0)
        # sums over the examples as matrix products: numpy's .sum over a small axis is
        # several times slower (measured)
        m = use.astype(float)[:, :, None]
        c = np.maximum(count, 1)[:, None]
        mu = (X @ m)[:, :, 0] / c
        D = X - mu[:, :, None]
        if not every:
            D *= m.transpose(0, 2, 1)
        DD = D * D
        sd = np.sqrt((DD @ m)[:, :, 0] / c)
        sd[sd == 0] = 1.0
        inv = 1.0 / sd
        iv = inv * inv
        dq = b.inputs - mu
        # squared standardised distances |(d - dq) / sd|^2, expanded so that no pass
        # beyond D * D is needed (d and dq are centred: no cancellation to speak of)
        d2 = (iv[:, None, :] @ DD)[:, 0] - 2.0 * ((dq * iv)[:, None, :] @ D)[:, 0]
        d2 += (dq * dq * iv).sum(axis=1)[:, None]
        dist = np.sqrt(np.maximum(d2, 0.0))
        h = _masked_median(dist, use, count)[:, None] + 1e-9
        w = np.exp(-0.5 * (dist / h) ** 2) + 1e-6
        if not every:
            w *= m[:, :, 0]
        # the weighted normal equations of [1, z], z = d / sd: built from D, then scaled
        f = X.shape[1]
        Dw = D * w[:, None, :]
        wv = w[:, :, None]
        lhs = np.empty((len(X), f + 1, f + 1))
        lhs[:, 0, 0] = w.sum(axis=1)
        lhs[:, 0, 1:] = lhs[:, 1:, 0] = (D @ wv)[:, :, 0] * inv
        lhs[:, 1:, 1:] = ((Dw @ D.transpose(0, 2, 1)) * (inv[:, :, None] * inv[:, None, :])
                          + self.alpha * np.eye(f))
        rhs = np.empty((len(X), f + 1, Y.shape[1]))
        rhs[:, 0] = (Y @ wv)[:, :, 0]
        rhs[:, 1:] = (Dw @ Y.transpose(0, 2, 1)) * inv[:, :, None]
        lhs[~ok] = np.eye(f + 1)  # unanswered queries: any solvable system
        coef = np.linalg.solve(lhs, rhs)
        delta = coef[:, 0] + ((dq * inv)[:, None, :] @ coef[:, 1:])[:, 0]
        return batch.current + np.where(ok[:, None], delta, 0.0), ok


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

    def predict_batch(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        """``predict`` for every query of ``batch`` at once."""
        b = batch.nearest(self.k)
        use = b.usable()
        count = use.sum(axis=1)
        ok = count >= 1
        m = use.astype(float)[:, :, None]
        X = _no_nan(b.ex_inputs, use[:, :, None])
        c = np.maximum(count, 1)[:, None]
        mu = (X * m).sum(axis=1) / c
        sd = np.sqrt((((X - mu[:, None]) ** 2) * m).sum(axis=1) / c)
        sd[sd == 0] = 1.0
        dist = (((X - b.inputs[:, None]) / sd[:, None]) ** 2).sum(axis=2)
        dist = np.where(use, dist, np.inf)
        near = np.argsort(dist, axis=1, kind="stable")[:, : self.neighbours]
        taken = np.take_along_axis(use, near, axis=1)
        Y = np.take_along_axis(_no_nan(b.ex_deltas, use[:, :, None]), near[:, :, None], axis=1)
        mean = (Y * taken[:, :, None]).sum(axis=1) / np.maximum(taken.sum(axis=1), 1)[:, None]
        return batch.current + mean, ok
