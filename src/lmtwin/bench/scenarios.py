"""The four continual-update scenarios: a running twin meets a change mid-stream.

1. ``new-state``: cancer-untreated -> cancer-chemo (``c`` and the dose ``ca`` appear).
2. ``new-action``: cancer-chemo -> cancer (radiotherapy ``ra`` starts).
3. ``drift``: cancer-chemo whose growth rate ``rho`` doubles.
4. ``knowledge``: cancer whose radiotherapy becomes twice as effective, announced by a
   knowledge note.

The twin warms up on patients of the old system, then predicts each next day before it
observes it, across the change; nothing in it is retrained. Fitted baselines are either
kept as they were or refitted every few observations on everything seen (cost
reported). The error is the squared relative error of the tumour volume ``v`` (patients
differ in size by orders of magnitude, so absolute errors are not comparable).
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lmtwin.bench import baselines as bl
from lmtwin.errors import BackendError, LmtwinError, NotReady
from lmtwin.llm.base import LLMBackend
from lmtwin.predictors import LLMPredictor, LocalRidge, Persistence, Predictor, Query
from lmtwin.retrieval import Retriever
from lmtwin.schema import Schema
from lmtwin.systems.cancer import CANCER_VARIABLES, RHO, Variant, simulate_patients
from lmtwin.twin import Twin
from lmtwin.types import Transition

RADIO_NOTE = ("Radiotherapy is now twice as effective: each Gy of ra kills twice the "
              "tumour volume v it did before.")
VARS = {v.name: v for v in CANCER_VARIABLES}


@dataclass
class Scenario:
    name: str
    title: str
    pre: Variant
    post: Variant
    post_drift: dict[str, Any] = field(default_factory=dict)
    new_variables: tuple[str, ...] = ()
    note: str | None = None


SCENARIOS = {
    "new-state": Scenario("new-state", "new state variable (c observed, chemo starts)",
                          "cancer-untreated", "cancer-chemo", new_variables=("c", "ca")),
    "new-action": Scenario("new-action", "new action variable (radiotherapy starts)",
                           "cancer-chemo", "cancer", new_variables=("ra",)),
    "drift": Scenario("drift", "drifting dynamics (rho doubles)", "cancer-chemo",
                      "cancer-chemo", post_drift={"rho": 2 * RHO}),
    "knowledge": Scenario("knowledge", "knowledge as text (radio twice as effective)",
                          "cancer", "cancer", post_drift={"radio_effect": 2.0},
                          note=RADIO_NOTE),
}

ROLES = {"v": "state", "c": "state", "ca": "action", "ra": "action"}


@dataclass
class ScenarioSizes:
    warm_patients: int = 40
    pre_steps: int = 20
    post_steps: int = 30
    refit_every: int = 5
    dynode_steps: int = 1500

    @classmethod
    def quick(cls) -> ScenarioSizes:
        return cls(warm_patients=12, pre_steps=4, post_steps=16, refit_every=4,
                   dynode_steps=150)


def _transitions(rows: list[dict[str, float]], episode: str,
                 actions: tuple[str, ...] = ()) -> list[Transition]:
    """Transitions of consecutive rows; actions in ``actions`` that a row lacks were not
    given then (0), which is how a refitted baseline sees the old data."""
    out = []
    for t in range(len(rows) - 1):
        a = {k: v for k, v in rows[t].items() if ROLES[k] == "action"}
        for k in actions:
            a.setdefault(k, 0.0)
        out.append(Transition(
            episode, float(t), {k: v for k, v in rows[t].items() if ROLES[k] == "state"}, a,
            {k: v for k, v in rows[t + 1].items() if ROLES[k] == "state"}))
    return out


def _rel(pred: float, actual: float) -> float:
    return ((pred - actual) / max(abs(actual), 1.0)) ** 2


def recovery(curve: list[float], pre_level: float, n_pre: int, window: int = 5,
             factor: float = 1.5) -> int | None:
    """Observations after the change until the rolling mean error (over ``window``) is
    back within ``factor`` of the pre-change level; None if it never is."""
    post = curve[n_pre:]
    for s in range(1, len(post) + 1):
        if np.mean(post[max(0, s - window) : s]) <= factor * pre_level:
            return s
    return None


def run_scenario(name: str, backend: LLMBackend | None, sizes: ScenarioSizes, seed: int = 10,
                 k: int = 10, baselines: tuple[str, ...] = ("ridge", "knn", "sindy", "dynode"),
                 tick: Callable[[], None] = lambda: None) -> dict[str, Any]:
    sc = SCENARIOS[name]
    warm = simulate_patients(sizes.warm_patients, seed=seed * 100 + 1, variant=sc.pre)
    pre = simulate_patients(1, seed=seed * 100 + 2, variant=sc.pre)[0].rows(sc.pre)
    post = simulate_patients(1, seed=seed * 100 + 3, variant=sc.post,
                             **sc.post_drift)[0].rows(sc.post)
    pre, post = pre[: sizes.pre_steps + 1], post[: sizes.post_steps + 1]
    start_vars = sorted({k for r in pre for k in r})
    predictors: list[Predictor] = [Persistence(), LocalRidge()]
    if backend is not None:
        llm = LLMPredictor(backend)
        llm.k = k
        predictors.append(llm)
    twin = Twin(f"scenario-{name}", variables=[VARS[n] for n in start_vars],
                predictors=predictors, retriever=Retriever(k=k), seed=seed)
    seen: list[Transition] = []
    for i, p in enumerate(warm):
        rows = p.rows(sc.pre)
        for t, row in enumerate(rows):
            twin.observe(row, episode=f"warm{i}", t=float(t))
        seen += _transitions(rows, f"warm{i}")
    errors: dict[str, str] = {}
    kept: dict[str, Any] = {}
    for b in baselines:
        try:
            model = _baseline(b, seed, sizes)
            model.fit(seen)
            kept[b] = model
        except LmtwinError as exc:
            errors[b] = f"{type(exc).__name__}: {exc}"
    refit = {b: copy.deepcopy(m) for b, m in kept.items()}
    refit_seconds = dict.fromkeys(refit, 0.0)
    curves: dict[str, list[float]] = {}

    def add(method: str, value: float) -> None:
        curves.setdefault(method, []).append(value)

    schema = Schema([VARS[n] for n in sorted({k for r in pre + post for k in r})])
    weights_after: dict[str, float] = {}
    for phase, rows in (("pre", pre), ("post", post)):
        episode = f"stream-{phase}"
        if phase == "post":
            for n in sc.new_variables:
                twin.add_variable(VARS[n])
            if sc.note:
                twin.add_knowledge(sc.note)
        twin.observe(rows[0], episode=episode)
        for t in range(len(rows) - 1):
            row, actual = rows[t], rows[t + 1]["v"]
            pred = twin.predict(row, episode=episode)
            add("lmtwin", _rel(pred.mean["v"], actual))
            for pname in ("numeric", "llm"):
                if backend is not None or pname != "llm":
                    by = pred.by_predictor.get(pname, {}).get("v", row["v"])
                    add(f"lmtwin-{pname}", _rel(by, actual))
            add("persistence", _rel(row["v"], actual))
            state = {k: v for k, v in row.items() if ROLES[k] == "state"}
            action = {k: v for k, v in row.items() if ROLES[k] == "action"}
            q = Query(state, action, sorted(state), schema)
            for b in kept:
                for label, model in ((f"{b} (kept)", kept[b]), (f"{b} (refitted)", refit[b])):
                    try:
                        v = float(model.predict(q, []).mean[q.targets.index("v")])
                    except (NotReady, BackendError):
                        v = row["v"]
                    add(label, _rel(v, actual))
            twin.observe(rows[t + 1], episode=episode)
            seen += _transitions(rows[t : t + 2], episode)
            tick()
            if phase == "post" and (t + 1) % sizes.refit_every == 0:
                new_actions = tuple(n for n in sc.new_variables if ROLES[n] == "action")
                data = [_fill(tr, new_actions) for tr in seen]
                for b in refit:
                    start = time.perf_counter()
                    # too few complete rows for the new schema yet: keep the old fit
                    with contextlib.suppress(NotReady):
                        refit[b] = _baseline(b, seed, sizes).fit(data)
                    refit_seconds[b] += time.perf_counter() - start
        if phase == "post":
            weights_after = twin.hedge.weights([p.name for p in twin.predictors])
    twin.store.close()  # not twin.close(): that closes the shared language model too
    n_pre = len(pre) - 1
    summary: dict[str, Any] = {}
    for m, curve in curves.items():
        level = float(np.mean(curve[:n_pre]))
        rec = recovery(curve, level, n_pre)
        summary[m] = {
            "pre_level": level,
            "post_first5": float(np.mean(curve[n_pre : n_pre + 5])),
            "post_last10": float(np.mean(curve[-10:])),
            "recovery_observations": rec,
            "recovered_within_20": rec is not None and rec <= 20,
        }
        base = m.split(" ")[0]
        if m.endswith("(refitted)"):
            summary[m]["refit_seconds"] = refit_seconds[base]
    return {"scenario": name, "title": sc.title, "curves": curves, "n_pre": n_pre,
            "summary": summary, "errors": errors, "weights_after": weights_after,
            "sizes": sizes.__dict__}


def _fill(tr: Transition, actions: tuple[str, ...]) -> Transition:
    if not actions:
        return tr
    a = dict(tr.action)
    for k in actions:
        a.setdefault(k, 0.0)
    return Transition(tr.episode, tr.t, tr.state, a, tr.next_state)


def _baseline(name: str, seed: int, sizes: ScenarioSizes) -> bl.Fitted:
    if name == "ridge":
        return bl.Ridge()
    if name == "knn":
        return bl.KNN()
    if name == "sindy":
        return bl.SINDy()
    if name == "dynode":
        return bl.DyNODE(steps=sizes.dynode_steps, seed=seed)
    raise LmtwinError(f"unknown scenario baseline {name!r}")
