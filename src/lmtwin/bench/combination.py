"""The combination against its best member on every stream (step ``combination`` of
``lmtwin bench engine``).

Two kinds of stream, neither scored by the task report:

- validation streams: a twin with the library's numeric pool observes a task's train
  split (``observe_many``, scored prequentially), then predicts and observes its
  validation split, a step of every trajectory at a time (``TwinMethod``, online): nMSE
  of the combination and of each member, over the same rows;
- demo streams: ``lmtwin demo`` (persistence, the numeric learner, the language model;
  radiotherapy added half-way) on several seeds: the demo's own measure, each variable's
  MSE over persistence's, averaged, over the whole stream and after the first patient.
  A demo twin starts empty: a predictor's weight is earned (``Hedge.min_scored``), so on
  the first patient's first answered steps persistence carries the combination however
  good the others' first answers are; the second figure is the combination once warm.

A combination is never meaningfully worse than its best member: the ratio per stream and
its maximum are the figures.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from lmtwin.bench.harness import (
    Arrays,
    PersistenceMethod,
    TwinMethod,
    metrics,
    numeric_pool,
    stream,
)
from lmtwin.bench.tasks import Sizes, load_task
from lmtwin.demo import demo_twin, run_demo, summarise
from lmtwin.llm.base import LLMBackend
from lmtwin.retrieval import Retriever
from lmtwin.twin import Twin

TASKS = ("cancer", "cancer-chemo", "cancer-untreated", "covid", "hare-lynx", "plankton")
SEEDED = ("cancer", "cancer-chemo", "cancer-untreated", "covid")  # the others: one series


def validation_stream(name: str, seed: int, patients: int) -> dict[str, Any]:
    """nMSE of the combination and of each member on ``name``'s validation split."""
    sizes = Sizes(patients=(patients, patients, 1), covid_population=5_000)
    task = load_task(name, seed, sizes)
    twin = Twin(f"{name}-{seed}", variables=task.variables, predictors=numeric_pool(),
                retriever=Retriever(k=16), seed=seed)
    twin.observe_many(task.observations(task.train, "train"))
    val = Arrays.of(task.val)
    every = np.concatenate([t.states for t in task.train + task.val])
    variance = every.var(axis=0) + 1e-300
    recs = stream(TwinMethod(twin, task, "val", online=True, prefix="val"), val)
    recs.update(stream(PersistenceMethod("lmtwin-persistence[val]"), val))
    nmse = {key.split("[")[0].removeprefix("lmtwin-").replace("lmtwin", "combined"):
            float(metrics(rec, variance)["nmse"]) for key, rec in recs.items()}
    members = {k: v for k, v in nmse.items() if k != "combined"}
    best = min(members, key=members.__getitem__)
    twin.close()
    return {"stream": f"{name} validation" + (f", seed {seed}" if name in SEEDED else ""),
            "kind": "validation", "nmse": nmse, "best": best,
            "combined_over_best": nmse["combined"] / members[best],
            "rows": int(val.S.shape[0] * val.steps)}


def demo_stream(backend: LLMBackend | None, seed: int, patients: int) -> dict[str, Any]:
    """The demo on ``seed``: its summary's combination over best single predictor."""
    twin = demo_twin(backend)
    result = run_demo(twin, patients=patients, seed=seed, tune_after=None)
    names = [p.name for p in twin.predictors]
    s = summarise(result, names)
    warm = summarise(dataclasses.replace(result, scores=[
        x for x in result.scores if x.episode != "patient-1"]), names)
    twin.close()
    rel = s["relative_to_persistence"]
    return {"stream": f"demo, seed {seed} ({patients} patients)", "kind": "demo",
            "nmse": rel, "mse": s["mse"], "best": s["best_single"],
            "combined_over_best": s["combined_over_best"], "rows": s["answered_by_all"],
            "after_first_patient": warm["combined_over_best"]}


def bench_combination(backend: LLMBackend | None, quick: bool = False,
                      tick: Callable[[str], None] | None = None,
                      tasks: Sequence[str] = TASKS) -> dict[str, Any]:
    """Every stream's combination / best member (validation streams on seeds 0-1 at 200
    patients, demo streams on seeds 0-2 at 4 patients; quick: seed 0, 60 patients, one
    demo of 2 patients)."""
    seeds, patients = ((0,), 60) if quick else ((0, 1), 200)
    demos, demo_patients = ((0,), 2) if quick else ((0, 1, 2), 4)
    rows = []
    for name in tasks:
        for seed in seeds if name in SEEDED else (0,):
            if tick:
                tick(f"{name} seed {seed}")
            rows.append(validation_stream(name, seed, patients))
    if backend is not None:
        for seed in demos:
            if tick:
                tick(f"demo seed {seed}")
            rows.append(demo_stream(backend, seed, demo_patients))
    ratios = [r["combined_over_best"] for r in rows]
    return {"streams": rows, "max_ratio": max(ratios),
            "median_ratio": float(np.median(ratios)),
            "patients": patients, "demo_patients": demo_patients}


def report_lines(c: dict[str, Any]) -> list[str]:
    """The step's table for engine.md."""
    lines = [
        "Combination against its best member on every stream (step `combination`): "
        f"validation streams (train observed, validation predicted then observed; "
        f"{c['patients']} patients a split for the cancers, COVID at 5,000 people; nMSE) "
        "and demo streams (the demo's measure: each variable's MSE over persistence's, "
        "averaged). None of these is scored in the task report.",
        "",
        "| stream | combination | best member | its error | combination / best | "
        "after the first patient |",
        "|---|---|---|---|---|---|",
    ]
    for r in c["streams"]:
        warm = r.get("after_first_patient")
        lines.append(f"| {r['stream']} | {r['nmse']['combined']:.4g} | {r['best']} | "
                     f"{r['nmse'][r['best']]:.4g} | {r['combined_over_best']:.3f} | "
                     f"{'-' if warm is None else f'{warm:.3f}'} |")
    lines += ["", f"Largest ratio {c['max_ratio']:.3f}, median {c['median_ratio']:.3f}."]
    warm = [r["after_first_patient"] for r in c["streams"] if "after_first_patient" in r]
    if warm:
        lines += [f"Demo streams after the first patient (every predictor's weight earned): "
                  f"largest {max(warm):.3f}. On the first patient persistence carries the "
                  "combination until a predictor has 3 scores (`Hedge.min_scored`)."]
    return [*lines, ""]
