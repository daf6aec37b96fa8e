"""Command line: ``lmtwin demo``, ``lmtwin bench``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from lmtwin.errors import LmtwinError

app = typer.Typer(help="lmtwin: digital twins that learn in context.", no_args_is_help=True,
                  add_completion=False)
console = Console()
bench_app = typer.Typer(help="Benchmarks: the engine's targets and the literature's tasks.",
                        no_args_is_help=True)
app.add_typer(bench_app, name="bench")


def _backend(model: str, url: str | None) -> object | None:
    if model == "none":
        return None
    if url:
        from lmtwin.llm import OpenAICompatBackend

        return OpenAICompatBackend(url, model=model)
    from lmtwin.llm import LlamaCppBackend

    return LlamaCppBackend(model)


def _table(twin: object, patient: int, t: int, started: float) -> Table:
    from lmtwin.twin import Twin

    assert isinstance(twin, Twin)
    recent = twin.scores_[-240:]
    names = sorted({n for s in recent for n in s.by_predictor})
    table = Table(title=f"patient {patient + 1}, day {t}  ({time.perf_counter() - started:.0f} s)")
    table.add_column("predictor")
    targets = sorted({s.target for s in recent})
    for target in targets:
        table.add_column(f"MSE {target} (last {len(recent) // max(len(targets), 1)})",
                         justify="right")
    table.add_column("weight", justify="right")
    weights = recent[-1].weights if recent else {}
    for name in [*names, "combined"]:
        cells = []
        for target in targets:
            rows = [s for s in recent if s.target == target
                    and (name == "combined" or name in s.by_predictor)]
            errs = [((s.combined if name == "combined" else s.by_predictor[name]) - s.actual) ** 2
                    for s in rows]
            cells.append(f"{sum(errs) / len(errs):.4g}" if errs else "-")
        w = weights.get(name)
        table.add_row(name, *cells, "" if w is None else f"{w:.2f}")
    return table


@app.command()
def demo(
    patients: Annotated[int, typer.Option(help="patients streamed, one after another")] = 4,
    steps: Annotated[int, typer.Option(help="days per patient")] = 60,
    model: Annotated[str, typer.Option(
        help="embedded model (gemma3-270m, smollm2-135m), a GGUF path, a server's model "
             "name with --url, or 'none' for no language model")] = "gemma3-270m",
    url: Annotated[str | None, typer.Option(help="OpenAI-compatible base URL")] = None,
    out: Annotated[Path, typer.Option(help="folder for the plot and summary")] = Path("out/demo"),
    tune: Annotated[
        bool,
        typer.Option(help="fine-tune the retrieval encoder after patient 1 (off by "
                     "default: it helps the numeric learner but the language model's mean "
                     "error rose, see results/engine.md)"),
    ] = False,
    seed: int = 0,
) -> None:
    """A twin follows lung-cancer patients live; half-way radiotherapy starts."""
    from lmtwin import plots
    from lmtwin.demo import demo_twin, run_demo, summarise

    if patients < 2 or steps < 2:
        raise typer.BadParameter("need at least 2 patients and 2 steps")
    out.mkdir(parents=True, exist_ok=True)
    try:
        backend = _backend(model, url)
        twin = demo_twin(backend, store=out / "demo.db")
        if twin.scores_ or twin.history():
            twin.close()
            (out / "demo.db").unlink()
            twin = demo_twin(backend, store=out / "demo.db")
        started = time.perf_counter()
        with Live(console=console, refresh_per_second=2) as live:
            def show(tw: object, i: int, t: int) -> None:
                if t % 5 == 0:
                    live.update(_table(tw, i, t, started))
                if t == 0 and not console.is_terminal:  # no live redraw in a log: a line
                    console.print(f"patient {i + 1}/{patients} "
                                  f"({time.perf_counter() - started:.0f} s)")
            result = run_demo(twin, patients=patients, steps=steps, seed=seed,
                              tune_after=1 if tune else None, on_step=show)
    except LmtwinError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    names = [p.name for p in twin.predictors]
    summary = summarise(result, names)
    change_ep = f"patient-{patients // 2 + 1}"
    episodes = [f"patient-{patients // 2}", change_ep, f"patient-{patients}"]
    png = plots.trajectories(result.scores, list(dict.fromkeys(episodes)), out / "trajectories.png",
                             change_episode=change_ep)
    curves = plots.error_curves(result.scores, out / "errors.png", change_at=result.change_at)
    md = out / "summary.md"
    md.write_text(_markdown(summary, patients, steps, model))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    twin.close()
    console.print(_table(twin, patients - 1, steps, started))
    console.print(f"combined / best single predictor (relative MSE): "
                  f"{summary['combined_over_best']:.3f}; interval coverage "
                  f"{summary['coverage']:.1%} (nominal 90%)")
    console.print(f"plots: {png}, {curves}\nsummary: {md}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(
        help="TCP port (default 8000; with --demo a free one if 8000 is taken)")] = None,
    store: Annotated[str | None, typer.Option(
        help="SQLite path, 'memory' or postgresql:// URL "
             "(env LMTWIN_STORE; default lmtwin.db)")] = None,
    llm: Annotated[str | None, typer.Option(
        help="language model beside the numeric predictors: none, gemma3-270m, "
             "smollm2-135m, a GGUF path (env LMTWIN_LLM; default none)")] = None,
    llm_url: Annotated[str | None, typer.Option(help="OpenAI-compatible base URL")] = None,
    mqtt_host: Annotated[str | None, typer.Option(help="MQTT broker to ingest from")] = None,
    mqtt_port: Annotated[int | None, typer.Option(help="MQTT broker port (default 1883)")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning, error")] = None,
    demo: Annotated[bool, typer.Option(
        help="also run a demo twin fed live over MQTT by a simulated device (starts a "
             "local mosquitto unless --mqtt-host is given); Ctrl-C stops everything")] = False,
    duration: Annotated[float | None, typer.Option(
        help="with --demo: stop after this many seconds (default: run until Ctrl-C)")] = None,
    rate: Annotated[float, typer.Option(
        help="with --demo: observations per second from the simulated device")] = 4.0,
    insecure: Annotated[bool, typer.Option(
        "--insecure", help="no authentication at all; allowed on a loopback --host only "
                           "(env LMTWIN_INSECURE)")] = False,
) -> None:
    """Serve twins over HTTP (and MQTT): ingest, state, predictions, live updates.

    Authentication is always on: the admin key comes from LMTWIN_ADMIN_KEY (never pass
    keys as arguments) or, with none set, is generated at the first start and printed
    once (only its hash is stored). --insecure turns it off, on 127.0.0.1 only. Every
    setting can also come from LMTWIN_<NAME> variables; see /docs once running.
    """
    if rate <= 0 or (duration is not None and duration <= 0):
        raise typer.BadParameter("--rate and --duration must be positive")
    try:
        import uvicorn

        from lmtwin.service import Settings, create_app
    except ImportError as exc:
        console.print("[red]error:[/red] the service needs: pip install 'lmtwin[service]'")
        raise typer.Exit(1) from exc
    try:
        settings = Settings.from_env(store=store, llm=llm, llm_url=llm_url,
                                     mqtt_host=mqtt_host, mqtt_port=mqtt_port,
                                     log_level=log_level or ("warning" if demo else None),
                                     insecure=insecure or None)
        settings.check_bind(host)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    import logging

    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if demo:
        from lmtwin.service.demo import serve_demo

        def say(line: str) -> None:
            print(line, flush=True)  # plain: a URL must not be wrapped or styled

        try:
            code = serve_demo(settings, host, port, duration, rate, say)
        except (OSError, RuntimeError) as exc:  # no mosquitto, port taken, ...
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from exc
        raise typer.Exit(code)
    uvicorn.run(create_app(settings), host=host, port=8000 if port is None else port,
                access_log=False, log_level=settings.log_level)


def _markdown(summary: dict, patients: int, steps: int, model: str) -> str:
    lines = [
        "# lmtwin demo summary", "",
        f"{patients} lung-cancer patients x {steps} days, model `{model}`; radiotherapy "
        f"starts with patient {patients // 2 + 1} (new action variable and a knowledge note).",
        "",
        f"- predictions: {summary['predictions']}, "
        f"{summary['seconds_per_prediction']:.2f} s each (all predictors)",
        f"- combined vs best single predictor ({summary['best_single']}), relative MSE ratio: "
        f"{summary['combined_over_best']:.3f}",
        f"- 90% intervals: measured coverage {summary['coverage']:.1%} over "
        f"{summary['n_intervals']} intervals",
    ]
    if "llm_prompt_tokens_median" in summary:
        lines.append(f"- language-model prompt tokens per prediction (median): "
                     f"{summary['llm_prompt_tokens_median']:.0f}")
    lines += ["", "| predictor | " + " | ".join(f"MSE {t}" for t in
              next(iter(summary["mse"].values()))) + " | MSE / persistence |",
              "|---|" + "---|" * (len(next(iter(summary["mse"].values()))) + 1)]
    for name, m in summary["mse"].items():
        lines.append(f"| {name} | " + " | ".join(f"{v:.4g}" for v in m.values())
                     + f" | {summary['relative_to_persistence'][name]:.3f} |")
    lines += ["", "![trajectories](trajectories.png)", "", "![errors](errors.png)", ""]
    return "\n".join(lines)


@bench_app.command("engine")
def bench_engine(
    quick: Annotated[bool, typer.Option(help="shorter run (about 5 minutes)")] = False,
    model: Annotated[str, typer.Option(help="embedded model or GGUF path")] = "gemma3-270m",
    out: Annotated[Path, typer.Option(help="folder for engine.json and engine.md")] = Path(
        "results"),
    steps: Annotated[str, typer.Option(
        help="comma-separated steps to (re)run, merged into OUT/engine.json: observe, llm, "
             "stream, retrieval, assimilation, history, combination, or 'all'")] = "all",
) -> None:
    """The engine's targets: observe rate, prompt tokens, LM speed, combination, coverage,
    fine-tuned against raw retrieval, data assimilation, and a twin loaded from history
    (combination and coverage from its first prediction), and the combination against its
    best member on validation and demo streams."""
    from lmtwin.bench import engine
    from lmtwin.llm import LlamaCppBackend

    only = None if steps == "all" else [x.strip() for x in steps.split(",") if x.strip()]
    if only is not None and (not only or set(only) - set(engine.STEPS)):
        raise typer.BadParameter(f"choose from {', '.join(engine.STEPS)} or 'all'",
                                 param_hint="--steps")
    backend = LlamaCppBackend(model, n_threads=2)
    results = engine.run(backend, quick=quick, out=out, only=only)
    console.print(engine.report(results))
    console.print(f"written: {out / 'engine.md'}, {out / 'engine.json'}")


@bench_app.command("tasks")
def bench_tasks(
    quick: Annotated[bool, typer.Option(
        help="small sizes, 3 seeds (a few minutes; sizes stated in the report)")] = False,
    tasks: Annotated[str, typer.Option(
        help="comma-separated: cancer, cancer-chemo, cancer-untreated, hare-lynx, plankton, "
             "covid, 'all' or 'none' (scenarios only)")] = "all",
    scenarios: Annotated[str, typer.Option(
        help="comma-separated: new-state, new-action, drift, knowledge, 'all' or 'none'")] = "all",
    baselines: Annotated[str, typer.Option(
        help="comma-separated: persistence, knn, ridge, sindy, parroting, dynode, gru, "
             "transformer, or 'all'")] = "all",
    seeds: Annotated[int | None, typer.Option(
        help="number of seeds from 10 (default: 10, quick 3)")] = None,
    patients: Annotated[int | None, typer.Option(
        help="cancer patients per split (default: the protocol's 1000)")] = None,
    covid_population: Annotated[int | None, typer.Option(
        help="people per COVID simulation (protocol: 1,000,000)")] = None,
    covid_seeds: Annotated[int | None, typer.Option(
        help="run COVID on the first N seeds only (its simulations are slow)")] = None,
    lm_steps: Annotated[int | None, typer.Option(
        help="random test steps per seed and task that the language model answers")] = None,
    lm_seeds: Annotated[int | None, typer.Option(
        help="seeds (from the first) on which the language model runs (at least 3 for a "
             "t-interval)")] = None,
    net_steps: Annotated[str | None, typer.Option(
        help="caps on the networks' training steps, e.g. 'dynode=3000,gru=300,"
             "transformer=500' (they stop earlier when the validation loss stalls)")] = None,
    lm_tasks: Annotated[str, typer.Option(
        help="comma-separated tasks on which the language model runs, or 'all'")] = "all",
    model: Annotated[str, typer.Option(
        help="embedded model or GGUF path, or 'none' for no language model")] = "gemma3-270m",
    out: Annotated[Path, typer.Option(help="folder for report.md, results.json and PNGs")] = Path(
        "results/bench"),
    data_dir: Annotated[Path | None, typer.Option(
        help="folder with hare_lynx.csv and plankton_3dlv.csv")] = None,
    report_only: Annotated[bool, typer.Option(
        help="only render report.md and the PNGs again from OUT/results.json")] = False,
    cache_dir: Annotated[Path | None, typer.Option(
        help="folder where COVID simulations are kept and read again by runs with the "
             "same sizes (parts of one benchmark simulate each split once)")] = None,
    merge: Annotated[str | None, typer.Option(
        help="comma-separated folders of runs made in parallel: merge their results.json "
             "into OUT and render the report")] = None,
    first_seed: Annotated[int, typer.Option(
        help="the first seed (10 in the protocol; a part on later seeds merges with one "
             "on the first)")] = 10,
    lmtwin: Annotated[bool, typer.Option(
        help="run the twin (--no-lmtwin: baselines only, for a part merged with a "
             "twin-only part run with --baselines none)")] = True,
) -> None:
    """The literature's tasks (HDTwinGen protocol) and the continual-update scenarios,
    like for like: every baseline and lmtwin frozen and online on the same seeds and
    steps, settings chosen on validation; one-step MSE with 95% CIs, rollouts,
    intervals, cost."""
    import sys
    from dataclasses import replace

    from lmtwin.bench import suite
    from lmtwin.bench.scenarios import SCENARIOS
    from lmtwin.bench.tasks import TASKS

    if report_only or merge:
        written = (suite.merge([Path(p.strip()) for p in merge.split(",") if p.strip()], out)
                   if merge else suite.rewrite(out))
        console.print(f"written: {', '.join(map(str, written))}")
        return
    cfg = suite.Config.quick_run() if quick else suite.Config()
    if tasks != "all":
        cfg.tasks = [] if tasks == "none" else [
            t.strip() for t in tasks.split(",") if t.strip()]
    unknown = [t for t in cfg.tasks if t not in TASKS]
    if unknown:
        # reported, and the known tasks still run
        console.print(f"[red]unknown task(s) {', '.join(unknown)}[/red]; choose from "
                      f"{', '.join(TASKS)}")
    if baselines != "all":
        cfg.baselines = [b.strip() for b in baselines.split(",") if b.strip()]
    if baselines == "none":
        cfg.baselines = []
    cfg.twin = lmtwin
    for name, value in (("seeds", seeds), ("patients", patients), ("lm_steps", lm_steps),
                        ("lm_seeds", lm_seeds), ("covid_seeds", covid_seeds),
                        ("covid_population", covid_population)):
        if value is not None and value < 1:
            console.print(f"[red]error:[/red] --{name.replace('_', '-')} must be at least 1")
            raise typer.Exit(2)
    if seeds is not None or first_seed != 10:
        cfg.seeds = list(range(first_seed, first_seed + (seeds or len(cfg.seeds))))
    if patients is not None:
        cfg.sizes = replace(cfg.sizes, patients=(patients, patients, patients))
    if covid_population is not None:
        cfg.sizes = replace(cfg.sizes, covid_population=covid_population)
    if covid_seeds is not None:
        cfg.covid_seeds = covid_seeds
    if lm_steps is not None:
        cfg.lm_steps = lm_steps
    if lm_seeds is not None:
        cfg.lm_seeds = lm_seeds
    if net_steps is not None:
        try:
            caps = {k.strip(): int(v) for k, v in (x.split("=") for x in net_steps.split(","))}
        except ValueError:
            caps = {}
        if not caps or set(caps) - set(cfg.max_steps) or min(caps.values()) < 1:
            console.print("[red]error:[/red] --net-steps takes name=steps pairs for "
                          f"{', '.join(cfg.max_steps)}, each at least 1")
            raise typer.Exit(2)
        cfg.max_steps.update(caps)
    if lm_tasks != "all":
        cfg.lm_tasks = [t.strip() for t in lm_tasks.split(",") if t.strip()]
    if data_dir is not None:
        cfg.data_dir = data_dir
    cfg.cache_dir = cache_dir
    chosen = (list(SCENARIOS) if scenarios == "all" else [] if scenarios == "none"
              else [s.strip() for s in scenarios.split(",") if s.strip()])
    backend = None
    if model != "none":
        from lmtwin.llm import LlamaCppBackend

        try:
            backend = LlamaCppBackend(model, n_threads=2)
        except LmtwinError as exc:
            console.print(f"[red]error:[/red] {exc}; pass --model none to run without it")
            raise typer.Exit(1) from exc
    command = "lmtwin bench " + " ".join(sys.argv[sys.argv.index("tasks"):]) if (
        "tasks" in sys.argv) else "lmtwin bench tasks"
    results = suite.run(cfg, backend, chosen, out, command,
                        backend_name=getattr(backend, "name", "none"))
    if backend is not None:
        backend.close()
    for name, r in results["tasks"].items():
        if "error" in r:
            console.print(f"[yellow]{name}:[/yellow] {r['error']}")
            continue
        for key, cell in r["ratios"].items():
            ratio = cell.get("ratio")
            mine = key if "[" in key else f"lmtwin[{key}]"
            console.print(f"{name}: {mine} / {cell['best_baseline']} = "
                          f"{'n/a' if ratio is None else round(ratio, 3)}")
    console.print(f"written: {out / 'report.md'}, {out / 'results.json'} "
                  f"({results['seconds'] / 60:.1f} minutes)")


@bench_app.command("service")
def bench_service(
    quick: Annotated[bool, typer.Option(help="4 s loads and 3 kill rounds instead of 10")] = False,
    out: Annotated[Path, typer.Option(help="folder for service.json and service.md")] = Path(
        "results"),
) -> None:
    """The service's targets on 127.0.0.1: HTTP and MQTT ingest rate and ack latency,
    state read latency, and SIGKILL during ingest (every acknowledged observation kept)."""
    from lmtwin.bench import service as bench

    results = bench.run(quick=quick, out=out, progress=console.print)
    console.print(bench.report(results))
    console.print(f"written: {out / 'service.md'}, {out / 'service.json'}")


@bench_app.command("cooperate")
def bench_cooperate(
    quick: Annotated[bool, typer.Option(
        help="a small run (about 2 minutes) to try the bench; sizes stated in the report")] = False,
    only: Annotated[str, typer.Option(
        help="comma-separated parts: cancer, microgrid, five (Shapley with five agents); a "
             "rerun of some parts keeps the others in cooperate.json")] = (
        "cancer,microgrid,five"),
    out: Annotated[Path, typer.Option(help="folder for cooperate.md, .json and PNGs")] = Path(
        "results"),
    report_only: Annotated[bool, typer.Option(
        help="only render cooperate.md and the PNGs again from OUT/cooperate.json")] = False,
) -> None:
    """Cooperating agents trained on the twin and scored on the TRUE simulators (cancer:
    chemo and radio agents; microgrid: battery, generator, demand response, with crisis
    weights and a drift): cooperative vs independent, hand-written policies, Shapley
    credit, training time, and the twin's cost against training on the truth."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from lmtwin.bench import cooperate

    if report_only:
        console.print(f"written: {', '.join(map(str, cooperate.rewrite(out)))}")
        return
    parts = [x.strip() for x in only.split(",") if x.strip()]
    if not parts or set(parts) - {"cancer", "microgrid", "five"}:
        raise typer.BadParameter("choose from cancer, microgrid, five", param_hint="--only")
    sizes = cooperate.Sizes.quick() if quick else cooperate.Sizes()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console) as bar:
        task = bar.add_task("cooperating agents", total=None)

        def tick(message: str) -> None:
            bar.console.print(message)
            bar.update(task, description=message)

        cooperate.run(sizes, out, tick, parts)
    console.print(f"written: {out / 'cooperate.md'}, {out / 'cooperate.json'}, "
                  f"{out / 'cooperate_results.png'}, {out / 'cooperate_learning.png'}")


# lmtwin whatif | optimise | time-to | bench intervene (lmtwin.intervene.cli)
from lmtwin.intervene.cli import register as _register_intervene  # noqa: E402

_register_intervene(app, bench_app)


def _agent_commands() -> None:
    """lmtwin ask / approvals / mcp (lmtwin.agent.cli), when the 'agent' extra is there."""
    try:
        from lmtwin.agent import cli as agent_cli
    except ImportError:  # pragma: no cover - pydantic missing: no agent commands
        return

    app.command()(agent_cli.ask)
    app.command()(agent_cli.approvals)
    app.command()(agent_cli.mcp)
    bench_app.command("agent")(agent_cli.bench_agent)


_agent_commands()


def main() -> None:  # pragma: no cover
    app()
