"""The four continual-update scenarios: the system changes within a running stream.

A twin warms up on whole patients of the old system; then ``stream_patients`` new
patients stream in lockstep, day by day, and at day ``change_at`` the system changes
for all of them, mid-trajectory:

1. ``new-state``: untreated -> chemotherapy starts and ``c`` starts being observed (the
   twin gains the variables ``c`` and ``ca``).
2. ``new-action``: chemo only -> radiotherapy starts (the twin gains ``ra``).
3. ``drift``: chemo only; the growth rate ``rho`` doubles.
4. ``knowledge``: chemo and radio; radiotherapy becomes twice as effective, announced by
   a knowledge note.

Every method predicts each day before it sees it; nothing in the twin is retrained.
Baselines either keep their fit on the warm-up patients (``kept``) or learn online
from every revealed day (``online``: ridge extends its normal equations, kNN and
parroting store it, SINDy refits every few days; time reported). The error is the
squared relative error of the tumour volume ``v`` (patients differ in size by orders
of magnitude), averaged over the stream's patients per day. The level before the change
averages ``stream_patients`` x ``pre_window`` predictions; everything is repeated over
seeds and reported with its spread.

The knowledge scenario also runs an ablation of what the language model contributes:
on one patient of the stream, around the change, the twin with the language model is
asked with and without the note in its prompt; the model's error and its combination
weight are recorded day by day.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lmtwin.bench import baselines as bl
from lmtwin.bench.harness import Arrays, TwinMethod, mean_ci, numeric_pool, stream
from lmtwin.errors import LmtwinError, NotReady
from lmtwin.llm.base import LLMBackend
from lmtwin.predictors import LLMPredictor
from lmtwin.retrieval import Retriever
from lmtwin.systems.cancer import ALPHA_R, BETA_C, BETA_R, CANCER_VARIABLES, RHO, K, diameter
from lmtwin.twin import Twin

RADIO_NOTE = ("Radiotherapy is now twice as effective: each Gy of ra kills twice the "
              "tumour volume v it did before.")
VARS = {v.name: v for v in CANCER_VARIABLES}
OBSERVED = {"cancer-untreated": (["v"], []), "cancer-chemo": (["v", "c"], ["ca"]),
            "cancer": (["v", "c"], ["ca", "ra"])}


@dataclass
class Scenario:
    name: str
    title: str
    pre: str  # the variant before the change
    post: str  # and after it
    post_drift: dict[str, float] = field(default_factory=dict)
    note: str | None = None


SCENARIOS = {
    "new-state": Scenario("new-state", "new state variable (c observed, chemo starts)",
                          "cancer-untreated", "cancer-chemo"),
    "new-action": Scenario("new-action", "new action variable (radiotherapy starts)",
                           "cancer-chemo", "cancer"),
    "drift": Scenario("drift", "drifting dynamics (rho doubles)", "cancer-chemo",
                      "cancer-chemo", post_drift={"rho": 2 * RHO}),
    "knowledge": Scenario("knowledge", "knowledge as text (radio twice as effective)",
                          "cancer", "cancer", post_drift={"radio_effect": 2.0},
                          note=RADIO_NOTE),
}
BASELINES = ("ridge", "knn", "sindy", "parroting")


@dataclass
class ScenarioSizes:
    warm_patients: int = 200
    stream_patients: int = 20
    steps: int = 60
    change_at: int = 30
    pre_window: int = 10  # days before the change whose errors give the level before
    sindy_refit_every: int = 5
    lm_pre: int = 6  # language-model ablation: days asked before the change
    lm_post: int = 10  # and after it

    @classmethod
    def quick(cls) -> ScenarioSizes:
        return cls(warm_patients=20, stream_patients=6, steps=24, change_at=12, pre_window=9,
                   lm_pre=3, lm_post=3)


def simulate(n: int, seed: int, sc: Scenario, steps: int, change_at: int | None
             ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` patients under the protocol's policy, the system changing from ``sc.pre`` to
    ``sc.post`` at day ``change_at`` (None: never). Returns states (n, steps + 1, 2) as
    (v, c) and actions (n, steps, 2) as (ca, ra), every variable whether observed or not."""
    rng = np.random.default_rng(seed)
    v = np.zeros((n, steps + 1))
    c = np.zeros((n, steps + 1))
    ca = np.zeros((n, steps))
    ra = np.zeros((n, steps))
    v[:, 0] = rng.uniform(size=n) * 1149.8817 + 0.014165
    for t in range(steps):
        after = change_at is not None and t >= change_at
        variant = sc.post if after else sc.pre
        rho = sc.post_drift.get("rho", RHO) if after else RHO
        radio = sc.post_drift.get("radio_effect", 1.0) if after else 1.0
        d = diameter(v[:, max(0, t - 14) : t + 1]).mean(axis=1)
        p = 1.0 / (1.0 + np.exp(-(2.0 / 13.0) * (d - 6.5)))
        chemo_u, radio_u = rng.uniform(size=n), rng.uniform(size=n)
        if variant != "cancer-untreated":
            ca[:, t] = np.where(chemo_u < p, 5.0, 0.0)
        if variant == "cancer":
            ra[:, t] = np.where(radio_u < p, 2.0, 0.0)
        growth = rho * np.log(K / np.maximum(v[:, t], 1e-300)) - BETA_C * c[:, t]
        growth -= radio * (ALPHA_R * ra[:, t] + BETA_R * ra[:, t] ** 2)
        dv = np.where(v[:, t] > 0, growth * v[:, t], 0.0)
        c[:, t + 1] = np.maximum(c[:, t] - c[:, t] / 2.0 + ca[:, t], 0.0)
        v[:, t + 1] = np.maximum(v[:, t] + dv, 0.0)
    return np.stack([v, c], axis=2), np.stack([ca, ra], axis=2)


