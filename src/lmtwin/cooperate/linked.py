"""Linked twins: one twin's state variable is another twin's context, so a disturbance
in one system propagates to the others in a joint rollout (cascading failures).

A link ``source -> target`` with delay ``d`` and gain ``g`` sets, for the target's step
from ``t`` to ``t + 1``, its context to the source's value at ``t + 1 - d``:

    ctx_target(t) = g * x_source(t + 1 - d)

With ``d = 0`` the target sees what the source reaches in the same step (the source
steps first: same-step coupling, e.g. a plant's output this hour is a factory's supply
this hour); with ``d >= 1`` it sees a value already known. Twins therefore step in a
topological order of the zero-delay links; a cycle of zero-delay links would need each
twin to step before the other (an algebraic loop) and is refused with ``CyclicLink``.
Before the first step, delayed values reach back to the start (``x(t) = x(0)`` for
``t < 0``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from lmtwin.cooperate.dynamics import Dynamics, TwinDynamics
from lmtwin.errors import CyclicLink, InvalidValue, UnknownVariable
from lmtwin.twin import Twin

ActionPlan = Sequence[Mapping[str, float]] | Callable[[int, Mapping[str, float]],
                                                        Mapping[str, float]]


@dataclass(frozen=True)
class Link:
    """``target_twin.target_var`` (a context) follows ``gain`` times
    ``source_twin.source_var`` (a state) with ``delay`` steps.

    Example: ``Link("grid", "supply", "hospital", "power", delay=0)``; a tank's level
    driving the next tank's inflow through its outflow rate: ``gain=0.1``.
    """

    source_twin: str
    source_var: str
    target_twin: str
    target_var: str
    delay: int = 0
    gain: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.delay, int) or self.delay < 0:
            raise InvalidValue("delay", self.delay, "a link's delay is a whole number >= 0")


@dataclass
class JointRollout:
    """Paths of every twin: ``paths[name]`` has shape (horizon + 1, len(variables[name]))."""

    variables: dict[str, list[str]]
    paths: dict[str, np.ndarray]

    def series(self, twin: str, variable: str) -> np.ndarray:
        return self.paths[twin][:, self.variables[twin].index(variable)]


class LinkedTwins:
    """Twins (or true simulators) joined by declared links.

    Args:
        systems: name -> a ``Twin`` (stepped on its fast numeric path) or a ``Dynamics``.
        links: the links; checked at once (names, roles, zero-delay cycles).
    """

    def __init__(self, systems: Mapping[str, Twin | Dynamics], links: Sequence[Link]) -> None:
        self.systems: dict[str, Dynamics] = {}
        for n, s in systems.items():
            self.systems[n] = TwinDynamics(s) if isinstance(s, Twin) else s
        for link in links:
            self._check(link)
        self.links = list(links)
        self.order = self._order()

    def _check(self, link: Link) -> None:
        for twin, var, role in ((link.source_twin, link.source_var, "state"),
                                (link.target_twin, link.target_var, "context")):
            if twin not in self.systems:
                raise UnknownVariable(twin, list(self.systems))
            schema = self.systems[twin].schema
            if var not in schema:
                raise UnknownVariable(var, list(schema.variables))
            if schema.variables[var].role != role:
                raise InvalidValue(f"{twin}.{var}", schema.variables[var].role,
                                   f"a link goes from a state to a context; this is not a {role}")

    def _order(self) -> list[str]:
        """Topological order of the zero-delay links; ``CyclicLink`` on a cycle."""
        edges: dict[str, list[str]] = {n: [] for n in self.systems}
        for link in self.links:
            if link.delay == 0:
                edges[link.source_twin].append(link.target_twin)
        order: list[str] = []
        mark: dict[str, int] = {}  # 1: on the current path, 2: done

        def visit(n: str, path: list[str]) -> None:
            if mark.get(n) == 2:
                return
            if mark.get(n) == 1:
                raise CyclicLink([*path[path.index(n):], n])
            mark[n] = 1
            for m in edges[n]:
                visit(m, [*path, n])
            mark[n] = 2
            order.append(n)

        for n in self.systems:
            visit(n, [])
        return order[::-1]

    def rollout(
        self,
        starts: Mapping[str, Mapping[str, float]],
        actions: Mapping[str, ActionPlan] | None = None,
        horizon: int = 10,
        seed: int = 0,
        shock: Callable[[int, str, dict[str, float]], None] | None = None,
    ) -> JointRollout:
        """Step every system together for ``horizon`` steps.

        Args:
            starts: name -> its start state (states; contexts that no link sets).
            actions: name -> one action mapping per step, or a function ``(t, state)``.
            horizon: steps.
            seed: the noise's seed (the same seed gives the same noise: compare a run
                with a shock against one without on common random numbers).
            shock: called as ``shock(t, name, state)`` for every system at the start of
                step ``t``, before any system steps; it may change ``state`` (the
                values at ``t``) in place: a disturbance injected into one system.
        """
        actions = actions or {}
        rng = np.random.default_rng(seed)
        names = {n: [v for v in d.schema.variables if d.schema.variables[v].role != "action"]
                 for n, d in self.systems.items()}
        history: dict[str, list[dict[str, float]]] = {}
        for n in self.systems:
            if n not in starts:
                raise InvalidValue("starts", sorted(starts), f"no start state for {n!r}")
            history[n] = [dict(starts[n])]
        incoming = {n: [lk for lk in self.links if lk.target_twin == n] for n in self.systems}
        for t in range(horizon):
            if shock is not None:
                for n in self.systems:
                    shock(t, n, history[n][t])
            for n in self.order:
                state = dict(history[n][t])
                for lk in incoming[n]:
                    src = history[lk.source_twin]
                    at = max(0, t + 1 - lk.delay)
                    state[lk.target_var] = lk.gain * src[at][lk.source_var]
                history[n][t] = dict(state)  # the contexts actually used at t
                plan = actions.get(n)
                act = {} if plan is None else (plan(t, state) if callable(plan) else plan[t])
                nxt, _ = self.systems[n].step(state, act, rng)
                history[n].append({**state, **nxt})
        paths = {n: np.array([[h.get(v, np.nan) for v in names[n]] for h in history[n]])
                 for n in self.systems}
        return JointRollout(names, paths)
