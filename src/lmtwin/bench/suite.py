"""``lmtwin bench tasks``: the literature's tasks, baselines and lmtwin variants.

For each task and seed: baselines are fitted on the train split; a twin observes the
train split, streams part of the validation split (predicting before observing, so its
combination weights and conformal intervals learn) and then the test split. Every
method is scored on the same test trajectories with the protocol's teacher-forced
one-step MSE, plus rollouts, normalised MSE, intervals, time and tokens.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmtwin.bench import baselines as bl
from lmtwin.bench.harness import (
    PredictorMethod,
    Record,
    TwinMethod,
    mean_ci,
    metrics,
    rollout,
    stream,
)
from lmtwin.bench.scenarios import SCENARIOS, ScenarioSizes, run_scenario
from lmtwin.bench.tasks import DATA_DIR, TASKS, Sizes, Task, load_task
from lmtwin.errors import LmtwinError
from lmtwin.llm.base import LLMBackend
from lmtwin.predictors import LLMPredictor, LocalRidge, Persistence, Predictor
from lmtwin.retrieval import Retriever
from lmtwin.twin import Twin
from lmtwin.uncertainty import Calibrator

BASELINES = ("persistence", "knn", "ridge", "sindy", "dynode", "gru", "transformer", "llmtime")
LMTWIN = ("raw", "tuned")


@dataclass
class Config:
    """A run's settings; ``Config.quick()`` is what ``--quick`` uses."""

    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    seeds: list[int] = field(default_factory=lambda: list(range(10, 20)))
    lm_seeds: int = 10  # how many of the seeds run the language-model methods
    sizes: Sizes = field(default_factory=Sizes.full)
    baselines: list[str] = field(default_factory=lambda: list(BASELINES))
    retrievals: list[str] = field(default_factory=lambda: list(LMTWIN))
    k: int = 16
    train_steps: dict[str, int] = field(default_factory=lambda: {
        "dynode": 3000, "gru": 1500, "transformer": 1500})
    tune_steps: int = 1000
    min_residuals: int = 20
    lm_rollout: bool = True
    tuned_tasks: list[str] | None = None  # None: tuned retrieval on every task
    scenario_sizes: ScenarioSizes | None = None  # None: by quick
    max_train_transitions: int = 20000
    data_dir: Path = DATA_DIR
    quick: bool = False

    @classmethod
    def quick_run(cls) -> Config:
        return cls(seeds=[10, 11], lm_seeds=1, sizes=Sizes.quick(), k=8,
                   train_steps={"dynode": 150, "gru": 12, "transformer": 40},
                   tune_steps=300, min_residuals=4, lm_rollout=False,
                   tuned_tasks=["cancer"], quick=True)


def make_baseline(name: str, task: Task, seed: int, cfg: Config,
                  backend: LLMBackend | None) -> Predictor:
    steps = cfg.train_steps
    if name == "persistence":
        return Persistence()
    if name == "knn":
        return bl.KNN()
    if name == "ridge":
        return bl.Ridge()
    if name == "sindy":
        return bl.SINDy(threshold=1e-5 if task.name == "covid" else 0.02)
    if name == "dynode":
        return bl.DyNODE(steps=steps["dynode"], seed=seed)
    if name == "gru":
        return bl.GRU(steps=steps["gru"], seed=seed)
    if name == "transformer":
        return bl.Transformer(steps=steps["transformer"], seed=seed)
    if name == "llmtime":
        if backend is None:
            raise LmtwinError("llmtime needs a language model; run without --model none")
        return bl.LLMTime(backend)
    raise LmtwinError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_twin(task: Task, backend: LLMBackend | None, cfg: Config, seed: int,
               retrieval: str) -> Twin:
    """A twin that has observed the train split (tuned: its encoder fine-tuned on it)."""
    predictors: list[Predictor] = [Persistence(), LocalRidge()]
    if backend is not None:
        llm = LLMPredictor(backend)
        llm.k = cfg.k  # the prompt's examples
        predictors.append(llm)
    twin = Twin(f"{task.name}-{seed}", variables=task.variables, predictors=predictors,
                retriever=Retriever(k=cfg.k), seed=seed)
    twin.calibrator = Calibrator(min_residuals=cfg.min_residuals)
    twin.observe_many(task.observations(task.train, "train"))
    if retrieval == "tuned":
        from lmtwin.retrieval.set_encoder import SetEncoder

        twin.retriever.encoder = SetEncoder(seed=seed)
        twin.tune(steps=cfg.tune_steps)
    return twin


