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

from lmtwin.assimilation import Assimilator, Noise
from lmtwin.demo import demo_twin, run_demo, summarise
from lmtwin.llm.base import LLMBackend
from lmtwin.predictors import (
    LLMPredictor,
    LocalRidge,
    NearestNeighbours,
    Persistence,
    Predictor,
    Query,
)
from lmtwin.retrieval import Retriever
from lmtwin.schema import Schema
from lmtwin.systems.cancer import CANCER_VARIABLES, simulate_patients
from lmtwin.systems.tank import TANK_VARIABLES, simulate_tank
from lmtwin.twin import Twin
from lmtwin.types import Observation


def bench_observe(n: int = 5000, repeats: int = 3) -> dict[str, Any]:
    """Observations per second into SQLite through ``Twin.observe`` (one commit each;
    persistence only, and with the numeric learner, which scores each transition
    prequentially), against raw sqlite3 inserting the same rows with one commit each."""
    rates: list[float] = []
    scored_rates: list[float] = []
    raw_rates: list[float] = []
    rows = [{"v": 100.0 + i, "c": 1.0, "ca": 5.0} for i in range(n)]
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            pools: list[tuple[list[Predictor], list[float]]] = [
                ([Persistence()], rates), ([Persistence(), LocalRidge()], scored_rates)]
            for predictors, into in pools:
                twin = Twin("b", variables=CANCER_VARIABLES[:3],
                            store=Path(tmp) / f"t{len(predictors)}.db", predictors=predictors)
                start = time.perf_counter()
                for i, row in enumerate(rows):
                    twin.observe(row, episode="e", t=float(i))
                into.append(n / (time.perf_counter() - start))
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
        "scored_observations_per_second_median": statistics.median(scored_rates),
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


def bench_llm(backend: LLMBackend, queries: int = 30, k: int = 12) -> dict[str, Any]:
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
    tune_steps: int = 2000,
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
    llm, ridge, knn = LLMPredictor(backend), LocalRidge(), NearestNeighbours()
    for label, r in (("raw", retriever), ("tuned", tuned)):
        errs: dict[str, list[float]] = {"llm": [], "numeric": [], "knn": []}
        for p in test:
            rows = p.rows("cancer-chemo")
            for row, nxt in itertools.pairwise(rows):
                q = Query({"v": row["v"], "c": row["c"]}, {"ca": row["ca"]}, ["v", "c"], schema)
                ex = r.search(q.state, q.action, schema, k=ridge.k)
                for name, pred in (("llm", llm), ("numeric", ridge), ("knn", knn)):
                    m = pred.predict(q, ex[-pred.k :]).mean
                    errs[name].append(float(np.mean((m - [nxt["v"], nxt["c"]]) ** 2)))
        out[label] = {n: float(np.mean(e)) for n, e in errs.items()}
        # the LM's errors are heavy-tailed (a few blunders dominate a mean): medians too
        out[f"{label}_median"] = {n: float(np.median(e)) for n, e in errs.items()}
    for name in ("llm", "numeric", "knn"):
        out[f"{name}_tuned_over_raw"] = out["tuned"][name] / out["raw"][name]
    out["tune_steps"] = tune_steps
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


