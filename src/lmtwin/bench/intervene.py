"""``lmtwin bench intervene``: rollout speed, closed-loop control scored on the true
simulators, time-to-threshold calibration, and (from ``bench.alerts``) alert detection.

Each step writes its own section (``OUT/intervene/<step>.md``); ``OUT/intervene.md``
joins the sections that exist, so a step can be rerun alone (``--steps``).
Settings were chosen on patients and seeds the report does not score (tuning seeds
2000+, report seeds 1000+).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmtwin import LocalRidge, Persistence, Twin
from lmtwin.intervene import Constraints, Objective
from lmtwin.intervene.optimise import MPC, search
from lmtwin.intervene.timeto import crossing_times
from lmtwin.retrieval import Retriever
from lmtwin.store.memory import MemoryStore
from lmtwin.systems.cancer import CANCER_VARIABLES, cancer_step, simulate_patients
from lmtwin.systems.cancer_control import CancerSystem, ProtocolPolicy
from lmtwin.systems.tank import TANK_VARIABLES, tank_step
from lmtwin.types import Observation

STEPS = ("rollouts", "closed-loop", "time-to", "alerts")
Progress = Callable[[str, int, int], None]


def _quiet(what: str, done: int, total: int) -> None:
    pass


# --- twins -------------------------------------------------------------------------------
def cancer_twin(patients: int, seed: int = 1, steps: int = 60) -> Twin:
    """A twin of ``patients`` protocol-treated patients (persistence and the numeric
    learner), loaded through ``observe_many``."""
    twin = Twin("cancer", variables=CANCER_VARIABLES, predictors=[Persistence(), LocalRidge()],
                store=MemoryStore(), retriever=Retriever())
    rows = [Observation(f"p{i}", float(t), row)
            for i, p in enumerate(simulate_patients(patients, seed=seed, steps=steps))
            for t, row in enumerate(p.rows())]
    for lo in range(0, len(rows), 20_000):
        twin.observe_many(rows[lo : lo + 20_000])
    return twin


def tank_twin(episodes: int, steps: int, noise: float, seed: int) -> Twin:
    """A twin of a noisy tank driven by random valve settings held for a few steps."""
    rng = np.random.default_rng(seed)
    twin = Twin("tank", variables=TANK_VARIABLES, predictors=[Persistence(), LocalRidge()],
                store=MemoryStore(), retriever=Retriever())
    rows = []
    for e in range(episodes):
        level = rng.uniform(0, 45)
        valve = 0.0
        for t in range(steps):
            if t % int(rng.integers(2, 8)) == 0:
                valve = float(rng.uniform(0, 1))
            rows.append(Observation(f"e{e}", float(t), {"level": float(level), "valve": valve}))
            level = float(tank_step(np.array(level), np.array(valve), noise=noise, rng=rng))
    twin.observe_many(rows)
    return twin


# --- statistics --------------------------------------------------------------------------
def mean_ci(x: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    """Mean and 95% t-interval."""
    from scipy import stats

    a = np.asarray(x, dtype=float)
    m = float(a.mean())
    if len(a) < 2:
        return m, m, m
    half = float(stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / np.sqrt(len(a)))
    return m, m - half, m + half


def ratio_ci(a: np.ndarray, b: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """mean(a) / mean(b) with a 95% paired bootstrap interval."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(len(a), size=(2000, len(a)))
    boots = a[idx].mean(axis=1) / b[idx].mean(axis=1)
    return float(a.mean() / b.mean()), float(np.quantile(boots, 0.025)), float(
        np.quantile(boots, 0.975))


# --- rollouts ----------------------------------------------------------------------------
ROLLOUT_STATE = {"v": 400.0, "c": 2.0}


def rollout_plan(horizon: int) -> list[dict[str, float]]:
    """Chemo every third day, radio every fifth: the plan the rollout bench runs."""
    return [{"ca": 5.0 if t % 3 == 0 else 0.0, "ra": 2.0 if t % 5 == 0 else 0.0}
            for t in range(horizon)]


def _timed(twin: Twin, plan: list[dict[str, float]], n_paths: int, repeats: int,
           progress: Progress, what: str, starts: Any = None) -> tuple[list[float], np.ndarray]:
    """Seconds of each batched rollout and the last one's paths: ``n_paths`` from
    ``ROLLOUT_STATE``, or one path from each of ``starts``."""
    twin.simulate(ROLLOUT_STATE, plan[:2], n_paths=10, seed=0)  # warm: arrays, indexes
    took = []
    for r in range(repeats):
        progress(f"rollouts: {what}", r, repeats)
        t0 = time.perf_counter()
        sim = (twin.simulate(ROLLOUT_STATE, plan, n_paths=n_paths, seed=r) if starts is None
               else twin.simulate(starts, plan, seed=r))
        took.append(time.perf_counter() - t0)
    return took, sim.paths


