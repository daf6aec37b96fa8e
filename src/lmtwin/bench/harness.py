"""The evaluation harness: every method steps through all trajectories of a split at
once (lockstep), predicting step t of every trajectory before any of them reveals row
t + 1, then learning from that row if it is an online method (river's predict-then-learn,
batched: one query matrix per step, not one call per patient and step).

A method sees the history of each trajectory up to now (``S`` of shape (n, t + 1, d),
``A`` (n, t + 1, a), the last action being the one taken now), so sequence models and
context parroting need no hidden state, and the same method serves teacher-forced
scoring and free-running rollouts.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from lmtwin.bench.tasks import Task, Trajectory

# two-sided 95% quantiles of Student's t by degrees of freedom
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262, 10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042}


def t975(df: int) -> float:
    keys = [k for k in _T975 if k <= df]
    return _T975[max(keys)] if keys else float("nan")


def mean_ci(values: Sequence[float]) -> dict[str, float]:
    """Mean and half-width of the 95% t confidence interval (nan for one value)."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(x) == 0:
        return {"mean": float("nan"), "ci95": float("nan"), "n": 0}
    half = t975(len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)) if len(x) > 1 else float("nan")
    return {"mean": float(x.mean()), "ci95": float(half), "n": len(x)}


@dataclass
class Arrays:
    """A split's trajectories stacked: states (n, T + 1, d), actions (n, T, a). Every
    task's trajectories within a split have the same length."""

    S: np.ndarray
    A: np.ndarray

    @classmethod
    def of(cls, trajs: Sequence[Trajectory]) -> Arrays:
        return cls(np.stack([t.states for t in trajs]).astype(float),
                   np.stack([t.actions for t in trajs]).astype(float))

    @property
    def steps(self) -> int:
        return self.S.shape[1] - 1

    def deltas(self) -> tuple[np.ndarray, np.ndarray]:
        """Every transition as inputs (states then actions) and state changes, rows
        ordered by trajectory then time."""
        n, T = self.S.shape[0], self.steps
        X = np.concatenate([self.S[:, :-1], self.A], axis=2).reshape(n * T, -1)
        Y = (self.S[:, 1:] - self.S[:, :-1]).reshape(n * T, -1)
        return X, Y

    def concat(self, other: Arrays) -> Arrays:
        """Both splits: more trajectories, or, for a single series split in time (other
        starting where this one ends), one longer trajectory."""
        if other.S.shape[1:] == self.S.shape[1:]:
            return Arrays(np.concatenate([self.S, other.S]), np.concatenate([self.A, other.A]))
        if len(self.S) == len(other.S) == 1:
            # the action at this split's last row: the next split's first (none here)
            bridge = other.A[:, :1] if other.A.shape[1] else np.zeros((1, 1, self.A.shape[2]))
            return Arrays(np.concatenate([self.S, other.S], axis=1),
                          np.concatenate([self.A, bridge, other.A], axis=1))
        raise ValueError("splits of different lengths and several trajectories")

    def states(self) -> np.ndarray:
        """Every row's states (rows, d)."""
        return self.S.reshape(-1, self.S.shape[2])


@dataclass
class Out:
    """One output's prediction of the next state of every trajectory: ``mean`` (n, d);
    ``lower``/``upper`` where it gives intervals; ``failed`` (n,) where it fell back to
    persistence."""

    mean: np.ndarray
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    failed: np.ndarray | None = None
    tokens: int = 0


class Method(Protocol):
    """What the harness drives. ``outputs`` names what ``predict`` returns; ``online``
    says whether ``learn`` changes anything."""

    outputs: list[str]
    online: bool

    def predict(self, S: np.ndarray, A: np.ndarray) -> dict[str, Out]: ...

    def learn(self, S: np.ndarray, A: np.ndarray) -> None: ...


class PersistenceMethod:
    """Next = current (the same frozen or online: it learns nothing)."""

    online = False

    def __init__(self, name: str = "persistence") -> None:
        self.outputs = [name]

    def learn(self, S: np.ndarray, A: np.ndarray) -> None:
        pass

    def predict(self, S: np.ndarray, A: np.ndarray) -> dict[str, Out]:
        return {self.outputs[0]: Out(S[:, -1].copy())}