def bench_history(train: int = 200, test: int = 10, steps: int = 60,
                  seed: int = 0) -> dict[str, Any]:
    """A twin loaded with history as a new user loads it (``observe_many``, then a
    reopened store) and then asked ``predict(state, action)`` without an episode, on new
    patients, with nothing scored live: the combination's one-step MSE against each
    predictor's, and the coverage of the 90% intervals from the first prediction on."""
    train_rows = [
        Observation(f"p{i}", float(t), row)
        for i, patient in enumerate(simulate_patients(train, seed=seed, steps=steps))
        for t, row in enumerate(patient.rows())
    ]
    out: dict[str, Any] = {"train_patients": train, "observations": len(train_rows),
                           "test_patients": test, "seed": seed}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "h.db"
        twin = Twin("h", CANCER_VARIABLES, store=path, predictors=[Persistence(), LocalRidge()])
        start = time.perf_counter()
        twin.observe_many(train_rows)
        out["observe_many_seconds"] = time.perf_counter() - start
        twin.close()
        start = time.perf_counter()
        twin = Twin("h", store=path, predictors=[Persistence(), LocalRidge()])
        out["reopen_seconds"] = time.perf_counter() - start
        errs: dict[str, list[float]] = {}
        inside: list[bool] = []
        for patient in simulate_patients(test, seed=seed + 1000, steps=steps):
            rows = patient.rows()
            for now, nxt in itertools.pairwise(rows):
                p = twin.predict({k: now[k] for k in ("v", "c")},
                                 {k: now[k] for k in ("ca", "ra")})
                for t in p.variables:
                    errs.setdefault("combined", []).append((p.mean[t] - nxt[t]) ** 2)
                    for name, f in p.by_predictor.items():
                        errs.setdefault(name, []).append((f[t] - nxt[t]) ** 2)
                    inside.append(bool(p.upper) and p.lower[t] <= nxt[t] <= p.upper[t])
        twin.close()
    mse = {k: float(np.mean(v)) for k, v in errs.items()}
    best = min((k for k in mse if k != "combined"), key=mse.__getitem__)
    first = inside[: 2 * 20]
    out.update({
        "mse": mse, "best_single": best, "combined_over_best": mse["combined"] / mse[best],
        "coverage": float(np.mean(inside)), "coverage_first_20_predictions": float(np.mean(first)),
        "n_intervals": len(inside),
    })
    return out


def _assimilate(readings: np.ndarray, valves: np.ndarray, predictors: list[Any],
                using: list[str] | None, sensor: float) -> tuple[np.ndarray, float]:
    twin = Twin("tank", TANK_VARIABLES, predictors=predictors)
    kf = Assimilator(twin, {"level": Noise(sensor, 0.05)}, using=using)
    start = time.perf_counter()
    fused = [kf.update(twin.observe({"level": max(z, 0.0), "valve": u}))["level"].mean
             for z, u in zip(readings, valves, strict=True)]
    return np.array(fused), (time.perf_counter() - start) / len(readings)


def bench_assimilation(backend: LLMBackend, seeds: int = 5, steps: int = 200,
                       llm_steps: int = 60, sensor: float = 1.0,
                       plot: Path | None = None) -> dict[str, Any]:
    """The noisy tank: RMSE to the truth of the raw readings, of the state fused with a
    random-walk prior (persistence), with the twin's numeric forecast, and (one seed,
    ``llm_steps`` readings) with the language model in the forecast too."""
    truth, valves = simulate_tank(steps)
    settle = 40

    def rmse(x: np.ndarray, n: int = steps) -> float:
        return float(np.sqrt(np.mean((x[settle:n] - truth[settle:n]) ** 2)))

    rows: dict[str, list[float]] = {"raw": [], "random_walk": [], "twin": []}
    ms: list[float] = []
    fused_twin = readings = np.empty(0)
    for seed in range(seeds):
        readings = truth + np.random.default_rng(seed).normal(0, sensor, steps)
        walk, _ = _assimilate(readings, valves, [Persistence()], None, sensor)
        fused_twin, dt = _assimilate(readings, valves, [Persistence(), LocalRidge()], None,
                                     sensor)
        rows["raw"].append(rmse(readings))
        rows["random_walk"].append(rmse(walk))
        rows["twin"].append(rmse(fused_twin))
        ms.append(dt * 1000)
    n = min(llm_steps, steps)
    with_lm, dt_lm = _assimilate(readings[:n], valves[:n],
                                 [Persistence(), LocalRidge(), LLMPredictor(backend)], None,
                                 sensor)
    out: dict[str, Any] = {
        "sensor_sd": sensor, "steps": steps, "seeds": seeds, "settle": settle,
        "rmse_median": {k: statistics.median(v) for k, v in rows.items()},
        "twin_over_raw": statistics.median(t / r for t, r in zip(rows["twin"], rows["raw"],
                                                                 strict=True)),
        "random_walk_over_raw": statistics.median(
            w / r for w, r in zip(rows["random_walk"], rows["raw"], strict=True)),
        "ms_per_reading_numeric_median": statistics.median(ms),
        "llm_steps": n,
        "llm_rmse": {"raw": rmse(readings, n), "twin_with_llm": rmse(with_lm, n),
                     "twin_numeric": rmse(fused_twin, n)},
        "s_per_reading_with_llm": dt_lm,
    }
    if plot is not None:
        from lmtwin.plots import assimilation

        out["plot"] = str(assimilation(truth, readings, fused_twin, plot))
    return out


