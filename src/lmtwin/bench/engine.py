"""Benchmark of the twin engine's targets (issue 2). Medians, and ratios against
baselines measured in the same run, because this machine is shared and noisy.

Reproduce with ``lmtwin bench engine`` (``--quick`` for a shorter run).
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress

from lmtwin.demo import demo_twin, run_demo, summarise
from lmtwin.llm.base import LLMBackend
from lmtwin.predictors import LLMPredictor, LocalRidge, Persistence, Query
from lmtwin.retrieval import Retriever
from lmtwin.schema import Schema
from lmtwin.systems.cancer import CANCER_VARIABLES, simulate_patients
from lmtwin.twin import Twin


def bench_observe(n: int = 5000, repeats: int = 3) -> dict[str, Any]:
    """Observations per second into SQLite through ``Twin.observe`` (one commit each),
    against raw sqlite3 inserting the same rows with one commit each."""
    rates, raw_rates = [], []
    rows = [{"v": 100.0 + i, "c": 1.0, "ca": 5.0} for i in range(n)]
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            twin = Twin(
                "b",
                variables=CANCER_VARIABLES[:3],
                store=Path(tmp) / "t.db",
                predictors=[Persistence()],
            )
            start = time.perf_counter()
            for i, row in enumerate(rows):
                twin.observe(row, episode="e", t=float(i))
            rates.append(n / (time.perf_counter() - start))
            twin.close()
            db = sqlite3.connect(Path(tmp) / "raw.db", isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE o (twin, episode, t, variable, value, v, at)")
            start = time.perf_counter()
            for i, row in enumerate(rows):
                db.execute("BEGIN")
                db.executemany(
                    "INSERT INTO o VALUES (?,?,?,?,?,?,?)",
                    [("b", "e", i, k, x, 1, 0.0) for k, x in row.items()],
                )
                db.execute("COMMIT")
            raw_rates.append(n / (time.perf_counter() - start))
            db.close()
    return {
        "observations_per_second_median": statistics.median(rates),
        "raw_sqlite_per_second_median": statistics.median(raw_rates),
        "ratio_to_raw_sqlite": statistics.median(rates) / statistics.median(raw_rates),
        "n": n,
        "repeats": repeats,
    }


def _history(patients: int, seed: int) -> Retriever:
    twin = Twin("h", variables=CANCER_VARIABLES[:3], predictors=[Persistence()])
    for i, p in enumerate(simulate_patients(patients, seed=seed, variant="cancer-chemo")):
        for t, row in enumerate(p.rows("cancer-chemo")):
            twin.observe(row, episode=f"p{i}", t=float(t))
    return twin.retriever


def bench_llm(backend: LLMBackend, queries: int = 30, k: int = 16) -> dict[str, Any]:
    """Prompt tokens and predictions per second of the language-model predictor on a
    3-variable system (v, c, ca) with k examples."""
    schema = Schema(CANCER_VARIABLES[:3])
    retriever = _history(20, seed=3)
    test = simulate_patients(2, seed=4, variant="cancer-chemo")
    llm = LLMPredictor(backend)
    lat, tokens = [], []
    rows = [r for p in test for r in p.rows("cancer-chemo")[:-1]][:queries]
    for row in rows:
        q = Query({"v": row["v"], "c": row["c"]}, {"ca": row["ca"]}, ["v", "c"], schema)
        ex = retriever.search(q.state, q.action, schema, k=k)
        start = time.perf_counter()
        out = llm.predict(q, ex)
        lat.append(time.perf_counter() - start)
        tokens.append(out.info["prompt_tokens"])
    return {
        "prompt_tokens_median": statistics.median(tokens),
        "prompt_tokens_max": max(tokens),
        "seconds_per_prediction_median": statistics.median(lat),
        "predictions_per_second": 1.0 / statistics.median(lat),
        "queries": len(rows),
        "k": k,
        "backend": backend.name,
    }


def bench_retrieval(
    backend: LLMBackend,
    train_patients: int = 30,
    test_patients: int = 2,
    tune_steps: int = 300,
    seed: int = 5,
) -> dict[str, Any]:
    """One-step MSE of the language-model predictor with raw and with fine-tuned
    retrieval from the same history (and of the numeric predictor, for reference)."""
    schema = Schema(CANCER_VARIABLES[:3])
    retriever = _history(train_patients, seed=seed)
    test = simulate_patients(test_patients, seed=seed + 100, variant="cancer-chemo")
    from lmtwin.retrieval.set_encoder import SetEncoder

    tuned = Retriever(SetEncoder(seed=0))
    for tr in retriever.transitions:
        tuned.add(tr)
    start = time.perf_counter()
    assert isinstance(tuned.encoder, SetEncoder)
    tuned.encoder.tune(tuned.transitions, schema, steps=tune_steps)
    tune_seconds = time.perf_counter() - start
    tuned.invalidate()
    out: dict[str, Any] = {"tune_seconds": tune_seconds, "train_transitions": len(retriever)}
    llm, ridge = LLMPredictor(backend), LocalRidge()
    for label, r in (("raw", retriever), ("tuned", tuned)):
        errs: dict[str, list[float]] = {"llm": [], "numeric": []}
        for p in test:
            rows = p.rows("cancer-chemo")
            for row, nxt in itertools.pairwise(rows):
                q = Query({"v": row["v"], "c": row["c"]}, {"ca": row["ca"]}, ["v", "c"], schema)
                ex = r.search(q.state, q.action, schema, k=ridge.k)
                for name, pred in (("llm", llm), ("numeric", ridge)):
                    m = pred.predict(q, ex[-pred.k :]).mean
                    errs[name].append(float(np.mean((m - [nxt["v"], nxt["c"]]) ** 2)))
        out[label] = {n: float(np.mean(e)) for n, e in errs.items()}
    out["llm_tuned_over_raw"] = out["tuned"]["llm"] / out["raw"]["llm"]
    return out


def bench_stream(backend: LLMBackend | None, patients: int, steps: int = 60) -> dict[str, Any]:
    """The demo stream: combination against the best single predictor, coverage, and the
    first patient's combined error against persistence (before any data)."""
    twin = demo_twin(backend)
    result = run_demo(twin, patients=patients, steps=steps, tune_after=None)
    s = summarise(result, [p.name for p in twin.predictors])
    first = [x for x in result.scores if x.episode == "patient-1"][:20]
    comb = float(np.mean([(x.combined - x.actual) ** 2 for x in first]))
    pers = float(np.mean([(x.by_predictor["persistence"] - x.actual) ** 2 for x in first]))
    s["first_20_scores_combined_over_persistence"] = comb / pers if pers else float("nan")
    return s


