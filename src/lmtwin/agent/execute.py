"""Run a validated call on the twin: thin wrappers over the library, JSON-ready results."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from lmtwin.agent.actuators import Actuator
from lmtwin.agent.validate import Call
from lmtwin.errors import NotReady, ToolUnavailable
from lmtwin.schema import Variable
from lmtwin.twin import Twin


def run(call: Call, twin: Twin, actuator: Actuator | None, episode: str = "default") -> Any:
    """Execute ``call`` (already validated and approved) and return its result."""
    return _RUN[call.tool](twin, call.args.model_dump(), actuator, episode)


def _state(twin: Twin, a: dict[str, Any], _: Actuator | None, episode: str) -> Any:
    state = twin.state(episode)
    if not state:
        raise NotReady(f"twin {twin.name!r} has no observations in episode {episode!r}")
    wanted = a["variables"] or list(state)
    return {"episode": episode, "values": {n: state.get(n) for n in wanted}}


def _history(twin: Twin, a: dict[str, Any], _: Actuator | None, episode: str) -> Any:
    rows = twin.history(variable=a["variable"], episode=episode)[-a["last"]:]
    return {"episode": episode, "rows": [{"t": o.t, **o.values} for o in rows]}


def _schema(twin: Twin, a: dict[str, Any], _: Actuator | None, episode: str) -> Any:
    return {"version": twin.schema.version, "variables": twin.schema.to_list()}


N_PATHS = 200


def _current(twin: Twin, episode: str) -> dict[str, float]:
    """The episode's latest state and context values (actions go in the plan)."""
    state = twin.state(episode)
    if not state:
        raise NotReady(f"twin {twin.name!r} has no observations in episode {episode!r}")
    roles = twin.schema.variables
    return {k: v for k, v in state.items() if k in roles and roles[k].role != "action"}


def _plan(twin: Twin, episode: str, actions: dict[str, float], horizon: int
          ) -> list[dict[str, float]]:
    """Every action held at its latest value ("carry on as now"), except those given."""
    state = twin.state(episode)
    now = {a: state[a] for a in twin.schema.actions if a in state}
    return [{**now, **actions}] * horizon


def _bands(paths: np.ndarray, variables: list[str], wanted: list[str]) -> dict[str, Any]:
    """Median and 90% band per step of each wanted variable, over sampled paths."""
    q = np.quantile(paths, [0.05, 0.5, 0.95], axis=0)
    return {v: {"median": q[1, :, i].tolist(), "lower": q[0, :, i].tolist(),
                "upper": q[2, :, i].tolist()}
            for i, v in enumerate(variables) if v in wanted}


def _predict(twin: Twin, a: dict[str, Any], _: Actuator | None, episode: str) -> Any:
    plan = _plan(twin, episode, a["actions"], a["horizon"])
    sim = twin.simulate(_current(twin, episode), plan, n_paths=N_PATHS, seed=0)
    wanted = a["variables"] or sim.variables
    bands = _bands(sim.paths, sim.variables, wanted)
    return {"horizon": a["horizon"], "plan": plan[0], "trajectory": bands,
            "final": {v: b["median"][-1] for v, b in bands.items()}}


def _what_if(twin: Twin, a: dict[str, Any], _: Actuator | None, episode: str) -> Any:
    from lmtwin.intervene import Objective

    now = _plan(twin, episode, {}, a["horizon"])
    scenario = _plan(twin, episode, a["actions"], a["horizon"])
    state = _current(twin, episode)
    wanted = a["variables"] or [v for v in twin.schema.states if v in state]
    objective = Objective(dict.fromkeys(wanted, 1.0), aggregate="final")
    out = twin.compare(state, {"as now": now, "scenario": scenario}, a["horizon"],
                       n_paths=N_PATHS, objective=objective, seed=0)
    result: dict[str, Any] = {"horizon": a["horizon"], "plans": {}, "final": {}}
    for name, o in out.outcomes.items():
        bands = _bands(o.paths, out.variables, wanted)
        result["plans"][name] = {"plan": o.plan[0], "trajectory": bands}
        result["final"][name] = {v: b["median"][-1] for v, b in bands.items()}
    result["change"] = {v: result["final"]["scenario"][v] - result["final"]["as now"][v]
                        for v in wanted}
    return result


