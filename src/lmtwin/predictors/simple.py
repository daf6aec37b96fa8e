"""Persistence and a numeric in-context learner fitted only on the retrieved examples."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

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
    # more(rows, k): the same queries ``rows`` with their k nearest examples, retrieved
    # again (None: what is here is all there is)
    more: Callable[[np.ndarray, int], Batch] | None = field(default=None, compare=False)

    def nearest(self, k: int) -> Batch:
        """The same queries with only their ``k`` nearest examples."""
        return Batch(self.names, self.targets, self.inputs, self.current,
                     self.ex_inputs[:, :k], self.ex_deltas[:, :k], self.complete, self.more)

    def rows(self, idx: np.ndarray) -> Batch:
        """Only the queries ``idx``."""
        more = self.more
        return Batch(self.names, self.targets, self.inputs[idx], self.current[idx],
                     self.ex_inputs[idx], self.ex_deltas[idx], self.complete,
                     None if more is None else lambda r, k: more(idx[r], k))

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

    Per query and target it fits both the change (``x' - x``) and, for a target positive
    in the query and every example, the relative change (``(x' - x) / x``), and keeps
    the one with the smaller weighted leave-one-out error in the target's units. Growth,
    decay, infection and kill rates make many systems' changes proportional to the
    state: a tumour's, a population's or an epidemic's relative change is linear in the
    inputs where its change is not (on the cancer task's validation streams, 25x
    smaller error; see CHANGELOG).

    A query off the value all its k nearest examples share along an input has no slope
    to go by there (a drug level of 5.31 where all 16 nearest examples had 5.0 gave
    errors of 9 on a tumour's step): it is refitted on its 2k, 4k, ... nearest (up to
    ``reach``, 128, and what was retrieved), then, where its examples can fetch more
    (the twin's retrieval), on up to ``far``, 1024, where the input is a state (a
    residual drug level); if those share the value too,
    the widest fit answers, with no slope along that input. (Declining there instead
    left a twin of persistence and this learner with persistence on every dose plan
    off the doses in its data, and its model-predictive control lost to the protocol.)
    A slope the examples do identify is extrapolated: a linear system's is right far
    outside them.

    Args:
        k: retrieved examples to fit on.
        alpha: ridge penalty on standardised inputs.
        min_examples: below this many usable examples, raise NotReady.
    """

    name = "numeric"
    # examples it fetches where even its ``reach`` nearest share a value the query is off:
    # an online twin's new rows pushed the few tumours with a residual drug level past
    # the 128 nearest of such a query
    far = 1024

    def __init__(self, k: int = 64, alpha: float = 1e-3, min_examples: int = 3) -> None:
        self.k = k
        self.alpha = alpha
        self.min_examples = min_examples

    @property
    def reach(self) -> int:
        """Examples it may look at: 128 (never below k). Every query retrieves them, and
        256 for the default k = 64 halved the rollouts' speed. It was 4k: with k = 16 a
        tumour carrying a residual drug level of 0.21, whose 64 nearest examples all
        had none, was predicted without the drug's effect (an error of 4 where the
        tumour's step is 26); its 93rd nearest has some, and at 128 the error is 0.003.
        Those few steps were 96-99% of the numeric learner's error on cancer and
        cancer-chemo (validation seeds 0-1)."""
        return max(self.k, 128)

    def predict(self, query: Query, examples: Sequence[Transition]) -> Forecast:
        names = features(query)
        q = design(names, query.state, query.action)
        if q is None:
            raise NotReady("numeric predictor needs every input of the query")
        targets = list(query.targets)
        if any(t not in query.state for t in targets):
            raise NotReady("numeric predictor needs the current value of every target")
        if not examples:
            raise NotReady(f"numeric predictor has no examples, needs {self.min_examples}")
        batch = self._batch(query, names, targets, examples)
        usable = int(batch.nearest(self.k).usable().sum())
        if usable < self.min_examples:
            raise NotReady(
                f"numeric predictor has {usable} usable examples, needs {self.min_examples}")
        mean, ok = self._widening(batch)
        if not ok[0]:
            raise NotReady("a non-finite forecast")
        return Forecast(mean, {"n_examples": usable})

    def _batch(self, query: Query, names: list[str], targets: list[str],
               examples: Sequence[Transition]) -> Batch:
        """The one query and its ``examples`` (nearest last) as a Batch, able to fetch
        more where ``examples`` can (``Examples.wider``)."""
        rows, deltas = [], []
        for ex in reversed(examples):  # given nearest last; a Batch holds nearest first
            row = design(names, ex.state, ex.action)
            d = [ex.delta(t) for t in targets]
            rows.append([math.nan] * len(names) if row is None else row)
            deltas.append([math.nan if v is None else v for v in d])
        n_ex = len(rows)
        q = design(names, query.state, query.action)
        wider = getattr(examples, "wider", None)
        return Batch(names, targets, np.asarray([q], dtype=float),
                     np.asarray([[query.state[t] for t in targets]], dtype=float),
                     np.asarray(rows, dtype=float).reshape(1, n_ex, len(names)),
                     np.asarray(deltas, dtype=float).reshape(1, n_ex, len(targets)),
                     more=None if wider is None else (
                         lambda _, k: self._batch(query, names, targets, wider(k))))

    def predict_batch(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        """``predict`` for every query of ``batch`` at once (the same fit on the same
        examples, solved as one stack of small systems). Returns point forecasts (n, T)
        and which queries were answered (n,)."""
        return self._widening(batch.nearest(self.reach))

    def _widening(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        """``_fit`` on the k nearest; queries off an input's shared value refitted on
        twice as many, up to all of ``batch``'s examples, then up to ``far`` fetched
        (``Batch.more``)."""
        mean, ok, _ = self._widen(batch, self.k)
        return mean, ok

    def _widen(self, batch: Batch, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        mean, ok, off = self._fit(batch.nearest(k))
        most = batch.ex_inputs.shape[1]
        state = np.array([not n.startswith("a:") for n in batch.names], dtype=bool)
        while off.any():
            redo = np.flatnonzero(off.any(axis=1))
            if k >= most:  # all of them fitted: fetch more, once, if it can, where a
                # state is off (an action off the values a policy used, a plan's dose
                # between the protocol's, has nothing farther to find: fetching for
                # every path-step made the closed loop 3x slower for the same result)
                fetch = np.flatnonzero((off & state).any(axis=1))
                if len(fetch) and batch.more is not None and most < self.far:
                    mean[fetch], ok[fetch], off[fetch] = self._widen(
                        dataclasses.replace(batch.more(fetch, self.far), more=None),
                        min(2 * k, self.far))
                break
            k = min(2 * k, most)
            mean[redo], ok[redo], off[redo] = self._fit(batch.rows(redo).nearest(k))
        return mean, ok, off

    def _fit(self, b: Batch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Forecasts (n, T), which queries were answered (n,), and where a query is off
        the value all its examples share along an input (n, F)."""
        n = len(b.current)
        use = b.usable()
        count = use.sum(axis=1)
        enough = count >= self.min_examples
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
        dq = b.inputs - mu
        # off the value every example shares along an input: no slope to go by there
        tiny = 1e-9 * (np.abs(mu) + np.abs(b.inputs)) + 1e-300
        off = (sd <= tiny) & (np.abs(dq) > tiny)  # (n, F)
        sd[sd == 0] = 1.0
        inv = 1.0 / sd
        iv = inv * inv
        # squared standardised distances |(d - dq) / sd|^2, expanded so that no pass
        # beyond D * D is needed (d and dq are centred: no cancellation to speak of)
        d2 = (iv[:, None, :] @ DD)[:, 0] - 2.0 * ((dq * iv)[:, None, :] @ D)[:, 0]
        d2 += (dq * dq * iv).sum(axis=1)[:, None]
        dist = np.sqrt(np.maximum(d2, 0.0))
        h = _masked_median(dist, use, count)[:, None] + 1e-9
        w = np.exp(-0.5 * (dist / h) ** 2) + 1e-6
        if not every:
            w *= m[:, :, 0]
        # the relative change where the target is positive in the query and every example
        idx = [b.names.index(t) if t in b.names else -1 for t in b.targets]
        T = len(idx)
        cur = np.stack([X[:, j] if j >= 0 else np.zeros_like(X[:, 0]) for j in idx], axis=1)
        positive = (cur > 0) if every else ((cur > 0) | ~use[:, None, :])
        positive = positive.all(axis=2) & (b.current > 0)
        # (masked examples hold zeros: divided only when every example is usable)
        R = Y / cur if every and positive.all() else np.where(
            cur > 0, Y / np.where(cur > 0, cur, 1.0), 0.0)
        YY = np.concatenate([Y, R], axis=1)  # (n, 2T, k)
        # the weighted normal equations of a = [1, z], z = d / sd: built from D, then scaled
        f = X.shape[1]
        Dw = D * w[:, None, :]
        wv = w[:, :, None]
        lhs = np.empty((n, f + 1, f + 1))
        lhs[:, 0, 0] = w.sum(axis=1)
        lhs[:, 0, 1:] = lhs[:, 1:, 0] = (D @ wv)[:, :, 0] * inv
        lhs[:, 1:, 1:] = ((Dw @ D.transpose(0, 2, 1)) * (inv[:, :, None] * inv[:, None, :])
                          + self.alpha * np.eye(f))
        rhs = np.empty((n, f + 1, 2 * T))
        rhs[:, 0] = (YY @ wv)[:, :, 0]
        rhs[:, 1:] = (Dw @ YY.transpose(0, 2, 1)) * inv[:, :, None]
        lhs[~enough] = np.eye(f + 1)  # unanswered queries: any solvable system
        P = np.linalg.inv(lhs)
        coef = P @ rhs  # (n, f + 1, 2T)
        pred = coef[:, 0] + ((dq * inv)[:, None, :] @ coef[:, 1:])[:, 0]  # (n, 2T)
        # weighted leave-one-out residuals e_i / (1 - w_i a_i' P a_i), a_i = [1, d_i / sd],
        # with the scaling folded into P (no (n, F + 1, k) array of the a_i)
        Q = P[:, 1:, 1:] * (inv[:, :, None] * inv[:, None, :])
        q0 = P[:, 0, 1:] * inv
        quad = (D * (Q @ D)).transpose(0, 2, 1) @ np.ones(f)
        lev = w * (P[:, 0, :1] + 2.0 * (q0[:, None, :] @ D)[:, 0] + quad)
        fitted = coef[:, :1].transpose(0, 2, 1) + (coef[:, 1:] * inv[:, :, None]).transpose(
            0, 2, 1) @ D
        resid = (YY - fitted) / np.maximum(1.0 - lev, 1e-6)[:, None]
        loo = (resid[:, :T] ** 2) @ wv  # (n, T, 1)
        loo_rel = ((resid[:, T:] * cur) ** 2) @ wv
        relative = positive & (loo_rel[:, :, 0] < loo[:, :, 0])
        delta = np.where(relative, pred[:, T:] * b.current, pred[:, :T])
        ok = enough & np.isfinite(delta).all(axis=1)
        return b.current + np.where(ok[:, None], delta, 0.0), ok, off


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