def _per_call(twin: Twin, plan: list[dict[str, float]], paths: int, repeats: int,
              progress: Progress) -> list[float]:
    """Seconds of ``paths`` paths through one ``Twin.predict`` per path-step (a sample
    of each prediction fed back), as simulate did before batching."""
    rng = np.random.default_rng(0)
    took = []
    for r in range(repeats):
        progress("rollouts: per call", r, repeats)
        t0 = time.perf_counter()
        for _ in range(paths):
            cur = dict(ROLLOUT_STATE)
            for step in plan:
                p = twin.predict(cur, step)
                row = p.samples[rng.integers(len(p.samples))]
                cur.update({v: max(0.0, float(x)) for v, x in zip(p.variables, row,
                                                                   strict=True)})
        took.append(time.perf_counter() - t0)
    return took


def _held_out_rows(patients: int, rows: int, seed: int = 2) -> dict[str, np.ndarray]:
    """``rows`` transitions of protocol patients the twin never saw (seed 2)."""
    cohort = simulate_patients(patients, seed=seed, steps=60)
    v = np.concatenate([p.v[:-1] for p in cohort])
    c = np.concatenate([p.c[:-1] for p in cohort])
    out = {"v": v, "c": c, "ca": np.concatenate([p.ca for p in cohort]),
           "ra": np.concatenate([p.ra for p in cohort]),
           "v1": np.concatenate([p.v[1:] for p in cohort]),
           "c1": np.concatenate([p.c[1:] for p in cohort])}
    pick = np.random.default_rng(seed).choice(len(v), size=min(rows, len(v)), replace=False)
    return {k: a[pick] for k, a in out.items()}


def _one_step(twin: Twin, rows: dict[str, np.ndarray]) -> np.ndarray:
    """The batched mean forecast (v, c) of every held-out row: one rollout step, one
    start state per path."""
    from lmtwin.intervene import rollout

    plans = np.column_stack([rows["ca"], rows["ra"]])[:, None, :]
    with twin._lock:
        out = rollout(twin, {"v": rows["v"], "c": rows["c"]}, ["ca", "ra"], plans, None)
    return out.paths[:, 1]


def _swap_index(twin: Twin, index: Any) -> Retriever:
    """The twin's transitions under another index kind (the twin keeps its own)."""
    other = Retriever(index=index)
    for t in twin.retriever.transitions:
        other.add(t)
    return other