def run_twin(task: Task, test: list[Any], backend: LLMBackend | None, cfg: Config, seed: int,
             retrieval: str) -> tuple[dict[str, Record], float, dict[str, float]]:
    """Stream the validation head and the test split through a fresh twin; returns the
    records, the seconds taken and the final combination weights."""
    start = time.perf_counter()
    twin = build_twin(task, backend, cfg, seed, retrieval)
    method = TwinMethod(twin, task, retrieval)
    val = [t.head(min(cfg.sizes.val_steps, t.steps)) for t in task.val[:1]]
    stream(method, task, val, "val")  # calibration: weights and intervals learn
    records = {n: Record() for n in method.outputs}
    for i, traj in enumerate(test):
        # free-running rollouts first, from what the twin knew before this trajectory
        for out in method.outputs:
            name = out.split("[")[0].removeprefix("lmtwin-")
            if name in ("lmtwin", "llm") and backend is not None and not cfg.lm_rollout:
                continue
            if name == "lmtwin":
                records[out].rollout.append(_twin_rollout(twin, task, traj))
                continue
            p = method.rollout_predictor(name)
            if p is not None:
                records[out].rollout.append(
                    rollout(p, task, traj, _searcher(twin, p.k), records[out]))
        stream(method, task, [traj], f"test{i}-", records)
    weights = twin.hedge.weights([p.name for p in twin.predictors])
    twin.store.close()  # not twin.close(): that closes the shared language model too
    return records, time.perf_counter() - start, weights


def _searcher(twin: Twin, k: int) -> Callable[[Any], list[Any]]:
    """The twin's retrieval for a predictor that wants ``k`` examples."""
    def search(q: Any) -> list[Any]:
        return twin.retriever.search(q.state, q.action, twin.schema, k=k) if k else []
    return search


def _twin_rollout(twin: Twin, task: Task, traj: Any) -> np.ndarray:
    out = np.empty_like(traj.states)
    out[0] = traj.states[0]
    for t in range(traj.steps):
        state = dict(zip(task.states, map(float, out[t]), strict=True))
        action = dict(zip(task.actions, map(float, traj.actions[t]), strict=True))
        pred = twin.predict({**state, **action})
        out[t + 1] = np.clip([pred.mean[s] for s in task.states], 0.0, 1e12)
    return out


def _first(rec: Record) -> dict[str, Any]:
    """The first test trajectory of a record, for the report's plots."""
    def arr(x: list[np.ndarray]) -> list[Any] | None:
        return np.nan_to_num(x[0], nan=np.nan).tolist() if x else None
    return {"pred": arr(rec.pred), "lower": arr(rec.lower), "upper": arr(rec.upper),
            "rollout": arr(rec.rollout)}


