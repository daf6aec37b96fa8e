"""Command line for intervene: ``lmtwin whatif``, ``lmtwin optimise``, ``lmtwin time-to``
and ``lmtwin bench intervene``. Each prints a table and writes a PNG.

The twin is opened from its SQLite file with the numeric predictors (persistence and the
local learner: rollouts need no language model). Plans are JSON: a list of action
mappings, one per step, or ``{"name": plan, ...}`` for several.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from lmtwin.errors import LmtwinError

console = Console()

Store = Annotated[Path, typer.Argument(help="the twin's SQLite file")]
Name = Annotated[str, typer.Option("--twin", help="the twin's name in the file")]
StateOpt = Annotated[str | None, typer.Option(
    help='the state as JSON, e.g. \'{"v": 400, "c": 0}\' (default: the episode\'s latest)')]
Episode = Annotated[str, typer.Option(help="episode whose latest state is used")]
Minimise = Annotated[list[str], typer.Option(
    help="NAME or NAME=WEIGHT of a state variable whose mean over the horizon is "
         "minimised (repeat)")]
Setpoint = Annotated[list[str] | None, typer.Option(
    help="NAME=VALUE: minimise the squared distance to VALUE instead (repeat)")]
Cost = Annotated[list[str] | None, typer.Option(
    help="ACTION=COST per unit of the action over the plan (repeat)")]
Seed = Annotated[int, typer.Option(help="seed of the noise (common random numbers)")]


def _pairs(items: list[str] | None, what: str, default: float | None = None
           ) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items or []:
        name, _, value = item.partition("=")
        if not value and default is None:
            raise typer.BadParameter(f"expected NAME=NUMBER, got {item!r}", param_hint=what)
        try:
            out[name.strip()] = float(value) if value else float(default or 0.0)
        except ValueError:
            raise typer.BadParameter(f"not a number in {item!r}", param_hint=what) from None
    return out


def _json(text: str, what: str) -> Any:
    source = Path(text)
    try:
        raw = source.read_text() if not text.lstrip().startswith(("{", "[")) and \
            source.exists() else text
        return json.loads(raw)
    except (OSError, json.JSONDecodeError) as exc:
        raise typer.BadParameter(f"not JSON or a JSON file: {exc}", param_hint=what) from None


def _open(store: Path, name: str) -> Any:
    from lmtwin import LocalRidge, Persistence, Twin

    if not store.exists():
        raise typer.BadParameter(f"{store} does not exist", param_hint="STORE")
    return Twin(name, store=store, predictors=[Persistence(), LocalRidge()])


def _objective(minimise: list[str], setpoint: list[str] | None, cost: list[str] | None) -> Any:
    from lmtwin.intervene import Objective

    return Objective(_pairs(minimise, "--minimise", default=1.0),
                     setpoints=_pairs(setpoint, "--setpoint"),
                     action_costs=_pairs(cost, "--cost"))


def _fail(exc: LmtwinError) -> None:
    console.print(f"[red]error:[/red] {type(exc).__name__}: {exc}")
    raise typer.Exit(1) from exc


def whatif(
    store: Store,
    plans: Annotated[str, typer.Option(help='JSON {"name": [{"u": 1}, ...], ...} or a file')],
    minimise: Minimise,
    twin: Name = "twin",
    state: StateOpt = None,
    episode: Episode = "default",
    horizon: Annotated[int | None, typer.Option(help="steps (default: the plans' length)")
                       ] = None,
    paths: Annotated[int, typer.Option(help="sampled paths per plan")] = 500,
    setpoint: Setpoint = None,
    cost: Cost = None,
    seed: Seed = 0,
    out: Annotated[Path, typer.Option(help="PNG fan chart")] = Path("whatif.png"),
) -> None:
    """Compare plans from the same state on the same noise: each plan's objective and
    the probability it beats each other plan."""
    from lmtwin.intervene.plots import fan_chart

    given = _json(plans, "--plans")
    tw = _open(store, twin)
    try:
        named = given if isinstance(given, dict) else {str(i): p for i, p in enumerate(given)}
        h = horizon or min(len(p) for p in named.values())
        s = json.loads(state) if state else None
        result = tw.compare(s, named, h, paths, _objective(minimise, setpoint, cost),
                            seed=seed, episode=episode)
    except LmtwinError as exc:
        _fail(exc)
    finally:
        tw.close()
    table = Table(title=f"what-if over {h} steps, {paths} paths per plan (lower is better)")
    for col in ("plan", "mean objective", "90% interval", *[f"P(beats {b})" for b in named]):
        table.add_column(col, justify="left" if col == "plan" else "right")
    for name, o in result.outcomes.items():
        table.add_row(name, f"{o.mean:.4g}", f"[{o.lower:.4g}, {o.upper:.4g}]",
                      *[("-" if b == name else f"{result.beats[name][b]:.2f}") for b in named])
    console.print(table)
    main = next(iter(_objective(minimise, setpoint, cost).weights))
    console.print(f"written: {fan_chart(result, main, out)}")


def optimise(
    store: Store,
    minimise: Minimise,
    horizon: Annotated[int, typer.Option(help="steps planned")],
    twin: Name = "twin",
    state: StateOpt = None,
    episode: Episode = "default",
    setpoint: Setpoint = None,
    cost: Cost = None,
    bound: Annotated[list[str] | None, typer.Option(
        help="ACTION=LOW:HIGH, tighter than the schema's bounds (repeat)")] = None,
    budget: Annotated[list[str] | None, typer.Option(
        help="ACTION=TOTAL: the most of the action over the plan (repeat)")] = None,
    rate: Annotated[list[str] | None, typer.Option(
        help="ACTION=STEP: the most it may change from one step to the next (repeat)")
    ] = None,
    paths: Annotated[int, typer.Option(help="noise paths per candidate plan")] = 16,
    iterations: Annotated[int, typer.Option(help="CMA-ES generations")] = 15,
    seed: Seed = 0,
    out: Annotated[Path, typer.Option(help="PNG of the plan and its outcome")] = Path(
        "optimise.png"),
) -> None:
    """The action plan that minimises the expected objective on the twin (CMA-ES),
    within the schema's bounds and your constraints."""
    from lmtwin.intervene import Constraints

    bounds = {}
    for item in bound or []:
        name, _, rng = item.partition("=")
        lo, _, hi = rng.partition(":")
        try:
            bounds[name.strip()] = (float(lo), float(hi))
        except ValueError:
            raise typer.BadParameter(f"expected ACTION=LOW:HIGH, got {item!r}",
                                     param_hint="--bound") from None
    limits = Constraints(bounds, _pairs(budget, "--budget"), _pairs(rate, "--rate"))
    tw = _open(store, twin)
    try:
        s = json.loads(state) if state else None
        with Progress(TextColumn("optimising"), BarColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as bar:
            bar.add_task("cma", total=None)
            best = tw.optimise(s, _objective(minimise, setpoint, cost), horizon, limits,
                               episode=episode, n_paths=paths, iterations=iterations,
                               seed=seed)
    except LmtwinError as exc:
        _fail(exc)
    finally:
        tw.close()
    table = Table(title=f"optimal plan: expected objective {best.expected:.4g}, 90% interval "
                  f"[{best.lower:.4g}, {best.upper:.4g}]")
    table.add_column("step", justify="right")
    for a in best.actions:
        table.add_column(a, justify="right")
    for i, step in enumerate(best.plan):
        table.add_row(str(i), *[f"{step[a]:.3g}" for a in best.actions])
    console.print(table)
    console.print(f"written: {_plan_png(best, out)}")


def _plan_png(best: Any, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for j, a in enumerate(best.actions):
        axes[0].step(range(len(best.plan)), best.values[:, j], where="post", label=a)
    axes[0].set_title("optimal plan")
    axes[0].set_xlabel("step")
    axes[0].legend()
    for j, v in enumerate(best.variables):
        q = np.quantile(best.paths[:, :, j], [0.05, 0.5, 0.95], axis=0)
        axes[1].fill_between(range(q.shape[1]), q[0], q[2], alpha=0.2)
        axes[1].plot(q[1], label=f"{v} (median, 90%)")
    axes[1].set_title("the twin's paths under it")
    axes[1].set_xlabel("step")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def time_to(
    store: Store,
    variable: Annotated[str, typer.Option(help="the state variable")],
    threshold: Annotated[float, typer.Option(help="the value it crosses")],
    plan: Annotated[str, typer.Option(help='JSON list of action mappings or a file')],
    twin: Name = "twin",
    state: StateOpt = None,
    episode: Episode = "default",
    horizon: Annotated[int | None, typer.Option(help="steps (default: the plan's length)")
                       ] = None,
    paths: Annotated[int, typer.Option(help="sampled paths")] = 500,
    seed: Seed = 0,
    out: Annotated[Path, typer.Option(help="PNG of the crossing times")] = Path(
        "time_to.png"),
) -> None:
    """When a variable first crosses a threshold under a plan: median, 90% interval and
    the probability of crossing within the horizon."""
    steps = _json(plan, "--plan")
    tw = _open(store, twin)
    try:
        s = json.loads(state) if state else None
        est = tw.time_to(variable, threshold, steps, horizon or len(steps), state=s,
                         n_paths=paths, seed=seed, episode=episode)
    except LmtwinError as exc:
        _fail(exc)
    finally:
        tw.close()

    def show(x: float) -> str:
        return f"{x:g}" if np.isfinite(x) else f"beyond {est.horizon}"

    table = Table(title=f"{variable} {'>=' if est.direction == 'up' else '<='} {threshold:g}"
                  f" within {est.horizon} steps ({paths} paths)")
    for col in ("median", "90% interval", "P(crossing)"):
        table.add_column(col, justify="right")
    table.add_row(show(est.median), f"[{show(est.lower)}, {show(est.upper)}]",
                  f"{est.probability:.2f}")
    console.print(table)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    finite = est.times[np.isfinite(est.times)]
    ax.hist(finite, bins=[x + 0.5 for x in range(est.horizon + 1)], color="#58a")
    ax.set_xlabel("steps to threshold")
    ax.set_ylabel("paths")
    ax.set_title(f"P(crossing within {est.horizon}) = {est.probability:.2f}")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    console.print(f"written: {out}")


def bench_intervene(
    steps: Annotated[str, typer.Option(
        help="comma-separated: rollouts, closed-loop, time-to, alerts, or 'all'")] = "all",
    quick: Annotated[bool, typer.Option(help="smaller sizes (stated in the report)")] = False,
    out: Annotated[Path, typer.Option(help="folder for intervene.md and its PNGs")] = Path(
        "results"),
) -> None:
    """Rollout speed, closed-loop control scored on the true simulators, time-to
    calibration and alert detection: results/intervene.md."""
    from lmtwin.bench import intervene

    chosen = list(intervene.STEPS) if steps == "all" else [
        x.strip() for x in steps.split(",") if x.strip()]
    if not chosen or set(chosen) - set(intervene.STEPS):
        raise typer.BadParameter(f"choose from {', '.join(intervene.STEPS)} or 'all'",
                                 param_hint="--steps")
    command = "lmtwin bench intervene" + (
        f" --out {out}" if str(out) != "results" else "")
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn(
            "{task.completed}/{task.total}"), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("starting", total=1)

        def tick(what: str, done: int, total: int) -> None:
            bar.update(task, description=what, completed=done, total=max(total, 1))

        report = intervene.run(chosen, out, quick, tick, command)
    console.print(f"written: {report}")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add the intervene commands to lmtwin's CLI."""
    app.command("whatif")(whatif)
    app.command("optimise")(optimise)
    app.command("time-to")(time_to)
    bench_app.command("intervene")(bench_intervene)
