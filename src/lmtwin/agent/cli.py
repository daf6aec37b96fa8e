"""The agent's commands: ``lmtwin ask``, ``lmtwin approvals``, ``lmtwin mcp``
(registered on the main typer app by ``lmtwin.cli``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.prompt import Confirm
from rich.table import Table

from lmtwin.errors import LmtwinError

console = Console()

Store = Annotated[str, typer.Option(help="SQLite file holding the twin")]
TwinName = Annotated[str, typer.Option("--twin", help="the twin's name in the store")]
TimeUnit = Annotated[str, typer.Option(
    help="what one time step of the twin is (second, minute, hour, day, week or step), "
         "to read durations such as 'in a week'")]
ActuatorLog = Annotated[Path | None, typer.Option(
    help="a JSON-lines file the logging actuator appends each approved setting to; "
         "without it actuation is refused")]


def _agent(store: str, twin: str, time_unit: str, actuator_log: Path | None,
           policy: str = "", url: str | None = None, model: str = "default") -> Any:
    from lmtwin.agent import Agent, LoggingActuator, Policy
    from lmtwin.predictors import LocalRidge, Persistence
    from lmtwin.store import SQLiteStore
    from lmtwin.twin import Twin

    if not Path(store).exists():
        raise typer.BadParameter(f"no such store file: {store}", param_hint="--store")
    db = SQLiteStore(store)
    if twin not in db.twins():
        names = ", ".join(db.twins()) or "none"
        db.close()
        raise typer.BadParameter(f"no twin {twin!r} in {store}; twins: {names}",
                                 param_hint="--twin")
    try:
        rules = Policy.parse(policy)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--policy") from exc
    planner = None
    if url:
        from lmtwin.agent.openai_planner import OpenAIPlanner

        planner = OpenAIPlanner(url, model=model)
    return Agent(Twin(twin, store=db, predictors=[Persistence(), LocalRidge()]),
                 planner=planner, policy=rules, time_unit=time_unit,
                 actuator=LoggingActuator(actuator_log) if actuator_log else None)


def _show(outcomes: list[Any], title: str) -> None:
    table = Table(title=title)
    for col in ("call", "tool", "arguments", "status", "result"):
        table.add_column(col, overflow="fold")
    for o in outcomes:
        colour = {"done": "green", "pending": "yellow"}.get(o.status, "red")
        result = o.error if o.error else _brief(o.result)
        table.add_row(o.call_id, o.tool, json.dumps(o.args), f"[{colour}]{o.status}[/]", result)
    console.print(table)


def _brief(result: Any) -> str:
    if isinstance(result, dict) and "final" in result:
        return json.dumps(result["final"])
    text = json.dumps(result, default=str)
    return text if len(text) <= 400 else text[:400] + " ..."


def _plot(outcome: Any, out: Path) -> Path | None:
    """A PNG of a forecast's or scenario's median paths with their 90% bands."""
    result = outcome.result
    if not isinstance(result, dict) or outcome.tool not in ("predict", "what_if"):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plans = ({"forecast": result} if outcome.tool == "predict" else result["plans"])
    variables = sorted({v for p in plans.values() for v in p["trajectory"]})
    fig, axes = plt.subplots(len(variables), 1, figsize=(7, 2.6 * len(variables)),
                             squeeze=False)
    for ax, v in zip(axes[:, 0], variables, strict=True):
        for name, p in plans.items():
            band = p["trajectory"][v]
            steps = range(len(band["median"]))
            ax.plot(steps, band["median"], label=name)
            ax.fill_between(steps, band["lower"], band["upper"], alpha=0.2)
        ax.set_ylabel(v)
        ax.legend()
    axes[-1, 0].set_xlabel("steps ahead")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _decide(agent: Any, pending: list[dict[str, Any]] | list[Any]) -> None:
    """Ask the person about each pending call (on a terminal)."""
    for p in pending:
        call_id = p["call_id"] if isinstance(p, dict) else p.call_id
        tool = p["tool"] if isinstance(p, dict) else p.tool
        args = p["args"] if isinstance(p, dict) else p.args
        if Confirm.ask(f"approve [bold]{tool}[/] {json.dumps(args)} ({call_id})?",
                       console=console, default=False):
            _show([agent.approve(call_id, by="cli")], "approved")
        else:
            _show([agent.reject(call_id, by="cli", reason="rejected at the prompt")],
                  "rejected")


def ask(
    request: Annotated[str, typer.Argument(help="what to ask or do, in plain English")],
    store: Store = "lmtwin.db",
    twin: TwinName = "twin",
    time_unit: TimeUnit = "step",
    policy: Annotated[str, typer.Option(
        help="per tool or kind (read, note, schema, actuate): auto, ask or deny, e.g. "
             "'actuate=deny,schema=ask' (default: schema and actuation ask)")] = "",
    actuator_log: ActuatorLog = None,
    url: Annotated[str | None, typer.Option(
        help="an OpenAI-compatible base URL: plan with its native tool calling instead of "
             "the embedded router")] = None,
    model: Annotated[str, typer.Option(help="the model name at --url")] = "default",
    plot: Annotated[Path, typer.Option(help="folder for PNGs of forecasts")] = Path("out/ask"),
    interactive: Annotated[bool, typer.Option(
        help="prompt for approval of pending calls (default: when on a terminal)")] = True,
) -> None:
    """One request to a twin: shows the proposed calls, asks for approval where the
    policy says so, prints the answer (a table; a PNG for forecasts and scenarios)."""
    try:
        agent = _agent(store, twin, time_unit, actuator_log, policy, url, model)
        with console.status("thinking (the first request loads the sentence model)"):
            reply = agent.ask(request, by="cli")
        _show(reply.outcomes, f"{request}  ({reply.planner}, {reply.seconds:.2f} s)")
        for o in reply.outcomes:
            png = _plot(o, plot / f"{o.call_id}.png") if o.status == "done" else None
            if png:
                console.print(f"plot: {png}")
        if reply.pending:
            if interactive and console.is_terminal:
                _decide(agent, reply.pending)
            else:
                console.print("waiting for approval: lmtwin approvals --store ... --twin ...")
    except LmtwinError as exc:
        console.print(f"[red]{type(exc).__name__}:[/red] {exc}")
        raise typer.Exit(1) from exc
    if any(o.status in ("failed", "refused", "denied") for o in reply.outcomes):
        raise typer.Exit(1)


def approvals(
    store: Store = "lmtwin.db",
    twin: TwinName = "twin",
    approve: Annotated[list[str] | None, typer.Option(help="approve this call id")] = None,
    reject: Annotated[list[str] | None, typer.Option(help="reject this call id")] = None,
    actuator_log: ActuatorLog = None,
) -> None:
    """List calls awaiting approval; approve or reject them by id, or one by one at a
    prompt when no id is given (on a terminal)."""
    try:
        agent = _agent(store, twin, "step", actuator_log)
        done = [agent.approve(c, by="cli") for c in approve or []]
        done += [agent.reject(c, by="cli") for c in reject or []]
        if done:
            _show(done, "decided")
            return
        pending = agent.pending()
        if not pending:
            console.print("no calls await approval")
            return
        table = Table(title="awaiting approval")
        for col in ("call", "tool", "arguments", "request"):
            table.add_column(col)
        for p in pending:
            table.add_row(p["call_id"], p["tool"], json.dumps(p["args"]), p.get("request_id"))
        console.print(table)
        if console.is_terminal:
            _decide(agent, pending)
    except LmtwinError as exc:
        console.print(f"[red]{type(exc).__name__}:[/red] {exc}")
        raise typer.Exit(1) from exc


def mcp(
    store: Store = "lmtwin.db",
    writes: Annotated[bool, typer.Option(
        help="offer write tools (notes, schema changes, actuation); schema changes and "
             "actuation still wait for approval")] = False,
    time_unit: TimeUnit = "step",
    actuator_log: ActuatorLog = None,
) -> None:
    """Serve the store's twins over MCP on stdio: twins as resources, read-only tools
    (write tools with --writes)."""
    from lmtwin.agent import LoggingActuator
    from lmtwin.agent.mcp_server import StoreTwins, build_server
    from lmtwin.store import SQLiteStore

    if not Path(store).exists():
        raise typer.BadParameter(f"no such store file: {store}", param_hint="--store")
    twins = StoreTwins(SQLiteStore(store), time_unit=time_unit,
                       actuator=LoggingActuator(actuator_log) if actuator_log else None)
    build_server(twins, writes=writes).run()  # stdio: nothing else may print to stdout


def bench_agent(
    out: Annotated[Path, typer.Option(help="folder for agent.md and agent.json")] = Path(
        "results"),
    models: Annotated[str, typer.Option(
        help="comma-separated small generative models to compare (gemma3-270m, "
             "smollm2-135m) or 'none'")] = "smollm2-135m,gemma3-270m",
    sample: Annotated[int, typer.Option(
        help="requests each generative model answers (every k-th of the suite)")] = 8,
    quick: Annotated[bool, typer.Option(help="skip the generative models")] = False,
    keep_generative: Annotated[bool, typer.Option(
        help="with --quick: keep the generative section of the previous OUT/agent.json")
    ] = False,
) -> None:
    """The agent's targets: exact tool-and-argument accuracy and time on the suite,
    refusals, the injection suite, ask mode, and small generative models beside it."""
    from lmtwin.bench import agent as bench

    chosen = [] if models == "none" else [m.strip() for m in models.split(",") if m.strip()]
    results = bench.run(out, quick=quick, models=chosen, sample=sample,
                        progress=console.print, keep_generative=keep_generative)
    console.print(bench.report(results))
    console.print(f"written: {out / 'agent.md'}, {out / 'agent.json'}")
