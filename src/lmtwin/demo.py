"""The main job: a twin follows lung-cancer patients one after another, live.

Half-way, radiotherapy starts: the ``ra`` action is added to the schema while the twin
runs and a knowledge note announces it. Nothing is retrained; the retrieval encoder
may be tuned (only it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmtwin.predictors import LLMPredictor, LocalRidge, Persistence, Predictor
from lmtwin.systems.cancer import CANCER_VARIABLES, Variant, simulate_patients
from lmtwin.twin import Score, Twin

NOTE = (
    "From now on radiotherapy is given: ra is the dose in Gy; a dose of 2 Gy shrinks "
    "the tumour volume v by about 10% that day."
)


@dataclass
class DemoResult:
    scores: list[Score]
    predictions: int
    seconds: float
    llm_prompt_tokens: list[int] = field(default_factory=list)
    change_at: int = 0
    summary: dict[str, Any] = field(default_factory=dict)


def run_demo(
    twin: Twin,
    patients: int = 6,
    steps: int = 60,
    seed: int = 0,
    tune_after: int | None = 1,
    on_step: Callable[[Twin, int, int], None] | None = None,
) -> DemoResult:
    """Stream ``patients`` into ``twin``; radiotherapy starts with patient ``patients // 2``.

    The twin predicts each next state before it observes it, so every score is honest.
    """
    half = patients // 2
    first = simulate_patients(half, seed=seed, variant="cancer-chemo", steps=steps)
    second = simulate_patients(patients - half, seed=seed + 1, variant="cancer", steps=steps)
    start = time.perf_counter()
    n_pred = 0
    change_at = 0
    for i, patient in enumerate(first + second):
        variant: Variant = "cancer-chemo" if i < half else "cancer"
        if i == half:
            twin.add_variable(CANCER_VARIABLES[3])
            twin.add_knowledge(NOTE)
            change_at = len(twin.scores_)
        if tune_after is not None and i == tune_after:
            twin.tune()
        episode = f"patient-{i + 1}"
        rows = patient.rows(variant)
        for t, row in enumerate(rows):
            twin.observe(row, episode=episode, t=float(t))
            if t + 1 < len(rows):
                state = {k: v for k, v in row.items() if k in ("v", "c")}
                action = {k: v for k, v in row.items() if k in ("ca", "ra")}
                twin.predict(state, action, episode=episode)
                n_pred += 1
            if on_step is not None:
                on_step(twin, i, t)
    tokens = [
        tok for p in twin.predictors if isinstance(p, LLMPredictor) for tok in p.prompt_tokens_
    ]
    return DemoResult(twin.scores_, n_pred, time.perf_counter() - start, tokens, change_at)


def demo_twin(backend: Any | None, store: str | Path | None = None) -> Twin:
    """The demo's twin: chemo only at first (v, c, ca); ``ra`` arrives later."""
    predictors: list[Predictor] = [Persistence(), LocalRidge()]
    if backend is not None:
        predictors.append(LLMPredictor(backend))
    return Twin("cancer-demo", variables=CANCER_VARIABLES[:3], store=store, predictors=predictors)


def summarise(result: DemoResult, names: list[str]) -> dict[str, Any]:
    """Per-predictor MSE (raw units, per variable), combination ratio, coverage, speed."""
    out: dict[str, Any] = {
        "predictions": result.predictions,
        "seconds_per_prediction": result.seconds / max(result.predictions, 1),
    }
    targets = sorted({s.target for s in result.scores})
    # compare on the values every predictor answered, so no one is scored on easier steps
    common = [s for s in result.scores if all(n in s.by_predictor for n in names)]
    out["answered_by_all"] = len(common)
    out["scored"] = len(result.scores)
    mse: dict[str, dict[str, float]] = {}
    for name in [*names, "combined"]:
        mse[name] = {}
        for t in targets:
            errs = [
                ((s.combined if name == "combined" else s.by_predictor[name]) - s.actual) ** 2
                for s in common
                if s.target == t
            ]
            mse[name][t] = float(np.mean(errs)) if errs else float("nan")
    out["mse"] = mse
    # scaled error: each variable's MSE over persistence's, averaged over variables
    base = mse.get("persistence", {})
    out["relative_to_persistence"] = {
        n: float(np.mean([m[t] / base[t] for t in targets if base.get(t)])) for n, m in mse.items()
    }
    single = {n: r for n, r in out["relative_to_persistence"].items() if n != "combined"}
    best = min(single, key=lambda n: single[n])
    out["best_single"] = best
    out["combined_over_best"] = out["relative_to_persistence"]["combined"] / single[best]
    inside = [
        s.lower <= s.actual <= s.upper
        for s in result.scores
        if s.lower is not None and s.upper is not None
    ]
    out["coverage"] = float(np.mean(inside)) if inside else float("nan")
    out["n_intervals"] = len(inside)
    if result.llm_prompt_tokens:
        out["llm_prompt_tokens_median"] = float(np.median(result.llm_prompt_tokens))
    last = result.scores[-1].weights if result.scores else {}
    out["final_weights"] = last
    return out