def run(backend: LLMBackend, quick: bool = False, out: Path | None = None) -> dict[str, Any]:
    steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("observe", lambda: bench_observe(2000 if quick else 5000, 3)),
        ("llm", lambda: bench_llm(backend, 15 if quick else 40)),
        ("stream", lambda: bench_stream(backend, 4 if quick else 6)),
        (
            "retrieval",
            lambda: bench_retrieval(
                backend, 15 if quick else 30, 1 if quick else 2, 150 if quick else 300
            ),
        ),
    ]
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M"), "quick": quick}
    with Progress() as bar:
        task = bar.add_task("engine benchmark", total=len(steps))
        for name, fn in steps:
            bar.update(task, description=f"engine benchmark: {name}")
            results[name] = fn()
            bar.advance(task)
            if out is not None:  # keep what is measured if a later step is stopped
                out.mkdir(parents=True, exist_ok=True)
                (out / "engine.json").write_text(json.dumps(results, indent=2))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "engine.json").write_text(json.dumps(results, indent=2))
        (out / "engine.md").write_text(report(results))
    return results


def report(r: dict[str, Any]) -> str:
    o, llm, s, ret = r["observe"], r["llm"], r["stream"], r["retrieval"]
    mode = "quick" if r["quick"] else "full"
    return "\n".join(
        [
            "# Engine benchmark",
            "",
            f"Run {r['date']} ({mode}), `lmtwin bench engine{' --quick' if r['quick'] else ''}`, "
            f"backend `{llm['backend']}`, 2 threads. Medians.",
            "",
            "| target | measured | goal |",
            "|---|---|---|",
            f"| observe into SQLite (1 commit each) | {o['observations_per_second_median']:.0f}/s "
            f"({o['ratio_to_raw_sqlite']:.2f}x raw sqlite3 at "
            f"{o['raw_sqlite_per_second_median']:.0f}/s) | >= 2000/s |",
            f"| LM prompt tokens, 3 variables, {llm['k']} examples | median "
            f"{llm['prompt_tokens_median']:.0f}, max {llm['prompt_tokens_max']} | <= 300 |",
            f"| LM predictions per second | {llm['predictions_per_second']:.2f} "
            f"({llm['seconds_per_prediction_median']:.2f} s each) | >= 1 |",
            f"| combination / best single ({s['best_single']}), relative MSE | "
            f"{s['combined_over_best']:.3f} | <= 1.0 |",
            f"| combination / persistence, first 20 scored values | "
            f"{s['first_20_scores_combined_over_persistence']:.3f} | <= 1.0 |",
            f"| 90% conformal interval coverage | {s['coverage']:.1%} over {s['n_intervals']} | "
            "85-95% |",
            f"| LM one-step MSE, tuned / raw retrieval | {ret['llm_tuned_over_raw']:.3f} "
            f"(raw {ret['raw']['llm']:.4g}, tuned {ret['tuned']['llm']:.4g}) | < 1.0 |",
            "",
            f"Numeric predictor with raw / tuned retrieval: {ret['raw']['numeric']:.4g} / "
            f"{ret['tuned']['numeric']:.4g}. Encoder tuning took {ret['tune_seconds']:.1f} s on "
            f"{ret['train_transitions']} transitions.",
            "",
            "Per-predictor MSE on the demo stream (raw units):",
            "",
            "| predictor | " + " | ".join(next(iter(s["mse"].values()))) + " |",
            "|---|" + "---|" * len(next(iter(s["mse"].values()))),
            *[
                f"| {n} | " + " | ".join(f"{v:.4g}" for v in m.values()) + " |"
                for n, m in s["mse"].items()
            ],
            "",
        ]
    )