@dataclass
class Record:
    """Everything measured for one output on one split: arrays (n, T + 1, d)."""

    truth: np.ndarray
    pred: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    rollout: np.ndarray | None = None
    seconds: float = 0.0
    predictions: int = 0
    tokens: int = 0
    failures: int = 0
    rollout_failures: int = 0  # rollout steps that kept the state (no usable forecast)
    info: dict[str, Any] = field(default_factory=dict)


def stream(method: Method, data: Arrays) -> dict[str, Record]:
    """Teacher-forced one-step predictions of every trajectory of ``data`` in lockstep;
    an online method learns each revealed row right after predicting it."""
    S, A = data.S, data.A
    n, T = S.shape[0], data.steps
    recs = {o: Record(S, np.full(S.shape, np.nan), np.full(S.shape, np.nan),
                      np.full(S.shape, np.nan)) for o in method.outputs}
    for r in recs.values():
        r.pred[:, 0] = S[:, 0]
    for t in range(T):
        start = time.perf_counter()
        outs = method.predict(S[:, : t + 1], A[:, : t + 1])
        took = time.perf_counter() - start
        for name, out in outs.items():
            r = recs[name]
            r.pred[:, t + 1] = out.mean
            if out.lower is not None and out.upper is not None:
                r.lower[:, t + 1], r.upper[:, t + 1] = out.lower, out.upper
            r.seconds += took
            r.predictions += n
            r.tokens += out.tokens
            if out.failed is not None:
                r.failures += int(out.failed.sum())
        # the next action comes with the next row (an input of the next prediction)
        method.learn(S[:, : t + 2], A[:, : t + 2])
    return recs


def rollout(method: Method, data: Arrays, output: str | None = None) -> tuple[np.ndarray, int]:
    """Free-running predictions from x[0] along each trajectory's actions (the method
    must not be online: nothing is revealed). A non-finite forecast keeps the state and
    is counted. Returns the paths (n, T + 1, d) and the count."""
    S, A = data.S, data.A
    name = output or method.outputs[0]
    R = np.empty_like(S)
    R[:, 0] = S[:, 0]
    bad = 0
    for t in range(data.steps):
        nxt = method.predict(R[:, : t + 1], A[:, : t + 1])[name].mean
        ok = np.isfinite(nxt).all(axis=1)
        bad += int((~ok).sum())
        # a free run may leave the physical range: keep it within it
        R[:, t + 1] = np.clip(np.where(ok[:, None], nxt, R[:, t]), 0.0, 1e12)
    return R, bad


def metrics(rec: Record, variance: np.ndarray, scale: float = 1.0) -> dict[str, Any]:
    """The protocol's metric and the extras users need, from one Record."""
    d = rec.truth.shape[2]
    truth, pred = rec.truth.reshape(-1, d), rec.pred.reshape(-1, d)
    var = np.where(variance > 0, variance, 1.0)
    err = (pred - truth) ** 2
    out: dict[str, Any] = {
        "mse": float(err.mean()) * scale,
        "nmse": float((err / var).mean()),
        "mse_per_variable": [float(x) * scale for x in err.mean(axis=0)],
        "seconds_per_prediction": rec.seconds / max(rec.predictions, 1),
        "tokens_per_prediction": rec.tokens / max(rec.predictions, 1),
        "predictions": rec.predictions,
        "failures": rec.failures,
        "rollout_failures": rec.rollout_failures,
    }
    lower, upper = rec.lower.reshape(-1, d), rec.upper.reshape(-1, d)
    have = ~np.isnan(lower)
    if have.any():
        inside = (truth[have] >= lower[have]) & (truth[have] <= upper[have])
        width = ((upper - lower) / np.sqrt(var))[have]
        out["coverage"] = float(inside.mean())
        out["width_over_sd"] = float(width.mean())
        out["n_intervals"] = int(have.sum())
    if rec.rollout is not None:
        r_err = (rec.rollout.reshape(-1, d) - truth) ** 2
        out["rollout_mse"] = float(r_err.mean()) * scale
        out["rollout_nmse"] = float((r_err / var).mean())
    out.update(rec.info)
    return out