class _Phase:
    """The variables a phase observes, as the harness's ``Task`` view."""

    def __init__(self, variant: str) -> None:
        self.states, self.actions = OBSERVED[variant]
        self.variables = [VARS[n] for n in self.states + self.actions]


def _cols(S: np.ndarray, A: np.ndarray, phase: _Phase) -> tuple[np.ndarray, np.ndarray]:
    si = [["v", "c"].index(s) for s in phase.states]
    ai = [["ca", "ra"].index(a) for a in phase.actions]
    return S[..., si], A[..., ai]


def _rel(pred: np.ndarray, actual: np.ndarray) -> np.ndarray:
    return np.asarray(((pred - actual) / np.maximum(np.abs(actual), 1.0)) ** 2)


def recovery(curve: Sequence[float], pre_level: float, change_at: int, window: int = 5,
             factor: float = 1.5) -> int | None:
    """Days after the change until the rolling mean error (over ``window`` days) is back
    within ``factor`` of the level before the change, once it has left it; 0 if it never
    left it, None if it never came back."""
    post = list(curve[change_at:])
    rolling = [float(np.mean(post[max(0, s - window) : s])) for s in range(1, len(post) + 1)]
    out = [s for s, r in enumerate(rolling, 1) if r > factor * pre_level]
    if not out:
        return 0
    back = [s for s, r in enumerate(rolling, 1) if s > out[0] and r <= factor * pre_level]
    return back[0] if back else None