def measure_rollouts(patients: int, n_paths: int, horizon: int, repeats: int,
                     held_out: int, call_paths: int = 10,
                     progress: Progress = _quiet) -> dict[str, Any]:
    """Rollout speed (batched with the twin's own index and with last session's faiss
    IVF; per call) and accuracy (the true path; one-step errors on held-out rows with
    each index against exact search), all in one run."""
    import os

    started = time.perf_counter()
    progress("rollouts: loading the twin", 0, 1)
    twin = cancer_twin(patients)
    load_s = time.perf_counter() - started
    plan = rollout_plan(horizon)
    load_before = os.getloadavg()
    batch_s, paths = _timed(twin, plan, n_paths, repeats, progress, "batched")
    call_s = _per_call(twin, plan, call_paths, repeats, progress)
    own = twin.retriever
    rows = _held_out_rows(max(1, held_out // 30), held_out)
    # a cohort: one start state per path, the held-out patients' states (spread over
    # the store, their searches visit more of the tree than paths from one state)
    cohort = {"v": rows["v"][:n_paths], "c": rows["c"][:n_paths]}
    cohort_s, _ = _timed(twin, plan, n_paths, repeats, progress, "cohort", cohort)
    # each index over the same transitions with the same encoder fit (a fresh retriever
    # each): only the search differs
    one_step: dict[str, np.ndarray] = {}
    kinds: dict[str, str] = {}
    ivf_s: list[float] = []
    ivf_paths = paths
    try:
        for label, kind in (("auto (the twin's kind)", "auto"), ("faiss IVF", "faiss"),
                            ("exact numpy", "exact")):
            progress(f"rollouts: one-step forecasts, {label}", 0, 1)
            twin.retriever = _swap_index(twin, kind)
            one_step[label] = _one_step(twin, rows)
            kinds[label] = ", ".join(twin.retriever.indexes.values())
            if kind == "faiss":
                ivf_s, ivf_paths = _timed(twin, plan, n_paths, repeats, progress, label)
    finally:
        twin.retriever = own
    load_after = os.getloadavg()
    truth = np.column_stack([rows["v1"], rows["c1"]])
    true_v, true_c = ROLLOUT_STATE["v"], ROLLOUT_STATE["c"]
    for step in plan:
        v1, c1 = cancer_step(true_v, true_c, step["ca"], step["ra"])
        true_v, true_c = float(v1), float(c1)
    rate = n_paths * horizon
    return {
        "patients": patients, "transitions": len(twin.retriever), "load_s": load_s,
        "n_paths": n_paths, "horizon": horizon, "repeats": repeats,
        "batch_s": batch_s, "ivf_s": ivf_s, "call_s": call_s, "call_paths": call_paths,
        "batch_rate": rate / statistics.median(batch_s), "cohort_s": cohort_s,
        "cohort_rate": len(cohort["v"]) * horizon / statistics.median(cohort_s),
        "ivf_rate": rate / statistics.median(ivf_s),
        "call_rate": call_paths * horizon / statistics.median(call_s),
        "indexes": twin.retriever.indexes, "compared": kinds,
        "load_before": load_before, "load_after": load_after,
        "v_final": np.quantile(paths[:, -1, 0], [0.05, 0.5, 0.95]),
        "ivf_v_final": np.quantile(ivf_paths[:, -1, 0], [0.05, 0.5, 0.95]),
        "true_v_final": true_v, "held_out": len(truth),
        "mae": {k: np.median(np.abs(f - truth), axis=0) for k, f in one_step.items()},
        "vs_exact": {k: float(np.max(np.abs(f - one_step["exact numpy"])))
                     for k, f in one_step.items()},
        "paths": paths, "twin": twin,
    }


def bench_rollouts(out: Path, quick: bool, progress: Progress) -> tuple[str, dict[str, Any]]:
    res = measure_rollouts(200 if quick else 1000, 1000, 30, 3, 2000, progress=progress)
    twin_index = ", ".join(f"{k}: {v}" for k, v in res["indexes"].items())
    _fan(out / "intervene_fan.png", res.pop("twin"), ROLLOUT_STATE)
    _bars(out / "intervene_speed.png", res["batch_rate"], res["ivf_rate"], res["call_rate"])
    q, qi = res["v_final"], res["ivf_v_final"]
    mae = res["mae"]
    runs = lambda xs: ", ".join(f"{s:.2f}" for s in xs)  # noqa: E731
    lb, la = res["load_before"], res["load_after"]
    md = [
        "## Rollout speed",
        "",
        f"A cancer twin holding {res['transitions']:,} transitions ({res['patients']} "
        f"protocol patients x 60 days; persistence + the numeric learner; loaded in "
        f"{res['load_s']:.0f} s), {res['n_paths']:,} paths x {res['horizon']} steps of a "
        f"chemo/radio plan, median of {res['repeats']} runs, every row measured in this "
        f"run. Load average (1, 5, 15 min) {lb[0]:.1f}, {lb[1]:.1f}, {lb[2]:.1f} at the "
        f"start, {la[0]:.1f}, {la[1]:.1f}, {la[2]:.1f} at the end (2 cores, shared).",
        "",
        "| path | index | path-steps/s | runs (s) |",
        "|---|---|---|---|",
        f"| batched (`Twin.simulate`) | the twin's: exact k-d tree | "
        f"{res['batch_rate']:,.0f} | {runs(res['batch_s'])} |",
        f"| batched, one start state per path ({len(res['cohort_s']) and res['n_paths']:,} "
        f"held-out patients' states) | the twin's | {res['cohort_rate']:,.0f} | "
        f"{runs(res['cohort_s'])} |",
        f"| batched, last session's index | faiss IVF, nprobe 8 | {res['ivf_rate']:,.0f} | "
        f"{runs(res['ivf_s'])} |",
        f"| per call (one `predict` per path-step, {res['call_paths']} paths) | the twin's | "
        f"{res['call_rate']:,.0f} | {runs(res['call_s'])} |",
        "",
        f"Ratio batched / per call: **{res['batch_rate'] / res['call_rate']:.0f}x**; "
        f"target 20,000 path-steps/s: **"
        f"{'met' if res['batch_rate'] >= 20_000 else 'not met'}**. Index: {twin_index} "
        f"(faiss: {res['compared']['faiss IVF']}).",
        "",
        f"Accuracy. Tumour volume after {res['horizon']} days: median {q[1]:.2f} cm3, 90% "
        f"of paths in [{q[0]:.2f}, {q[2]:.2f}] (with faiss IVF: {qi[1]:.2f}, "
        f"[{qi[0]:.2f}, {qi[2]:.2f}]); the true simulator: {res['true_v_final']:.2f}, "
        f"{_band(res['true_v_final'], q)}. "
        f"One-step batched forecasts of {res['held_out']:,} held-out transitions "
        "(patients the twin never saw, one start state per path), median absolute error, "
        "each index over the twin's transitions with the same encoder fit:",
        "",
        "| search | index | v (cm3) | c (mg/m3) | largest difference from exact search |",
        "|---|---|---|---|---|",
        *[f"| {k} | {res['compared'][k]} | {mae[k][0]:.2g} | {mae[k][1]:.2g} | "
          f"{res['vs_exact'][k]:.2g} |" for k in mae],
        "",
        "![speed](intervene_speed.png) ![what-if fan chart](intervene_fan.png)",
        "",
    ]
    res.pop("paths")
    return "\n".join(md), res


def _band(truth: float, q: np.ndarray) -> str:
    """Where the true value lies against the paths' 5-95% band (q: 5%, 50%, 95%)."""
    if q[0] <= truth <= q[2]:
        return "inside the paths' 90% band"
    gap = q[0] - truth if truth < q[0] else truth - q[2]
    return (f"outside the paths' 90% band by {gap:.2f} cm3 ({100 * gap / truth:.2f}% of "
            "the volume: the noise, sampled from one-step residuals, does not cover the "
            "bias that 30 steps compound)")


def _bars(path: Path, batch: float, ivf: float, call: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(["per call", "batched,\nfaiss IVF", "batched,\nk-d tree"], [call, ivf, batch],
           color=["#999", "#8bc", "#2a7"])
    ax.axhline(20_000, ls="--", color="k", lw=1, label="target 20,000")
    ax.set_yscale("log")
    ax.set_ylabel("path-steps / s")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fan(path: Path, twin: Twin, state: dict[str, float]) -> None:
    from lmtwin.intervene.plots import fan_chart

    plans = {"no treatment": [{"ca": 0.0, "ra": 0.0}] * 30,
             "chemo every 3 days": [{"ca": 5.0 if t % 3 == 0 else 0.0, "ra": 0.0}
                                    for t in range(30)],
             "chemo + radio daily": [{"ca": 5.0, "ra": 2.0}] * 30}
    goal = Objective({"v": 1.0}, action_costs={"ca": 1.0, "ra": 1.0})
    cmp = twin.compare(state, plans, horizon=30, n_paths=300, objective=goal, seed=0)
    fan_chart(cmp, "v", path)


# --- closed loop -------------------------------------------------------------------------
@dataclass
class ClosedLoop:
    """Per-case objective of each policy, scored on the true simulator."""

    system: str
    objective: str
    costs: dict[str, np.ndarray]
    example: dict[str, np.ndarray]


CANCER_DAYS = 30
CANCER_COSTS = {"ca": 3.0, "ra": 3.0}  # per mg of chemo, per Gy of radio
CANCER_LIMITS = Constraints(bounds={"ca": (0.0, 5.0), "ra": (0.0, 2.0)})
CANCER_GOAL = Objective({"v": 1.0 / CANCER_DAYS}, action_costs=CANCER_COSTS, aggregate="sum")


def cancer_cost(vs: np.ndarray, ca: np.ndarray, ra: np.ndarray) -> np.ndarray:
    """The stated objective: mean tumour volume over days 1..30 (cm3) plus 3 per mg of
    chemo and 3 per Gy of radio given."""
    return vs[:, 1:].mean(axis=1) + CANCER_COSTS["ca"] * ca.sum(axis=1) + CANCER_COSTS[
        "ra"] * ra.sum(axis=1)


def _true_cancer_plan(v: float, c: float, plans: np.ndarray) -> np.ndarray:
    """Volumes (m, H + 1) of the true system under plans (m, H, 2)."""
    vs = np.empty((len(plans), plans.shape[1] + 1))
    vv, cc = np.full(len(plans), v), np.full(len(plans), c)
    vs[:, 0] = vv
    for t in range(plans.shape[1]):
        vv, cc = cancer_step(vv, cc, plans[:, t, 0], plans[:, t, 1])
        vs[:, t + 1] = vv
    return vs


@dataclass
class Settings:
    """MPC settings. Cancer: chosen on patients 2000-2003 among (horizon, re-plan, block)
    = (10, 5, 2), (15, 5, 3), (10, 3, 2): twin MPC 396, 375, 407 (protocol 451)."""

    horizon: int = 15
    replan_every: int = 5
    block: int = 3
    popsize: int = 10
    iterations: int = 10
    n_paths: int = 4


def _oracle_action(v: float, c: float, s: Settings, seed: int,
                   state: dict[str, Any]) -> dict[str, float]:
    """MPC on the true simulator itself, with the same search and settings."""
    actions = ["ca", "ra"]
    box = np.array([[0.0, 5.0], [0.0, 2.0]])

    def evaluate(plans: np.ndarray, u: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        vs = _true_cancer_plan(v, c, plans)
        cost = vs[:, 1:].sum(axis=1) / CANCER_DAYS + (
            plans * np.array([CANCER_COSTS["ca"], CANCER_COSTS["ra"]])).sum(axis=(1, 2))
        return cost, vs[:, :, None]

    if state.get("plan") is None or state["step"] >= s.replan_every:
        plan, _, _ = search(evaluate, actions, box, s.horizon, CANCER_LIMITS, 1, 1,
                            s.popsize, s.iterations, s.block, seed, noise=False)
        state.update(plan=plan, step=0)
    a = state["plan"][state["step"]]
    state["step"] += 1
    return {"ca": float(a[0]), "ra": float(a[1])}


def run_cancer(twin: Twin, seeds: Sequence[int], s: Settings,
               progress: Progress) -> ClosedLoop:
    costs: dict[str, list[float]] = {}
    example: dict[str, np.ndarray] = {}
    for i, seed in enumerate(seeds):
        progress("closed loop: cancer patients", i, len(seeds))
        runs = _cancer_case(twin, seed, s)
        for name, (vs, ca, ra) in runs.items():
            costs.setdefault(name, []).append(
                float(cancer_cost(vs[None], ca[None], ra[None])[0]))
        if i == 0:
            example = {n: r[0] for n, r in runs.items()}
    return ClosedLoop("cancer", "mean tumour volume over 30 days (cm3) + 3 per mg chemo "
                      "+ 3 per Gy radio", {n: np.array(c) for n, c in costs.items()}, example)


def _cancer_case(twin: Twin, seed: int, s: Settings
                 ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """One held-out patient under every policy, on the true simulator."""
    start = CancerSystem.start(np.random.default_rng(seed))
    runs: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    controller = MPC(twin, CANCER_GOAL, s.horizon, CANCER_LIMITS, s.replan_every,
                     n_paths=s.n_paths, popsize=s.popsize, iterations=s.iterations,
                     block=s.block, seed=seed)
    runs["twin MPC"] = _episode(start, lambda st, t: controller.act(st))
    protocol = ProtocolPolicy()
    protocol.reset(seed)
    runs["protocol"] = _episode(start, lambda st, t: protocol(st))
    runs["no treatment"] = _episode(start, lambda st, t: {"ca": 0.0, "ra": 0.0})
    rng = np.random.default_rng(seed + 1)
    rca = _random_schedule(runs["twin MPC"][1].sum(), 5.0, rng)
    rra = _random_schedule(runs["twin MPC"][2].sum(), 2.0, rng)
    runs["random, same budget"] = _episode(start, lambda st, t: {"ca": rca[t], "ra": rra[t]})
    memory: dict[str, Any] = {}
    runs["oracle MPC"] = _episode(
        start, lambda st, t: _oracle_action(st["v"], st["c"], s, seed, memory))
    return runs


def _episode(start: dict[str, float], policy: Callable[[dict[str, float], int],
                                                        dict[str, float]]
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    v, c = start["v"], start["c"]
    vs, ca, ra = [v], [], []
    for t in range(CANCER_DAYS):
        a = policy({"v": v, "c": c}, t)
        nv, nc = cancer_step(np.array([v]), np.array([c]), a["ca"], a["ra"])
        v, c = float(nv[0]), float(nc[0])
        vs.append(v)
        ca.append(a["ca"])
        ra.append(a["ra"])
    return np.array(vs), np.array(ca), np.array(ra)


def _random_schedule(total: float, dose: float, rng: np.random.Generator) -> list[float]:
    """``total`` spread over random days in doses of ``dose`` (the last one partial)."""
    out = [0.0] * CANCER_DAYS
    left = total
    for day in rng.permutation(CANCER_DAYS):
        if left <= 1e-9:
            break
        out[int(day)] = min(dose, left)
        left -= out[int(day)]
    return out


TANK_SETPOINT, TANK_STEPS, TANK_NOISE = 30.0, 40, 0.5
TANK_GOAL = Objective({"level": 1.0}, setpoints={"level": TANK_SETPOINT},
                      action_costs={"valve": 0.5})


def run_tank(twin: Twin, seeds: Sequence[int], s: Settings, progress: Progress) -> ClosedLoop:
    costs: dict[str, list[float]] = {}
    example: dict[str, np.ndarray] = {}
    for i, seed in enumerate(seeds):
        progress("closed loop: tank episodes", i, len(seeds))
        runs = _tank_case(twin, seed, s)
        for name, (lv, valve) in runs.items():
            costs.setdefault(name, []).append(float(((lv[1:] - TANK_SETPOINT) ** 2).mean()
                                                    + 0.5 * valve.sum()))
        if i == 0:
            example = {n: r[0] for n, r in runs.items()}
    return ClosedLoop("tank", f"mean squared distance of the level to {TANK_SETPOINT:g} cm "
                      "over 40 steps + 0.5 per unit of valve opening",
                      {n: np.array(c) for n, c in costs.items()}, example)


def _tank_case(twin: Twin, seed: int, s: Settings) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """One held-out tank under every policy, on the true (noisy) simulator."""
    level0 = float(np.random.default_rng(seed).uniform(5, 45))
    runs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    controller = MPC(twin, TANK_GOAL, s.horizon, None, s.replan_every, n_paths=s.n_paths,
                     popsize=s.popsize, iterations=s.iterations, block=s.block, seed=seed)
    runs["twin MPC"] = _tank_episode(level0, seed, lambda x: controller.act(
        {"level": x})["valve"])
    runs["thermostat"] = _tank_episode(level0, seed, lambda x: float(x < TANK_SETPOINT))
    runs["no action"] = _tank_episode(level0, seed, lambda x: 0.0)
    rng = np.random.default_rng(seed + 1)
    share = rng.dirichlet(np.ones(TANK_STEPS)) * runs["twin MPC"][1].sum()
    while (share > 1 + 1e-9).any():  # a valve opens at most fully: spread the excess
        extra = (share - 1).clip(0).sum()
        share = share.clip(max=1)
        room = 1 - share
        share += extra * room / room.sum()
    it = iter(share)
    runs["random, same budget"] = _tank_episode(level0, seed, lambda x: float(next(it)))
    memory: dict[str, Any] = {}
    box = np.array([[0.0, 1.0]])

    def oracle(x: float) -> float:
        def evaluate(plans: np.ndarray, u: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
            lv = np.full(len(plans), x)
            cost = np.zeros(len(plans))
            for t in range(plans.shape[1]):
                lv = tank_step(lv, plans[:, t, 0])
                cost += (lv - TANK_SETPOINT) ** 2 / plans.shape[1]
            return cost + 0.5 * plans[:, :, 0].sum(axis=1), lv[:, None, None]

        if memory.get("plan") is None or memory["step"] >= s.replan_every:
            plan, _, _ = search(evaluate, ["valve"], box, s.horizon, Constraints(), 1, 1,
                                s.popsize, s.iterations, s.block, seed, noise=False)
            memory.update(plan=plan, step=0)
        a = float(memory["plan"][memory["step"], 0])
        memory["step"] += 1
        return a

    runs["oracle MPC"] = _tank_episode(level0, seed, oracle)
    return runs


def _tank_episode(level0: float, seed: int, policy: Callable[[float], float]
                  ) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed + 99)  # the same process noise for every policy
    lv, valves = [level0], []
    x = level0
    for _ in range(TANK_STEPS):
        a = min(1.0, max(0.0, policy(x)))
        x = float(tank_step(np.array(x), np.array(a), noise=TANK_NOISE, rng=rng))
        lv.append(x)
        valves.append(a)
    return np.array(lv), np.array(valves)


def bench_closed_loop(out: Path, quick: bool, progress: Progress) -> tuple[str, dict[str, Any]]:
    n_cancer = 12 if quick else 50
    n_tank = 8 if quick else 30
    s = Settings()
    progress("closed loop: cancer twin", 0, 1)
    twin = cancer_twin(200)
    cancer = run_cancer(twin, [1000 + i for i in range(n_cancer)], s, progress)
    tank = run_tank(tank_twin(40, 100, TANK_NOISE, seed=5), [1000 + i for i in range(n_tank)],
                    Settings(horizon=10, replan_every=2, block=2), progress)
    md = ["## Closed loop on the true simulators", "",
          "Every policy is scored by the true simulator (`lmtwin.systems`), never by the "
          "twin; the same patients (tanks and process noise) for every policy. Twin MPC "
          "re-plans on the twin (CMA-ES over plans, batched rollouts with calibrated "
          "noise); the oracle runs the same MPC with the true simulator as its model. "
          f"Settings (horizon {s.horizon}, re-plan every {s.replan_every} days, doses held "
          f"{s.block} days, CMA-ES population {s.popsize} x {s.iterations} iterations, "
          f"{s.n_paths} noise paths) were chosen on patients 2000+, not scored here.", ""]
    res: dict[str, Any] = {}
    for run, baseline in ((cancer, "protocol"), (tank, "thermostat")):
        md += _loop_table(run, baseline)
        res[run.system] = {n: c.tolist() for n, c in run.costs.items()}
        _loop_plot(out / f"intervene_{run.system}.png", run)
        md += [f"![{run.system}](intervene_{run.system}.png)", ""]
    return "\n".join(md), res


def _loop_table(run: ClosedLoop, baseline: str) -> list[str]:
    n = len(next(iter(run.costs.values())))
    twin_c, base_c, oracle_c = run.costs["twin MPC"], run.costs[baseline], run.costs[
        "oracle MPC"]
    lines = [f"### {run.system}: {n} held-out cases", "",
             f"Objective (lower is better): {run.objective}.", "",
             "| policy | mean objective | 95% interval |", "|---|---|---|"]
    for name, c in run.costs.items():
        m, lo, hi = mean_ci(c)
        lines.append(f"| {name} | {m:.2f} | [{lo:.2f}, {hi:.2f}] |")
    d, dlo, dhi = mean_ci(twin_c - base_c)
    r, rlo, rhi = ratio_ci(twin_c, oracle_c)
    beats = dhi < 0
    lines += ["", f"- twin MPC - {baseline} (paired): {d:.2f}, 95% interval [{dlo:.2f}, "
              f"{dhi:.2f}]: {'beats it, the interval excludes 0' if beats else 'not shown'}",
              f"- twin MPC / oracle MPC: {r:.3f}, 95% bootstrap interval [{rlo:.3f}, "
              f"{rhi:.3f}] (target <= 1.2: {'met' if r <= 1.2 else 'not met'})", ""]
    return lines


def _loop_plot(path: Path, run: ClosedLoop) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    names = list(run.costs)
    stats = [mean_ci(run.costs[n]) for n in names]
    a1.barh(names, [m for m, _, _ in stats],
            xerr=[[m - lo for m, lo, _ in stats], [hi - m for m, _, hi in stats]],
            color="#5a8", capsize=3)
    a1.invert_yaxis()
    a1.set_xlabel("objective (mean, 95% interval)")
    a1.set_title(f"{run.system}: scored on the true simulator")
    for name, traj in run.example.items():
        a2.plot(traj, label=name)
    a2.set_xlabel("step")
    a2.set_ylabel("tumour volume (cm3)" if run.system == "cancer" else "level (cm)")
    a2.set_title("first held-out case")
    a2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- time to threshold -------------------------------------------------------------------
def bench_time_to(out: Path, quick: bool, progress: Progress) -> tuple[str, dict[str, Any]]:
    cases = 60 if quick else 200
    horizon = 30
    twin = tank_twin(40, 100, TANK_NOISE, seed=7)
    inside, widths, truth, lows, highs, p_cross, crossed = [], [], [], [], [], [], []
    for i in range(cases):
        progress("time to threshold", i, cases)
        rng = np.random.default_rng(3000 + i)
        level0 = float(rng.uniform(0, 15))
        valve = float(rng.uniform(0.5, 1.0))
        # a threshold part of the way to the steady level 40 * valve: most cases cross,
        # some near the horizon or after it
        threshold = level0 + float(rng.uniform(0.3, 0.9)) * (40 * valve - level0)
        est = twin.time_to("level", threshold, [{"valve": valve}] * horizon, horizon,
                           state={"level": level0}, n_paths=400, seed=i)
        x = np.empty((1, horizon + 1))
        x[0, 0] = level0
        for t in range(horizon):
            x[0, t + 1] = tank_step(x[0, t], valve, noise=TANK_NOISE, rng=rng)
        true_t = float(crossing_times(x, threshold, "up")[0])
        inside.append(est.lower <= true_t <= est.upper)
        truth.append(true_t)
        lows.append(est.lower)
        highs.append(est.upper)
        p_cross.append(est.probability)
        crossed.append(np.isfinite(true_t))
        if np.isfinite(est.upper):
            widths.append(est.upper - est.lower)
    cover = float(np.mean(inside))
    _time_plot(out / "intervene_time_to.png", truth, lows, highs)
    brier = float(np.mean((np.array(p_cross) - np.array(crossed, dtype=float)) ** 2))
    md = ["## Time to threshold", "",
          f"{cases} held-out cases of a noisy tank (process noise {TANK_NOISE} cm a step; the "
          "twin learnt from 40 episodes of random valve settings): from a level in [0, 15] "
          "cm with the valve held at a value in [0.5, 1], when does the level first reach a "
          "threshold 30-90% of the way to its steady level (horizon "
          f"{horizon} steps)? The true simulator, with "
          "its own noise, gives the true crossing time; the twin gives 400 sampled paths.", "",
          f"- 90% interval holds the true crossing time: **{cover:.1%}** of cases "
          f"(target 85-95%: {'met' if 0.85 <= cover <= 0.95 else 'not met'})",
          f"- median interval width: {np.median(widths):.1f} steps; true crossings within "
          f"the horizon: {np.mean(crossed):.0%}; Brier score of the crossing probability: "
          f"{brier:.3f}", "", "![time to threshold](intervene_time_to.png)", ""]
    return "\n".join(md), {"coverage": cover, "cases": cases, "brier": brier}


def _time_plot(path: Path, truth: list[float], lows: list[float], highs: list[float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = np.argsort([t if np.isfinite(t) else 1e9 for t in truth])
    fig, ax = plt.subplots(figsize=(8, 3.4))
    cap = 32.0
    for j, i in enumerate(order):
        lo, hi = lows[i], min(highs[i], cap)
        t = min(truth[i], cap)
        ok = lows[i] <= truth[i] <= highs[i]
        ax.vlines(j, lo, hi, color="#8ab" if ok else "#d66", lw=1.5)
        ax.plot(j, t, ".", color="k", ms=3)
    ax.set_xlabel("case (sorted by true crossing time)")
    ax.set_ylabel("steps to threshold (32 = beyond horizon)")
    ax.set_title("twin's 90% interval (bars; red: missed) and the true crossing (dots)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- alerts (the alerts engineer's bench) ------------------------------------------------
def bench_alerts(out: Path, quick: bool, progress: Progress) -> tuple[str, dict[str, Any]]:
    """The alerts engineer's detection bench (``lmtwin.bench.alerts.section``)."""
    from lmtwin.bench import alerts

    md, figures = alerts.section(out, quick=quick,
                                 progress=lambda what: progress(f"alerts: {what}", 0, 1))
    return md, {"figures": [str(f) for f in figures]}


RUNNERS = {"rollouts": bench_rollouts, "closed-loop": bench_closed_loop,
           "time-to": bench_time_to, "alerts": bench_alerts}


def run(steps: Sequence[str], out: Path, quick: bool = False,
        progress: Progress = _quiet, command: str = "lmtwin bench intervene") -> Path:
    """Run ``steps`` and write ``out/intervene.md`` from every section written so far."""
    out.mkdir(parents=True, exist_ok=True)
    parts = out / "intervene"
    parts.mkdir(exist_ok=True)
    for step in steps:
        started = time.perf_counter()
        md, _ = RUNNERS[step](out, quick, progress)
        took = time.perf_counter() - started
        (parts / f"{step}.md").write_text(
            md + f"\nReproduce: `{command} --steps {step}{' --quick' if quick else ''}` "
            f"({took / 60:.1f} min on this machine).\n")
    body = [(parts / f"{s}.md").read_text() for s in STEPS if (parts / f"{s}.md").exists()]
    report = out / "intervene.md"
    report.write_text("# Intervene: what-if, optimal actions, time to threshold, alerts\n\n"
                      "Written by `lmtwin bench intervene` (2 shared cores; medians and "
                      "intervals as stated in each section).\n\n" + "\n".join(body))
    return report