def run_task(name: str, cfg: Config, backend: LLMBackend | None,
             tick: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """All methods on one task over the configured seeds. A baseline that cannot run
    (a missing optional dependency) is reported and skipped; the others still run."""
    per_seed: dict[str, list[dict[str, Any]]] = {}
    errors: dict[str, str] = {}
    fit_seconds: dict[str, list[float]] = {}
    weights: dict[str, list[dict[str, float]]] = {}
    plot: dict[str, Any] = {}
    task: Task | None = None
    reused: list[str] = []
    for si, seed in enumerate(cfg.seeds):
        task = load_task(name, seed, cfg.sizes, cfg.data_dir)
        test = task.test_set(cfg.sizes)
        if si == 0:
            plot = {"states": task.states, "truth": test[0].states.tolist(), "methods": {}}
        variance = np.concatenate([t.states for t in task.train + task.val + task.test]).var(0)
        train = task.transitions(task.train)[: cfg.max_train_transitions]
        lm_seed = si < cfg.lm_seeds
        for b in cfg.baselines:
            if b in errors or (b == "llmtime" and (not lm_seed or (task.deterministic and si))):
                continue
            tick(f"{name} seed {seed}: {b}")
            try:
                p = make_baseline(b, task, seed, cfg, backend)
                fit = getattr(p, "fit", None)
                if fit is not None:
                    fit(train)
                    fit_seconds.setdefault(b, []).append(getattr(p, "fit_seconds_", 0.0))
                rec = stream(PredictorMethod(p, task), task, test, "test")[p.name]
                rec.rollout = [rollout(p, task, traj, record=rec) for traj in test]
            except LmtwinError as exc:
                errors[b] = f"{type(exc).__name__}: {exc}"
                continue
            per_seed.setdefault(b, []).append(metrics(rec, variance, task.mse_scale))
            if si == 0:
                plot["methods"][b] = _first(rec)
        for r in cfg.retrievals:
            key = f"lmtwin[{r}]"
            if key in errors or (not lm_seed and backend is not None):
                continue
            if r == "tuned" and cfg.tuned_tasks is not None and name not in cfg.tuned_tasks:
                continue
            if task.deterministic and si > 0 and r == "raw":
                # the same data, greedy decoding, raw retrieval: the same numbers
                reused.append(f"{key} seed {seed}")
                for out in [k for k in per_seed if k.endswith(f"[{r}]")]:
                    per_seed[out].append(dict(per_seed[out][0]))
                continue
            tick(f"{name} seed {seed}: lmtwin, {r} retrieval")
            try:
                recs, secs, w = run_twin(task, test, backend, cfg, seed, r)
            except LmtwinError as exc:
                errors[key] = f"{type(exc).__name__}: {exc}"
                continue
            fit_seconds.setdefault(key, []).append(secs)
            weights.setdefault(r, []).append(w)
            for out, rec in recs.items():
                per_seed.setdefault(out, []).append(metrics(rec, variance, task.mse_scale))
                if si == 0:
                    plot["methods"][out] = _first(rec)
    assert task is not None
    result = summarise(name, task, per_seed, errors, fit_seconds, weights)
    result.update(reused_deterministic=reused, peak_rss_mb=_peak_mb(), plot=plot)
    return result


def summarise(name: str, task: Task, per_seed: dict[str, list[dict[str, Any]]],
              errors: dict[str, str], fit_seconds: dict[str, list[float]],
              weights: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    methods: dict[str, Any] = {}
    for m, runs in per_seed.items():
        row: dict[str, Any] = {"seeds": len(runs)}
        for key in ("mse", "nmse", "rollout_mse", "rollout_nmse", "coverage", "width_over_sd",
                    "seconds_per_prediction", "tokens_per_prediction"):
            vals = [r[key] for r in runs if key in r]
            if vals:
                row[key] = mean_ci(vals)
        row["failures"] = sum(r["failures"] for r in runs)
        row["rollout_failures"] = sum(r.get("rollout_failures", 0) for r in runs)
        row["predictions"] = sum(r["predictions"] for r in runs)
        base = m.split("[")[0]
        if base in fit_seconds:
            row["fit_seconds"] = float(np.mean(fit_seconds[base]))
        elif m.startswith("lmtwin") and f"lmtwin[{m.split('[')[-1]}" in fit_seconds:
            row["run_seconds"] = float(np.mean(fit_seconds[f"lmtwin[{m.split('[')[-1]}"]))
        methods[m] = row
    baseline_mse = {m: r["mse"]["mean"] for m, r in methods.items()
                    if not m.startswith("lmtwin") and "mse" in r}
    best = min(baseline_mse, key=lambda m: baseline_mse[m]) if baseline_mse else None
    ratios = {}
    for m, r in methods.items():
        if m.startswith("lmtwin[") and best is not None and baseline_mse[best] > 0:
            ratios[m] = r["mse"]["mean"] / baseline_mse[best]
    lm_share = {r: float(np.mean([w.get("llm", 0.0) for w in ws])) for r, ws in weights.items()}
    return {"task": name, "methods": methods, "errors": errors, "best_baseline": best,
            "ratio_to_best_baseline": ratios, "lm_weight_share": lm_share,
            "info": task.info, "mse_scale": task.mse_scale, "deterministic": task.deterministic}


FULL_PROTOCOL_NOTE = (
    "`lmtwin bench tasks` without `--quick` runs the protocol as written: seeds 10..19, "
    "1000 patients per cancer split, 24 COVID trajectories per split of 1,000,000 people, "
    "whole test splits, the language-model methods on every seed, rollouts of every "
    "method. Expected duration on this 2-core machine: the embedded language model "
    "answers about one call per 0.5-5 seconds (depending on the load and the number of "
    "variables), and the cancer tasks alone need 60 test steps x 1000 patients x 3 "
    "variants x 10 seeds = 1.8 million steps for each of the two twins and LLMTime, "
    "about 5 million language-model calls: two months or more. The baselines' full "
    "training adds hours, and covasim at 10^6 people needs about 1 GB and a minute or two "
    "per trajectory (72 per seed). The full protocol is meant for a GPU server behind an "
    "OpenAI-compatible backend; on this machine `--quick` is what runs (9 minutes with "
    "the machine lightly loaded; about three times longer while other heavy jobs share "
    "its 2 cores, since every language-model call slows down).")


def run(cfg: Config, backend: LLMBackend | None, scenarios: Sequence[str], out: Path | None,
        command: str, backend_name: str = "none") -> dict[str, Any]:
    """Run the tasks and the scenarios, then write results.json, report.md and PNGs."""
    import warnings

    from rich.progress import Progress

    _one_torch_thread()
    # crepes warns on every interval while a twin has few residuals; the report says so
    warnings.filterwarnings("ignore", message="the no. of calibration examples")
    started = time.perf_counter()
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "command": command,
        "backend": backend_name, "config": _config_dict(cfg), "tasks": {}, "scenarios": {},
        "full_protocol_note": FULL_PROTOCOL_NOTE}
    ssizes = cfg.scenario_sizes or (ScenarioSizes.quick() if cfg.quick else ScenarioSizes())
    results["scenario_sizes"] = ssizes.__dict__
    with Progress() as bar:
        job = bar.add_task("tasks", total=len(cfg.tasks) + len(scenarios))
        for name in cfg.tasks:
            bar.update(job, description=f"task {name}")
            def tick(text: str) -> None:
                bar.update(job, description=text)
                bar.console.print(f"{time.perf_counter() - started:6.0f} s  {text}")

            try:
                results["tasks"][name] = run_task(name, cfg, backend, tick)
            except LmtwinError as exc:
                # a task that cannot run is reported; the others still run
                results["tasks"][name] = {"error": f"{type(exc).__name__}: {exc}"}
                bar.console.print(f"[red]task {name} not run:[/red] {exc}")
            bar.advance(job)
        for name in scenarios:
            tick(f"scenario {name}")
            if name not in SCENARIOS:
                results["scenarios"][name] = {
                    "error": f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}"}
            else:
                try:
                    results["scenarios"][name] = run_scenario(
                        name, backend, ssizes, seed=cfg.seeds[0], k=cfg.k)
                except LmtwinError as exc:
                    results["scenarios"][name] = {"error": f"{type(exc).__name__}: {exc}"}
            bar.advance(job)
    results["seconds"] = time.perf_counter() - started
    results["peak_rss_mb"] = _peak_mb()
    if out is not None:
        write(results, out)
    return results


def _one_torch_thread() -> None:
    """Train the small baselines on one thread: torch's thread pool and llama.cpp's would
    otherwise fight over the 2 shared cores (the language model keeps its 2 threads)."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


def rewrite(out: Path) -> list[Path]:
    """Render report.md and the PNGs again from an existing results.json."""
    import json

    results = json.loads((out / "results.json").read_text())
    results["full_protocol_note"] = FULL_PROTOCOL_NOTE
    return write(results, out)


def write(results: dict[str, Any], out: Path) -> list[Path]:
    import json

    from lmtwin.bench import report

    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "results.json", out / "report.md"]
    paths[0].write_text(json.dumps(results, indent=1, default=_json_default))
    paths[1].write_text(report.markdown(results))
    for name, r in results["tasks"].items():
        if "plot" in r and r["plot"].get("methods"):
            paths.append(report.plot_task(r, out / f"{name}.png"))
    if any("curves" in s for s in results["scenarios"].values()):
        paths.append(report.plot_scenarios(results["scenarios"], out / "scenarios.png"))
    return paths


def _json_default(x: Any) -> Any:
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON-serialisable: {type(x)}")


def _config_dict(cfg: Config) -> dict[str, Any]:
    d = dict(cfg.__dict__)
    d["sizes"] = dict(cfg.sizes.__dict__)
    d["scenario_sizes"] = dict(cfg.scenario_sizes.__dict__) if cfg.scenario_sizes else None
    d["data_dir"] = str(cfg.data_dir)
    return d