def run_seed(name: str, backend: LLMBackend | None, sizes: ScenarioSizes, seed: int,
             baselines: Sequence[str] = BASELINES) -> dict[str, Any]:
    """One seed of a scenario: error curves (per day, mean over the stream's patients)."""
    sc = SCENARIOS[name]
    pre, post = _Phase(sc.pre), _Phase(sc.post)
    wS, wA = simulate(sizes.warm_patients, seed * 100 + 1, sc, sizes.steps, None)
    sS, sA = simulate(sizes.stream_patients, seed * 100 + 2, sc, sizes.steps, sizes.change_at)
    warm = Arrays(*_cols(wS, wA, pre))
    twin = Twin(f"scenario-{name}-{seed}", variables=pre.variables,
                predictors=numeric_pool(), retriever=Retriever(k=16),
                seed=seed, score_window=0)
    # the twin observes the warm-up patients prequentially (its weights and intervals
    # learn), in lockstep like the stream
    stream(TwinMethod(twin, pre, "warm", online=True, prefix="warm"), warm)
    kept: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for b in baselines:
        try:
            model = _baseline(b, sizes)
            if isinstance(model, bl.ContextParroting):
                model.fit_arrays(warm.S, warm.A, pre.states, pre.actions)
            else:
                model.fit_arrays(*warm.deltas(), pre.states, pre.actions)
            kept[b] = model
        except LmtwinError as exc:
            errors[b] = f"{type(exc).__name__}: {exc}"
    online = {b: copy.deepcopy(m) for b, m in kept.items()}
    cost = dict.fromkeys(online, 0.0)
    curves: dict[str, list[float]] = {}
    lm: dict[str, list[float]] = {"day": [], "with_note": [], "without_note": [],
                                  "combined_with_note": [], "combined_without_note": [],
                                  "llm_weight": [], "numeric": []}
    lm_days = range(sizes.change_at - sizes.lm_pre, sizes.change_at + sizes.lm_post)
    llm = LLMPredictor(backend) if backend is not None and sc.note else None
    for t in range(sizes.steps):
        phase = post if t >= sizes.change_at else pre
        if t == sizes.change_at:
            for v in post.states + post.actions:
                if v not in pre.states + pre.actions:
                    twin.add_variable(VARS[v])
            if sc.note:
                twin.add_knowledge(sc.note)
        S, A = _cols(sS[:, : t + 1], sA[:, : t + 1], phase)
        actual = sS[:, t + 1, 0]
        method = TwinMethod(twin, phase, "s", online=True, prefix="stream")
        outs = method.predict(S, A)
        curves.setdefault("lmtwin", []).append(float(_rel(outs["lmtwin[s]"].mean[:, 0],
                                                          actual).mean()))
        curves.setdefault("lmtwin-numeric", []).append(float(_rel(
            outs["lmtwin-numeric[s]"].mean[:, 0], actual).mean()))
        curves.setdefault("persistence", []).append(float(_rel(S[:, -1, 0], actual).mean()))
        for b in kept:
            for label, model in ((f"{b} (kept)", kept[b]), (f"{b} (online)", online[b])):
                pS, pA = _cols(sS[:, : t + 1], sA[:, : t + 1], pre)
                if isinstance(model, bl.ContextParroting):
                    delta = model.delta_batch_history(pS, pA)
                else:
                    with np.errstate(all="ignore"):
                        delta = model.delta_batch(np.concatenate([pS[:, -1], pA[:, -1]], 1))
                pv = pS[:, -1, 0] + np.nan_to_num(delta[:, 0], nan=0.0, posinf=0, neginf=0)
                curves.setdefault(label, []).append(float(_rel(pv, actual).mean()))
        if llm is not None and t in lm_days:
            _ask_lm(twin, llm, phase, sS[0, t], sA[0, t], sS[0, t + 1], t, lm)
        # reveal day t + 1: the twin and the online baselines learn it
        # (the day of the change was observed with the old variables: the first
        # transition after it lacks the new ones, as in a real stream)
        method.learn(*_cols(sS[:, : t + 2], sA[:, : min(t + 2, sizes.steps)], phase))
        # baselines keep the inputs they were fitted on (the old variables); online they
        # re-learn their fit from every revealed day
        for b, model in online.items():
            start = time.perf_counter()
            pS, pA = _cols(sS[:, : t + 2], sA[:, : t + 1], pre)
            if isinstance(model, bl.ContextParroting):
                model.extend_history(pS, pA)
            else:
                model.extend(np.concatenate([pS[:, t], pA[:, t]], axis=1),
                             pS[:, t + 1] - pS[:, t])
            cost[b] += time.perf_counter() - start
    weights = twin.hedge.weights([p.name for p in twin.predictors])
    twin.store.close()
    return {"curves": curves, "errors": errors, "online_seconds": cost, "lm": lm,
            "weights_after": weights}


def _ask_lm(twin: Twin, llm: LLMPredictor, phase: _Phase, s: np.ndarray, a: np.ndarray,
            nxt: np.ndarray, day: int, lm: dict[str, list[float]]) -> None:
    """One patient-day of the language-model ablation: the twin with the model in its
    pool, asked with its knowledge notes and without them (the same examples)."""
    values = {"v": float(s[0]), **({"c": float(s[1])} if "c" in phase.states else {})}
    values.update({x: float(a[["ca", "ra"].index(x)]) for x in phase.actions})
    twin.predictors.append(llm)
    try:
        with_note = twin.predict(values)
        notes = twin._notes  # the same twin, its notes hidden for one call
        twin._notes = []
        try:
            without = twin.predict(values)
        finally:
            twin._notes = notes
    except NotReady:
        return
    finally:
        twin.predictors.remove(llm)
    actual = np.array([nxt[0]])
    lm["day"].append(day)
    for key, pred, who in (("with_note", with_note, "llm"), ("without_note", without, "llm"),
                           ("numeric", with_note, "numeric")):
        by = pred.by_predictor.get(who, {}).get("v", float(s[0]))
        lm[key].append(float(_rel(np.array([by]), actual)[0]))
    lm["combined_with_note"].append(float(_rel(np.array([with_note.mean["v"]]), actual)[0]))
    lm["combined_without_note"].append(float(_rel(np.array([without.mean["v"]]), actual)[0]))
    lm["llm_weight"].append(float(with_note.weights.get("llm", 0.0)))
    # the model's forecast is scored like any costly prediction the twin makes
    cur = {k: float(values[k]) for k in phase.states}
    truth = {"v": float(nxt[0]), **({"c": float(nxt[1])} if "c" in phase.states else {})}
    if "llm" in with_note.by_predictor:
        twin.hedge.update(truth, cur, {"llm": with_note.by_predictor["llm"]})


