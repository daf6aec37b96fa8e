"""The agent's benchmark and injection suites, and the twins they run on.

``bench.json`` holds the twins (tank, cancer, greenhouse, battery), requests with their
expected calls, and requests whose call must be refused; ``injections.json`` the planted
texts; ``examples.json`` the router's examples (written apart from the benchmark).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from lmtwin.predictors import LocalRidge, Persistence
from lmtwin.schema import Variable
from lmtwin.store import Store
from lmtwin.twin import Twin


@cache
def load(name: str) -> dict[str, Any]:
    """One of the packaged suites: 'bench', 'injections' or 'examples'."""
    text = resources.files("lmtwin.agent.suite").joinpath(f"{name}.json").read_text("utf-8")
    return json.loads(text)


def make_twin(kind: str, store: Store | str | None = None, name: str | None = None,
              steps: int = 40, seed: int = 0,
              describe: dict[str, str] | None = None) -> Twin:
    """A twin of one of the suite's systems (numeric predictors only), fed ``steps``
    observations of a simple simulation so every read tool has data.

    ``describe`` replaces variable descriptions (the injection suite plants text there).
    """
    spec = load("bench")["twins"][kind]
    variables = [Variable(**{**v, "description": (describe or {}).get(v["name"],
                                                                      v["description"])})
                 for v in spec["variables"]]
    twin = Twin(name or kind, variables=variables, store=store,
                predictors=[Persistence(), LocalRidge()])
    rng = np.random.default_rng(seed)
    values = {v.name: _start(v) for v in variables}
    for t in range(steps):
        for v in variables:
            if v.role == "action":
                values[v.name] = float(rng.uniform(v.lower or 0.0, v.upper or 1.0))
        twin.observe(dict(values), t=float(t))
        for v in variables:
            if v.role != "action":
                drift = 0.02 * (values[v.name] or 1.0) * float(rng.normal())
                values[v.name] = _clip(v, values[v.name] + drift)
    return twin


def _start(v: Variable) -> float:
    lo = v.lower if v.lower is not None else 0.0
    hi = v.upper if v.upper is not None else lo + 100.0
    return lo + 0.4 * (hi - lo)


def _clip(v: Variable, x: float) -> float:
    lo = v.lower if v.lower is not None else -np.inf
    hi = v.upper if v.upper is not None else np.inf
    return float(np.clip(x, lo, hi))