STEPS = ("observe", "llm", "stream", "retrieval", "assimilation", "history")


def run(backend: LLMBackend, quick: bool = False, out: Path | None = None,
        only: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark's steps (``only`` some of them, merged into an earlier
    ``engine.json`` in ``out``) and write ``engine.json`` and ``engine.md``."""
    steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("observe", lambda: bench_observe(2000 if quick else 5000, 3)),
        ("llm", lambda: bench_llm(backend, 15 if quick else 40)),
        ("stream", lambda: bench_stream(backend, 4 if quick else 6)),
        (
            "retrieval",
            lambda: bench_retrieval(
                backend, 15 if quick else 30, 1 if quick else 2, 1000 if quick else 2000
            ),
        ),
        ("assimilation", lambda: bench_assimilation(
            backend, 3 if quick else 5, llm_steps=30 if quick else 60,
            plot=None if out is None else out / "assimilation.png")),
        ("history", lambda: bench_history(100 if quick else 200, 5 if quick else 10)),
    ]
    results: dict[str, Any] = {}
    if only:
        unknown = set(only) - set(STEPS)
        if unknown:
            raise ValueError(f"unknown steps {sorted(unknown)}: choose from {list(STEPS)}")
        steps = [(n, fn) for n, fn in steps if n in only]
        if out is not None and (out / "engine.json").exists():
            results = json.loads((out / "engine.json").read_text())
    results.update({"date": time.strftime("%Y-%m-%d %H:%M"), "quick": quick})
    if only:
        results["last_steps"] = list(only)
    with Progress() as bar:
        task = bar.add_task("engine benchmark", total=len(steps))
        for name, fn in steps:
            bar.update(task, description=f"engine benchmark: {name}")
            results[name] = {**fn(), "measured": time.strftime("%Y-%m-%d %H:%M"),
                             "quick": quick}
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
    """engine.md: a table of the targets measured, then the details of each step."""
    o, llm, s, ret, a, h = (r.get(k) for k in STEPS)
    mode = "quick" if r["quick"] else "full"
    rows = []
    if o:
        rows.append(
            f"| observe into SQLite (1 commit each) | {o['observations_per_second_median']:.0f}/s "
            f"({o['ratio_to_raw_sqlite']:.2f}x raw sqlite3 at "
            f"{o['raw_sqlite_per_second_median']:.0f}/s) | >= 2000/s |")
        if "scored_observations_per_second_median" in o:
            rows.append(
                "| observe, each transition scored by the numeric learner | "
                f"{o['scored_observations_per_second_median']:.0f}/s | (the cost of scoring) |")
    if h:
        rows += [
            f"| history-trained combination / best single ({h['best_single']}), "
            f"{h['train_patients']} patients loaded, {h['test_patients']} new | "
            f"{h['combined_over_best']:.3f} | <= 1.05 |",
            f"| history-trained 90% coverage: all / first 20 predictions | "
            f"{h['coverage']:.1%} / {h['coverage_first_20_predictions']:.1%} "
            f"over {h['n_intervals']} | 85-95% |"]
    if llm:
        rows += [
            f"| LM prompt tokens, 3 variables, {llm['k']} examples | median "
            f"{llm['prompt_tokens_median']:.0f}, max {llm['prompt_tokens_max']} | <= 300 |",
            f"| LM predictions per second | {llm['predictions_per_second']:.2f} "
            f"({llm['seconds_per_prediction_median']:.2f} s each) | >= 1 |"]
    if s:
        rows += [
            f"| combination / best single ({s['best_single']}), relative MSE | "
            f"{s['combined_over_best']:.3f} | <= 1.0 |",
            f"| combination / persistence, first 20 scored values | "
            f"{s['first_20_scores_combined_over_persistence']:.3f} | <= 1.0 |",
            f"| 90% conformal interval coverage | {s['coverage']:.1%} over {s['n_intervals']} | "
            "85-95% |"]
    if ret:
        median = (f"; median squared error "
                  f"{ret['tuned_median']['llm'] / ret['raw_median']['llm']:.3f}"
                  if "raw_median" in ret else "")
        rows += [
            f"| LM one-step MSE, tuned / raw retrieval | {ret['llm_tuned_over_raw']:.3f} "
            f"(raw {ret['raw']['llm']:.4g}, tuned {ret['tuned']['llm']:.4g}){median} | < 1.0 |",
            f"| numeric one-step MSE, tuned / raw retrieval | "
            f"{ret['tuned']['numeric'] / ret['raw']['numeric']:.3f} | < 1.0 |"]
    if a:
        rows.append(
            f"| assimilation: fused / raw RMSE to the truth, noisy tank | "
            f"{a['twin_over_raw']:.3f} (random-walk prior {a['random_walk_over_raw']:.3f}) "
            "| < 1.0 |")
    lines = [
        "# Engine benchmark",
        "",
        f"Run {r['date']} ({mode}), `lmtwin bench engine{' --quick' if r['quick'] else ''}`"
        + (f", backend `{llm['backend']}`" if llm else "") + ", 2 threads. Medians."
        + (f" Last run: steps {', '.join(r['last_steps'])}; the others are from an earlier "
           "run." if r.get("last_steps") else ""),
        "",
        "| target | measured | goal |",
        "|---|---|---|",
        *rows,
        "",
    ]
    if ret:
        lines += [
            f"One-step MSE with raw / tuned retrieval: numeric (ridge, 64 examples) "
            f"{ret['raw']['numeric']:.4g} / {ret['tuned']['numeric']:.4g}, kNN (5) "
            f"{ret['raw'].get('knn', float('nan')):.4g} / "
            f"{ret['tuned'].get('knn', float('nan')):.4g}. Encoder tuning took "
            f"{ret['tune_seconds']:.1f} s ({ret.get('tune_steps', 300)} steps) on "
            f"{ret['train_transitions']} transitions."
            + (" Median squared error, raw / tuned: " + ", ".join(
                f"{n} {ret['raw_median'][n]:.3g} / {ret['tuned_median'][n]:.3g}"
                for n in ret["raw_median"]) + "." if "raw_median" in ret else ""),
            "",
        ]
    if s:
        names = list(next(iter(s["mse"].values())))
        lines += [
            "Per-predictor MSE on the demo stream (raw units):",
            "",
            "| predictor | " + " | ".join(names) + " |",
            "|---|" + "---|" * len(names),
            *[f"| {n} | " + " | ".join(f"{v:.4g}" for v in m.values()) + " |"
              for n, m in s["mse"].items()],
            "",
        ]
    if h:
        lines += [
            f"History (step `history`): {h['observations']} observations of "
            f"{h['train_patients']} cancer patients through `observe_many` "
            f"({h['observe_many_seconds']:.1f} s, scoring the last 1,000 transitions "
            f"prequentially), the store reopened ({h['reopen_seconds']:.1f} s), then "
            f"`predict(state, action)` on {h['test_patients']} new patients with nothing "
            "scored live. One-step MSE: "
            + ", ".join(f"{k} {v:.4g}" for k, v in h["mse"].items()) + ".",
            "",
        ]
    if a:
        m, lm = a["rmse_median"], a["llm_rmse"]
        lines += [
            f"Assimilation on the noisy tank (sensor sd {a['sensor_sd']:g} cm, {a['steps']} "
            f"readings, {a['seeds']} noise seeds, RMSE after reading {a['settle']}; medians): "
            f"raw {m['raw']:.3f}, fused with a random-walk prior {m['random_walk']:.3f}, fused "
            f"with the twin's numeric forecast {m['twin']:.3f}, at "
            f"{a['ms_per_reading_numeric_median']:.2f} ms a reading. With the language model "
            f"in the forecast too ({a['llm_steps']} readings, one seed): raw {lm['raw']:.3f}, "
            f"twin with LM {lm['twin_with_llm']:.3f}, numeric twin {lm['twin_numeric']:.3f}, "
            f"{a['s_per_reading_with_llm']:.2f} s a reading."
            + (" Plot: `assimilation.png`." if a.get("plot") else ""),
            "",
        ]
    return "\n".join(lines)
