"""The evaluation harness: methods answer one step at a time and observe afterwards, so
nothing sees the answer before it predicts (river's predict-then-learn).

A ``Method`` may give several named outputs per step: a twin yields its combination and
each of its in-context predictors from one call, so the language-model-only and
numeric-only variants cost nothing extra.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from lmtwin.bench.tasks import Task, Trajectory
from lmtwin.errors import BackendError, NotReady
from lmtwin.predictors.base import Predictor, Query
from lmtwin.schema import Schema
from lmtwin.twin import Twin

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
class Step:
    """One output's prediction of the next state (targets in task order)."""

    mean: np.ndarray
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    tokens: int = 0
    failed: bool = False  # the output fell back to persistence


class Method(Protocol):
    """What the harness drives. ``outputs`` names what ``predict`` returns."""

    outputs: list[str]

    def begin(self, episode: str) -> None: ...

    def predict(self, state: dict[str, float], action: dict[str, float]) -> dict[str, Step]: ...

    def observe(self, row: dict[str, float]) -> None: ...


class PredictorMethod:
    """Any lmtwin ``Predictor`` (a baseline) as a method; it answers from no examples."""

    def __init__(self, predictor: Predictor, task: Task) -> None:
        self.predictor = predictor
        self.task = task
        self.outputs = [predictor.name]
        self.schema = Schema(task.variables)

    def begin(self, episode: str) -> None:
        reset = getattr(self.predictor, "reset", None)
        if reset is not None:
            reset()

    def predict(self, state: dict[str, float], action: dict[str, float]) -> dict[str, Step]:
        query = Query(state, action, list(self.task.states), self.schema)
        try:
            out = self.predictor.predict(query, [])
        except (NotReady, BackendError):
            base = np.array([state[s] for s in self.task.states])
            return {self.predictor.name: Step(base, failed=True)}
        return {self.predictor.name: Step(out.mean, tokens=int(out.info.get("tokens", 0)))}

    def observe(self, row: dict[str, float]) -> None:
        pass


class TwinMethod:
    """A running twin: its combination ("lmtwin") and each predictor inside it
    ("lmtwin-<name>"), with a label for the retrieval (raw or tuned)."""

    def __init__(self, twin: Twin, task: Task, label: str = "raw") -> None:
        self.twin = twin
        self.task = task
        self.label = label
        names = [p.name for p in twin.predictors if p.name != "persistence"]
        self.outputs = [f"lmtwin[{label}]"] + [f"lmtwin-{n}[{label}]" for n in names]
        self._names = names
        self.episode = ""

    def begin(self, episode: str) -> None:
        self.episode = episode

    def predict(self, state: dict[str, float], action: dict[str, float]) -> dict[str, Step]:
        pred = self.twin.predict({**state, **action}, episode=self.episode)
        targets = self.task.states
        base = np.array([state[s] for s in targets])
        # an interval counts once calibrated and finite (too few residuals give +-inf)
        calibrated = all(t in pred.lower and np.isfinite([pred.lower[t], pred.upper[t]]).all()
                         for t in targets)
        llm_info = pred.provenance.get("info", {}).get("llm", {})
        tokens = int(llm_info.get("tokens", 0))
        out = {f"lmtwin[{self.label}]": Step(
            np.array([pred.mean[t] for t in targets]),
            np.array([pred.lower[t] for t in targets]) if calibrated else None,
            np.array([pred.upper[t] for t in targets]) if calibrated else None, tokens)}
        for n in self._names:
            by = pred.by_predictor.get(n)
            out[f"lmtwin-{n}[{self.label}]"] = (
                Step(np.array([by[t] for t in targets]), tokens=tokens if n == "llm" else 0)
                if by is not None else Step(base, failed=True))
        return out

    def observe(self, row: dict[str, float]) -> None:
        self.twin.observe(row, episode=self.episode)

    def rollout_predictor(self, name: str) -> Predictor | None:
        return next((p for p in self.twin.predictors if p.name == name), None)


@dataclass
class Record:
    """Everything measured for one output on one split."""

    truth: list[np.ndarray] = field(default_factory=list)  # per trajectory, (T + 1, d)
    pred: list[np.ndarray] = field(default_factory=list)  # teacher-forced, pred[0] = x[0]
    lower: list[np.ndarray] = field(default_factory=list)  # nan where no interval
    upper: list[np.ndarray] = field(default_factory=list)
    rollout: list[np.ndarray] = field(default_factory=list)
    seconds: float = 0.0
    predictions: int = 0
    tokens: int = 0
    failures: int = 0
    rollout_failures: int = 0  # rollout steps that kept the state (no usable forecast)