def sampled_mse(rec: Record, idx: tuple[np.ndarray, np.ndarray], scale: float = 1.0) -> float:
    """MSE over the sampled steps ``idx`` = (trajectory, time + 1) only."""
    i, t = idx
    return float(((rec.pred[i, t] - rec.truth[i, t]) ** 2).mean()) * scale


def task_arrays(task: Task, test: Sequence[Trajectory]) -> tuple[Arrays, Arrays, Arrays]:
    """Train, validation and (the chosen part of the) test split as arrays."""
    return Arrays.of(task.train), Arrays.of(task.val), Arrays.of(test)


# --- lmtwin, batched -------------------------------------------------------------------
def numeric_pool() -> list[Any]:
    """The library's default pool without the language model (``default_predictors``):
    persistence, the local ridge and the ridge with its penalty chosen by leave-one-out
    error; the bench adds the language model on its sampled steps only."""
    from lmtwin.llm.scripted import ScriptedBackend
    from lmtwin.twin import default_predictors

    return [p for p in default_predictors(ScriptedBackend([])) if not getattr(p, "costly", False)]


class Columns(Protocol):
    """Names of a task's state and action columns (a ``Task`` or a scenario phase)."""

    states: list[str]
    actions: list[str]


class TwinMethod:
    """A running twin answered a whole step at a time: one retrieval for every query of
    the step (``Retriever.search_batch``), each numeric predictor's ``predict_batch``,
    the twin's Hedge weights and its conformal calibrator, as ``Twin.predict`` would do
    one query at a time. ``online``: after each step it learns exactly as the twin's
    prequential scorer does (Hedge and calibrator updated from the forecasts made before
    the row was revealed, then the rows observed into its store and retriever); frozen,
    it never changes.

    Outputs: ``lmtwin[<label>]`` (the combination) and ``lmtwin-<predictor>[<label>]``.
    """

    def __init__(self, twin: Any, task: Columns, label: str, online: bool,
                 prefix: str = "test", level: float = 0.9, name: str = "lmtwin") -> None:
        self.twin, self.task, self.online = twin, task, online
        self.level, self.prefix = level, prefix
        self.names = [p.name for p in twin.predictors]
        self.outputs = [f"{name}[{label}]"] + [
            f"{name}-{n}[{label}]" for n in self.names if n != "persistence"]
        self._label, self._name = label, name
        self._last: dict[str, Any] = {}

    def _examples(self, X: np.ndarray, U: np.ndarray, k: int) -> Any:
        """The k nearest stored transitions of every query, as a ``Batch``: the library's
        batched path (``predictors.batch.retrieve_batch``, one search for the step)."""
        from lmtwin.predictors.batch import retrieve_batch

        task, twin = self.task, self.twin
        names = sorted(task.states) + sorted(f"a:{a}" for a in task.actions)
        cols = {f"s:{s}": X[:, j] for j, s in enumerate(task.states)}
        cols.update({f"a:{a}": U[:, j] for j, a in enumerate(task.actions)})
        return retrieve_batch(twin.retriever, twin.schema, cols, names, list(task.states),
                              X.copy(), k)

    def forecasts(self, X: np.ndarray, U: np.ndarray) -> dict[str, tuple[np.ndarray,
                                                                          np.ndarray]]:
        """Each predictor's point forecasts (n, d) and which queries it answered (n,)."""
        from lmtwin.predictors.base import wanted

        batch = self._examples(X, U, max(1, *(wanted(p) for p in self.twin.predictors)))
        out = {}
        for p in self.twin.predictors:
            mean, ok = p.predict_batch(batch)
            out[p.name] = (np.asarray(mean, dtype=float), np.asarray(ok, dtype=bool)
                           & np.isfinite(mean).all(axis=1))
        return out

    def predict(self, S: np.ndarray, A: np.ndarray) -> dict[str, Out]:
        X, U = S[:, -1], A[:, -1]
        fc = self.forecasts(X, U)
        n = len(X)
        names = list(fc)
        ok = np.stack([fc[m][1] for m in names], axis=1)
        W = np.zeros((n, len(names)))
        for pattern in np.unique(ok, axis=0):
            rows = (ok == pattern).all(axis=1)
            w = self.twin.hedge.weights([m for m, o in zip(names, pattern, strict=True) if o])
            W[rows] = [w.get(m, 0.0) for m in names]
        M = np.stack([np.where(fc[m][1][:, None], fc[m][0], 0.0) for m in names], axis=1)
        mean = np.einsum("np,npd->nd", W, M)
        from lmtwin.predictors.combine import fewest_residuals, sigmas

        # the difficulty of every row at once, by the function combine uses
        sigma = sigmas(mean, X, M, ok, W, self.twin.hedge, self.twin.calibrator,
                       self.task.states)
        # calibrated as Twin.predict does: on the residuals of predictions led by the
        # same predictor (Mondrian), with combine's rule for a leader with few of them

        lead = np.array(names, dtype=object)[W.argmax(axis=1)]
        lo, hi = np.full(mean.shape, np.nan), np.full(mean.shape, np.nan)
        for g in np.unique(lead):
            rows = lead == g
            for j, t in enumerate(self.task.states):
                iv = self.twin.calibrator.interval(t, 0.0, 1.0, self.level, str(g),
                                                   min_group=fewest_residuals(self.level))
                if iv is not None:
                    lo[rows, j], hi[rows, j] = iv
        lower = upper = None
        if np.isfinite(lo).all():
            lower, upper = mean + lo * sigma, mean + hi * sigma
        self._last = {"fc": fc, "mean": mean, "sigma": sigma, "lead": lead}
        outs = {f"{self._name}[{self._label}]": Out(mean, lower, upper)}
        for m in names:
            if m != "persistence":
                good = fc[m][1]
                outs[f"{self._name}-{m}[{self._label}]"] = Out(
                    np.where(good[:, None], fc[m][0], X), failed=~good)
        return outs

    def learn(self, S: np.ndarray, A: np.ndarray) -> None:
        """Score the step's forecasts against the revealed rows (Hedge, calibrator), then
        observe the rows (``A`` may hold the next action, taken with the new state)."""
        if not self.online:
            return
        from lmtwin.types import Observation

        t = S.shape[1] - 2
        prev, actual = S[:, -2], S[:, -1]
        fc, mean, sigma = self._last["fc"], self._last["mean"], self._last["sigma"]
        lead = self._last["lead"]
        states = self.task.states
        hedge, cal = self.twin.hedge, self.twin.calibrator
        # the step's rows in order, as Hedge.update one at a time would score them
        hedge.update_many(actual, prev, {m: f for m, (f, _) in fc.items()},
                          {m: o for m, (_, o) in fc.items()}, list(states))
        for i in range(len(actual)):
            for j, s in enumerate(states):
                cal.add(s, float(actual[i, j]), float(mean[i, j]), float(sigma[i, j]),
                        str(lead[i]))
        obs = []
        for i in range(len(actual)):
            ep = f"{self.prefix}{i}"
            if t == 0:
                obs.append(Observation(ep, 0.0, self._row(S[i, 0], A[i, 0])))
            obs.append(Observation(ep, float(t + 1), self._row(
                S[i, t + 1], A[i, t + 1] if A.shape[1] > t + 1 else None)))
        keep = self.twin.score_window
        self.twin.score_window = 0  # scored above, in batch
        try:
            self.twin.observe_many(obs)
        finally:
            self.twin.score_window = keep

    def _row(self, s: np.ndarray, a: np.ndarray | None) -> dict[str, float]:
        row = dict(zip(self.task.states, map(float, s), strict=True))
        if a is not None:
            row.update(zip(self.task.actions, map(float, a), strict=True))
        return row
