"""A regularised linear learner whose penalty is chosen by leave-one-out error.

On short, noisy series with many variables, a local learner fitted on a few dozen
retrieved rows overfits; a global ridge regression of the change on every row, its
penalty chosen by (exact, closed-form) leave-one-out cross-validation, does not. With
``k`` larger than the stored history it is global; on a large store it is a ridge over
the ``k`` nearest rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lmtwin.errors import NotReady
from lmtwin.predictors.base import Forecast, Query
from lmtwin.predictors.simple import Batch, design, features
from lmtwin.types import Transition

ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def _loo_ridge(X: np.ndarray, Y: np.ndarray, use: np.ndarray, xq: np.ndarray,
               alphas: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Ridge of Y on standardised X for a stack of problems (n, k, F) / (n, k, T) with
    usable rows ``use`` (n, k); the penalty (times the number of rows) chosen per
    problem by the leave-one-out error summed over targets, each scaled by its
    variance. Returns the change predicted at ``xq`` (n, F) and the chosen penalty."""
    m = use.astype(float)[:, :, None]
    c = np.maximum(use.sum(axis=1), 1)[:, None]
    mu = (X * m).sum(axis=1) / c
    sd = np.sqrt((((X - mu[:, None]) ** 2) * m).sum(axis=1) / c)
    sd[sd == 0] = 1.0
    Z = (X - mu[:, None]) / sd[:, None] * m
    ym = (Y * m).sum(axis=1) / c
    Yc = (Y - ym[:, None]) * m
    var = np.maximum((Yc**2).sum(axis=1) / c, 1e-300)
    U, s, Vt = np.linalg.svd(Z, full_matrices=False)  # (n,k,r), (n,r), (n,r,F)
    UtY = np.swapaxes(U, 1, 2) @ Yc  # (n, r, T)
    U2 = U**2
    zq = (xq - mu) / sd
    qV = (Vt @ zq[:, :, None])[:, :, 0]
    best = np.full(len(X), np.inf)
    out = np.zeros((len(X), Y.shape[2]))
    chosen = np.zeros(len(X))
    for a in alphas:
        lam = a * c  # (n, 1)
        shrink = s**2 / (s**2 + lam)  # (n, r)
        fit = U @ (shrink[:, :, None] * UtY)
        lev = (U2 @ shrink[:, :, None])[:, :, 0] + 1.0 / c
        e = (Yc - fit) / np.maximum(1.0 - lev, 1e-6)[:, :, None] * m
        score = ((e**2).sum(axis=1) / c / var).sum(axis=1)
        pred = ym + ((qV * s / (s**2 + lam))[:, None, :] @ UtY)[:, 0]
        better = score < best
        best = np.where(better, score, best)
        out[better] = pred[better]
        chosen[better] = a
    return out, chosen


class RidgeCV:
    """Ridge regression of each target's change on the inputs of the ``k`` retrieved
    examples (all of a short history), the penalty chosen by leave-one-out error.

    Args:
        k: retrieved examples to fit on (larger than the history: a global fit).
        alphas: penalties to choose from, per row on standardised inputs.
        min_examples: below this many usable examples, raise NotReady.
    """

    name = "ridge"

    def __init__(self, k: int = 256, alphas: Sequence[float] = ALPHAS,
                 min_examples: int = 5) -> None:
        self.k = k
        self.alphas = tuple(alphas)
        self.min_examples = min_examples

    def predict(self, query: Query, examples: Sequence[Transition]) -> Forecast:
        names = features(query)
        q = design(names, query.state, query.action)
        if q is None:
            raise NotReady("ridge needs every input of the query")
        rows, deltas = [], []
        for ex in examples:
            row = design(names, ex.state, ex.action)
            d = [ex.delta(t) for t in query.targets]
            if row is not None and None not in d:
                rows.append(row)
                deltas.append(d)
        if len(rows) < self.min_examples:
            raise NotReady(f"ridge has {len(rows)} usable examples, needs {self.min_examples}")
        X, Y = np.asarray(rows, dtype=float)[None], np.asarray(deltas, dtype=float)[None]
        delta, alpha = _loo_ridge(X, Y, np.ones(X.shape[:2], dtype=bool),
                                  np.asarray(q, dtype=float)[None], self.alphas)
        base = np.array([query.state[t] for t in query.targets])
        return Forecast((base + delta[0])[None, :], {"alpha": float(alpha[0]),
                                                      "n_examples": len(rows)})

    def predict_batch(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        """``predict`` for every query of ``batch`` at once."""
        b = batch.nearest(self.k)
        use = b.usable()
        ok = use.sum(axis=1) >= self.min_examples
        X = np.where(use[:, :, None], b.ex_inputs, 0.0)
        Y = np.where(use[:, :, None], b.ex_deltas, 0.0)
        delta, _ = _loo_ridge(X, Y, use, b.inputs, self.alphas)
        return batch.current + np.where(ok[:, None], delta, 0.0), ok