def _baseline(name: str, sizes: ScenarioSizes) -> Any:
    if name == "ridge":
        return bl.Ridge()
    if name == "knn":
        return bl.KNN()
    if name == "sindy":
        return bl.SINDy(refit_every=sizes.sindy_refit_every)
    if name == "parroting":
        return bl.ContextParroting(window=2)
    raise LmtwinError(f"unknown scenario baseline {name!r}; choose from {', '.join(BASELINES)}")


def run_scenario(name: str, backend: LLMBackend | None, sizes: ScenarioSizes,
                 seeds: Sequence[int] = (10, 11, 12),
                 baselines: Sequence[str] = BASELINES) -> dict[str, Any]:
    """A scenario over ``seeds``: per method, the level before the change, the error
    just after and at the end, and the recovery, each as a mean with its t-interval."""
    if name not in SCENARIOS:
        raise LmtwinError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
    runs = [run_seed(name, backend, sizes, s, baselines) for s in seeds]
    ca = sizes.change_at
    summary: dict[str, Any] = {}
    for m in runs[0]["curves"]:
        pre, first, last, rec = [], [], [], []
        for r in runs:
            curve = r["curves"][m]
            level = float(np.mean(curve[ca - sizes.pre_window : ca]))
            pre.append(level)
            first.append(float(np.mean(curve[ca : ca + 5])))
            last.append(float(np.mean(curve[-10:])))
            rec.append(recovery(curve, level, ca))
        back = [x for x in rec if x is not None]
        summary[m] = {"pre_level": mean_ci(pre), "post_first5": mean_ci(first),
                      "post_last10": mean_ci(last),
                      "recovered": f"{len(back)}/{len(rec)}",
                      "recovery_days": mean_ci([float(x) for x in back]) if back else None}
        base = m.split(" ")[0]
        if m.endswith("(online)"):
            summary[m]["online_seconds"] = float(np.mean([r["online_seconds"][base]
                                                          for r in runs]))
    curves = {m: np.mean([r["curves"][m] for r in runs], axis=0).tolist()
              for m in runs[0]["curves"]}
    out: dict[str, Any] = {
        "scenario": name, "title": SCENARIOS[name].title, "seeds": list(seeds),
        "curves": curves, "n_pre": ca, "summary": summary, "errors": runs[0]["errors"],
        "sizes": sizes.__dict__,
        "pre_predictions": sizes.stream_patients * sizes.pre_window,
        "weights_after": [r["weights_after"] for r in runs]}
    if any(r["lm"]["day"] for r in runs):
        out["lm_ablation"] = _ablation(runs, ca)
    return out


def _ablation(runs: list[dict[str, Any]], change_at: int) -> dict[str, Any]:
    """The language model's error with and without the note, and its weight, before and
    after the change (per seed means, then their mean and t-interval)."""
    keys = ("with_note", "without_note", "combined_with_note", "combined_without_note",
            "numeric", "llm_weight")
    out: dict[str, Any] = {"days": runs[0]["lm"]["day"], "per_day": {}}
    for phase, test in (("before", lambda d: d < change_at), ("after", lambda d: d >= change_at)):
        out[phase] = {}
        for k in keys:
            vals = [float(np.mean([x for d, x in zip(r["lm"]["day"], r["lm"][k], strict=True)
                                   if test(d)])) for r in runs
                    if any(test(d) for d in r["lm"]["day"])]
            out[phase][k] = mean_ci(vals)
        out[phase]["predictions"] = sum(sum(1 for d in r["lm"]["day"] if test(d)) for r in runs)
    for k in keys:
        out["per_day"][k] = np.mean([r["lm"][k] for r in runs
                                     if len(r["lm"][k]) == len(runs[0]["lm"][k])],
                                    axis=0).tolist()
    return out


__all__ = ["SCENARIOS", "ScenarioSizes", "recovery", "run_scenario", "simulate"]