def stream(method: Method, task: Task, trajs: Sequence[Trajectory], prefix: str,
           records: dict[str, Record] | None = None, on_step: Any = None) -> dict[str, Record]:
    """Teacher-forced one-step predictions over ``trajs``, observing each true row right
    after predicting it. Returns one Record per output."""
    records = records if records is not None else {n: Record() for n in method.outputs}
    for i, traj in enumerate(trajs):
        method.begin(f"{prefix}{i}")
        rows = task.rows(traj)
        d = len(task.states)
        preds = {n: np.full((len(rows), d), np.nan) for n in method.outputs}
        lows = {n: np.full((len(rows), d), np.nan) for n in method.outputs}
        ups = {n: np.full((len(rows), d), np.nan) for n in method.outputs}
        for n in method.outputs:
            preds[n][0] = traj.states[0]
        method.observe(rows[0])
        for t in range(traj.steps):
            state = {s: rows[t][s] for s in task.states}
            action = {a: rows[t][a] for a in task.actions}
            start = time.perf_counter()
            steps = method.predict(state, action)
            took = time.perf_counter() - start
            for n, step in steps.items():
                rec = records[n]
                preds[n][t + 1] = step.mean
                if step.lower is not None and step.upper is not None:
                    lows[n][t + 1], ups[n][t + 1] = step.lower, step.upper
                rec.seconds += took
                rec.predictions += 1
                rec.tokens += step.tokens
                rec.failures += int(step.failed)
            method.observe(rows[t + 1])
            if on_step is not None:
                on_step()
        for n in method.outputs:
            records[n].truth.append(traj.states)
            records[n].pred.append(preds[n])
            records[n].lower.append(lows[n])
            records[n].upper.append(ups[n])
    return records


def rollout(predictor: Predictor, task: Task, traj: Trajectory,
            examples: Any = None, record: Record | None = None) -> np.ndarray:
    """Free-running prediction from x[0] along the trajectory's actions. ``examples``
    (a function of the query) supplies retrieved examples to in-context predictors. A step
    with no usable forecast (the predictor not ready, its backend failing, or a
    non-finite value) keeps the state and is counted in ``record.rollout_failures``."""
    reset = getattr(predictor, "reset", None)
    if reset is not None:
        reset()
    schema = Schema(task.variables)
    out = np.empty_like(traj.states)
    out[0] = traj.states[0]
    for t in range(traj.steps):
        state = dict(zip(task.states, map(float, out[t]), strict=True))
        action = dict(zip(task.actions, map(float, traj.actions[t]), strict=True))
        query = Query(state, action, list(task.states), schema)
        ex = examples(query) if examples is not None else []
        try:
            nxt = predictor.predict(query, ex).mean
        except (NotReady, BackendError):
            nxt = None
        if nxt is None or not np.all(np.isfinite(nxt)):
            nxt = out[t]
            if record is not None:
                record.rollout_failures += 1
        # a free run may leave the physical range: keep it within it
        out[t + 1] = np.clip(nxt, 0.0, 1e12)
    return out


def metrics(rec: Record, variance: np.ndarray, scale: float = 1.0) -> dict[str, Any]:
    """The protocol's metric and the extras users need, from one Record."""
    truth, pred = np.concatenate(rec.truth), np.concatenate(rec.pred)
    err = (pred - truth) ** 2
    out: dict[str, Any] = {
        "mse": float(err.mean()) * scale,
        "nmse": float((err / np.where(variance > 0, variance, 1.0)).mean()),
        "mse_per_variable": [float(x) * scale for x in err.mean(axis=0)],
        "seconds_per_prediction": rec.seconds / max(rec.predictions, 1),
        "tokens_per_prediction": rec.tokens / max(rec.predictions, 1),
        "predictions": rec.predictions,
        "failures": rec.failures,
        "rollout_failures": rec.rollout_failures,
    }
    lower, upper = np.concatenate(rec.lower), np.concatenate(rec.upper)
    have = ~np.isnan(lower)
    if have.any():
        inside = (truth[have] >= lower[have]) & (truth[have] <= upper[have])
        sd = np.sqrt(np.where(variance > 0, variance, 1.0))
        width = ((upper - lower) / sd)[have]
        out["coverage"] = float(inside.mean())
        out["width_over_sd"] = float(width.mean())
        out["n_intervals"] = int(have.sum())
    if rec.rollout and len(rec.rollout) == len(rec.truth):
        r_err = (np.concatenate(rec.rollout) - truth) ** 2
        out["rollout_mse"] = float(r_err.mean()) * scale
        out["rollout_nmse"] = float((r_err / np.where(variance > 0, variance, 1.0)).mean())
    return out