def _optimise(twin: Twin, a: dict[str, Any], _: Actuator | None, episode: str) -> Any:
    from lmtwin.intervene import Objective

    sign = 1.0 if a["goal"] == "minimise" else -1.0
    best = twin.optimise(_current(twin, episode), Objective({a["variable"]: sign}),
                         a["horizon"])
    return {"goal": a["goal"], "variable": a["variable"], "horizon": a["horizon"],
            "plan": best.plan, "expected": sign * best.expected,
            "interval": sorted([sign * best.lower, sign * best.upper]), "level": best.level}


def _time_to(twin: Twin, a: dict[str, Any], _: Actuator | None, episode: str) -> Any:
    plan = _plan(twin, episode, {}, a["horizon"])
    out = twin.time_to(a["variable"], a["threshold"], plan, a["horizon"],
                       state=_current(twin, episode), n_paths=N_PATHS)
    finite = [x if math.isfinite(x) else None for x in (out.median, out.lower, out.upper)]
    return {"variable": a["variable"], "threshold": a["threshold"],
            "direction": out.direction, "horizon": a["horizon"], "median_steps": finite[0],
            "interval_steps": finite[1:], "probability_within_horizon": out.probability,
            "level": out.level}


def _alerts(twin: Twin, a: dict[str, Any], _: Actuator | None, episode: str) -> Any:
    from lmtwin.intervene.alerts import alerts

    return {"alerts": [x.to_dict() for x in alerts(twin.store, twin.name)[-a["last"]:]]}


def _notes(twin: Twin, a: dict[str, Any], _: Actuator | None, episode: str) -> Any:
    return {"notes": [{"at": n.at, "text": n.text} for n in twin.notes[-a["last"]:]]}


def _add_note(twin: Twin, a: dict[str, Any], _: Actuator | None, episode: str) -> Any:
    note = twin.add_knowledge(a["text"])
    return {"added": {"at": note.at, "text": note.text}}


def _add_variable(twin: Twin, a: dict[str, Any], _: Actuator | None, episode: str) -> Any:
    change = twin.add_variable(Variable(**a))
    return change.to_dict()


def _remove_variable(twin: Twin, a: dict[str, Any], _: Actuator | None, episode: str) -> Any:
    return twin.remove_variable(a["name"]).to_dict()


def _update_variable(twin: Twin, a: dict[str, Any], _: Actuator | None, episode: str) -> Any:
    fields = {k: v for k, v in a.items() if k != "name" and v is not None}
    return twin.describe_variable(a["name"], **fields).to_dict()


def _actuate(twin: Twin, a: dict[str, Any], actuator: Actuator | None, episode: str) -> Any:
    if actuator is None:
        raise ToolUnavailable("no actuator is configured for this twin")
    return _jsonable(actuator.apply(twin.name, {a["variable"]: a["value"]}))


def _jsonable(value: Any) -> Any:
    to_dict = getattr(value, "to_dict", None)
    return to_dict() if callable(to_dict) else value


_RUN: dict[str, Callable[[Twin, dict[str, Any], Actuator | None, str], Any]] = {
    "get_state": _state,
    "get_history": _history,
    "get_schema": _schema,
    "predict": _predict,
    "what_if": _what_if,
    "optimise": _optimise,
    "time_to": _time_to,
    "list_alerts": _alerts,
    "list_notes": _notes,
    "add_note": _add_note,
    "add_variable": _add_variable,
    "remove_variable": _remove_variable,
    "update_variable": _update_variable,
    "actuate": _actuate,
}
