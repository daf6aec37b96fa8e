"""An objective made of terms tagged by dimension, with weights recomputed every step.

    O = w_p * P + w_a * A + w_c * C

``P`` sums the physical terms (measured variables: a tumour's size, unserved load),
``A`` the abstract ones (constraints and risks: a dose budget, a tariff, an emission
cap) and ``C`` the computational ones (the twin's own uncertainty, the cost of acting).
Every term is a score to maximise (a cost enters with a minus sign). The weights
``(w_p, w_a, w_c)`` come from a fixed triple, a :class:`Crisis` rule, or any user
function of the state, and are recomputed at every step; they must be finite,
non-negative and not all zero (``InvalidWeights`` otherwise, before anything is used).

The same object scores a whole trajectory (``Objective.trajectory``, what an optimiser
maximises) and gives each agent its own reward (``Objective.rewards``):
``R_i = w_p P_i + w_a A_i + w_c C_i``, where ``P_i`` sums only the physical terms that
concern agent ``i`` (a term's ``agents``; None means every agent).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np

from lmtwin.errors import CooperateError, InvalidWeights, UnknownVariable
from lmtwin.schema import Schema

Dimension = Literal["physical", "abstract", "computational"]
DIMENSIONS: tuple[Dimension, ...] = ("physical", "abstract", "computational")


@dataclass(frozen=True)
class Step:
    """What a term sees at one step of an episode.

    Attributes:
        state: values before the step (states and contexts).
        action: the joint action taken (every action variable).
        next_state: the state after the step.
        t: the step's index in the episode (0 first).
        totals: each action variable's sum over the episode so far, this step included.
        sigma: the dynamics' predictive standard deviation per state variable (0 on a
            true system; the twin's calibrated uncertainty on a twin).
    """

    state: Mapping[str, float]
    action: Mapping[str, float]
    next_state: Mapping[str, float]
    t: int = 0
    totals: Mapping[str, float] = field(default_factory=dict)
    sigma: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Term:
    """One scored quantity: ``fn(step)`` is a score to maximise.

    Attributes:
        name: shown in reports and in each step's info.
        dimension: "physical", "abstract" or "computational".
        fn: the score of one step.
        variables: the variables it reads (checked against the schema).
        agents: the agents whose own reward includes it (None: all of them).
    """

    name: str
    dimension: Dimension
    fn: Callable[[Step], float]
    variables: tuple[str, ...] = ()
    agents: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.dimension not in DIMENSIONS:
            raise ValueError(f"dimension must be one of {DIMENSIONS}, not {self.dimension!r}")

    def concerns(self, agent: str) -> bool:
        return self.agents is None or agent in self.agents


def level(
    variable: str,
    target: float = 0.0,
    scale: float = 1.0,
    power: float = 1.0,
    dimension: Dimension = "physical",
    agents: Sequence[str] | None = None,
    name: str | None = None,
) -> Term:
    """``-(|x' - target| / scale) ** power`` on the next value ``x'`` of ``variable``."""
    return Term(
        name or f"{variable} level",
        dimension,
        lambda s: -((abs(s.next_state[variable] - target) / scale) ** power),
        (variable,),
        None if agents is None else tuple(agents),
    )


def limit(
    variable: str,
    upper: float | None = None,
    lower: float | None = None,
    scale: float = 1.0,
    dimension: Dimension = "abstract",
    agents: Sequence[str] | None = None,
    name: str | None = None,
) -> Term:
    """``-(max(0, x' - upper) + max(0, lower - x')) / scale``: a regulatory or safety limit."""
    hi = math.inf if upper is None else upper
    lo = -math.inf if lower is None else lower

    def fn(s: Step) -> float:
        x = s.next_state[variable]
        return -(max(0.0, x - hi) + max(0.0, lo - x)) / scale

    return Term(name or f"{variable} limit", dimension, fn, (variable,),
                None if agents is None else tuple(agents))


def cost(
    prices: Mapping[str, float],
    dimension: Dimension = "abstract",
    agents: Sequence[str] | None = None,
    name: str | None = None,
) -> Term:
    """``-sum_k price_k * a_k``: the cost of acting (a tariff, a toxicity per dose)."""
    items = dict(prices)
    return Term(
        name or "cost of " + "+".join(items),
        dimension,
        lambda s: -sum(p * s.action.get(k, 0.0) for k, p in items.items()),
        tuple(items),
        None if agents is None else tuple(agents),
    )


def budget(
    variable: str,
    total: float,
    scale: float = 1.0,
    dimension: Dimension = "abstract",
    agents: Sequence[str] | None = None,
    name: str | None = None,
) -> Term:
    """``-max(0, T_k - total) / scale`` counted once per step beyond the budget, where
    ``T_k`` is the action's sum so far (a dose budget): each unit spent beyond it costs."""

    def fn(s: Step) -> float:
        spent = s.totals.get(variable, 0.0)
        over = max(0.0, spent - total) - max(0.0, spent - s.action.get(variable, 0.0) - total)
        return -over / scale

    return Term(name or f"{variable} budget", dimension, fn, (variable,),
                None if agents is None else tuple(agents))


def uncertainty(
    variables: Sequence[str],
    scale: float = 1.0,
    agents: Sequence[str] | None = None,
    name: str = "twin uncertainty",
) -> Term:
    """``-sum_k sigma_k / scale``: the twin's predictive spread where the agents lead it
    (a computational term: zero on the true system, where nothing is predicted)."""
    names = tuple(variables)
    return Term(name, "computational",
                lambda s: -sum(s.sigma.get(k, 0.0) for k in names) / scale, names,
                None if agents is None else tuple(agents))


class Weights(NamedTuple):
    """``(w_p, w_a, w_c)``: the weights of the physical, abstract and computational sums."""

    physical: float = 1.0
    abstract: float = 1.0
    computational: float = 1.0


WeightsLike = Weights | Sequence[float] | Mapping[str, float]
WeightRule = Callable[[Mapping[str, float]], WeightsLike]


def check_weights(value: object) -> Weights:
    """Return ``value`` as ``Weights``; raise ``InvalidWeights`` when any is negative or not
    finite, or they sum to zero."""
    try:
        if isinstance(value, Mapping):
            unknown = set(value) - set(Weights._fields)
            if unknown:
                raise InvalidWeights(value, f"unknown dimensions {sorted(unknown)}")
            w = Weights(**{k: float(v) for k, v in value.items()})
        else:
            items = [float(x) for x in value]  # type: ignore[attr-defined]
            if len(items) != 3:
                raise InvalidWeights(value, "give three weights: physical, abstract, computational")
            w = Weights(*items)
    except (TypeError, ValueError) as exc:
        raise InvalidWeights(value, f"not three numbers ({exc})") from None
    if not all(math.isfinite(x) for x in w):
        raise InvalidWeights(value, "NaN or infinite")
    if any(x < 0 for x in w):
        raise InvalidWeights(value, "negative")
    if sum(w) <= 0:
        raise InvalidWeights(value, "they sum to zero")
    return w


@dataclass(frozen=True)
class Crisis:
    """Crisis mode: ``crisis`` weights while any variable lies outside its limits,
    ``normal`` weights otherwise (e.g. raise ``w_p`` when a tumour passes a size).

    Attributes:
        limits: variable -> (lower, upper), None for no bound on that side.
        normal: weights in normal operation.
        crisis: weights in a crisis.
    """

    limits: Mapping[str, tuple[float | None, float | None]]
    normal: WeightsLike = (1.0, 1.0, 1.0)
    crisis: WeightsLike = (3.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        check_weights(self.normal)
        check_weights(self.crisis)

    def active(self, state: Mapping[str, float]) -> bool:
        for name, (lo, hi) in self.limits.items():
            x = state.get(name)
            if x is not None and ((lo is not None and x < lo) or (hi is not None and x > hi)):
                return True
        return False

    def __call__(self, state: Mapping[str, float]) -> WeightsLike:
        return self.crisis if self.active(state) else self.normal


@dataclass
class Evaluation:
    """One step scored: the objective, its three sums, each term and the weights used."""

    value: float
    sums: dict[str, float]
    terms: dict[str, float]
    weights: Weights


class Objective:
    """``O = w_p P + w_a A + w_c C`` over tagged terms, weights recomputed each step.

    Args:
        terms: the terms; names must be unique.
        weights: fixed weights, or a function of the state at the start of each step
            (a :class:`Crisis` or any user function) returning three weights.

    Example:
        >>> from lmtwin.cooperate import Objective, level, cost
        >>> o = Objective([level("v", scale=100.0), cost({"ca": 0.1})], weights=(1, 1, 1))
        >>> o.evaluate(Step({"v": 50.0}, {"ca": 5.0}, {"v": 40.0})).value
        -0.9
    """

    def __init__(self, terms: Iterable[Term],
                 weights: WeightsLike | WeightRule = (1.0, 1.0, 1.0)) -> None:
        self.terms = list(terms)
        if not self.terms:
            raise ValueError("an objective needs at least one term")
        names = [t.name for t in self.terms]
        if len(set(names)) != len(names):
            raise ValueError(f"term names must be unique: {names}")
        self.rule: WeightRule | None = weights if callable(weights) else None
        self.fixed: Weights | None = None if callable(weights) else check_weights(weights)

    @property
    def variables(self) -> set[str]:
        out = {v for t in self.terms for v in t.variables}
        if isinstance(self.rule, Crisis):
            out |= set(self.rule.limits)
        return out

    def check(self, schema: Schema, agents: Iterable[str] = ()) -> None:
        """Raise ``UnknownVariable`` for a term on a variable the schema lacks, and
        ``CooperateError`` for a term naming an unknown agent."""
        for name in sorted(self.variables):
            if name not in schema:
                raise UnknownVariable(name, list(schema.variables))
        known = set(agents)
        for t in self.terms:
            if t.agents is not None and known and not set(t.agents) <= known:
                raise CooperateError(f"term {t.name!r} names unknown agents "
                                     f"{sorted(set(t.agents) - known)}; agents: {sorted(known)}")

    def weights(self, state: Mapping[str, float]) -> Weights:
        """The weights for a step starting in ``state`` (checked every time)."""
        if self.fixed is not None:
            return self.fixed
        assert self.rule is not None
        return check_weights(self.rule(state))

    def evaluate(self, step: Step) -> Evaluation:
        """Score one step."""
        w = self.weights(step.state)
        terms = {t.name: float(t.fn(step)) for t in self.terms}
        sums: dict[str, float] = dict.fromkeys(DIMENSIONS, 0.0)
        for t in self.terms:
            sums[t.dimension] += terms[t.name]
        value = w.physical * sums["physical"] + w.abstract * sums["abstract"]
        value += w.computational * sums["computational"]
        return Evaluation(value, sums, terms, w)

    def rewards(self, evaluation: Evaluation, agents: Iterable[str]) -> dict[str, float]:
        """Each agent's own reward ``R_i = sum_d w_d * (sum of its terms of dimension d)``."""
        w = evaluation.weights._asdict()
        return {
            a: sum(w[t.dimension] * evaluation.terms[t.name] for t in self.terms if t.concerns(a))
            for a in agents
        }

    def trajectory(self, steps: Iterable[Step]) -> float:
        """The objective summed over a trajectory: what an optimiser maximises."""
        return sum(self.evaluate(s).value for s in steps)

    def as_cost(self) -> PlanCost:
        """This objective as the cost the intervene stage minimises (``Twin.optimise``,
        ``Twin.compare``, MPC): the same object drives plans and the agents' rewards."""
        return PlanCost(self)


class PlanCost:
    """An ``Objective`` seen by the intervene stage: each sampled path's cost is minus the
    objective summed over its steps, the weights recomputed at every step as the agents
    see them (``Objective.trajectory``).

    Args:
        objective: the cooperative objective.
    """

    def __init__(self, objective: Objective) -> None:
        self.objective = objective

    def check(self, schema: Schema, rolled: Sequence[str]) -> None:
        """Unknown variables refused; every state variable it reads must be rolled out."""
        self.objective.check(schema)
        missing = sorted(v for v in self.objective.variables
                         if v in schema.states and v not in rolled)
        if missing:
            raise CooperateError(f"the objective reads {missing}, which the state does not give")

    def evaluate(self, variables: Sequence[str], paths: np.ndarray, actions: Sequence[str],
                 plans: np.ndarray) -> np.ndarray:
        """Cost of each path: ``paths`` (n, horizon + 1, S), ``plans`` (n, horizon, A)."""
        names, acts = list(variables), list(actions)
        cost = np.zeros(len(paths))
        for i in range(len(paths)):
            totals = dict.fromkeys(acts, 0.0)
            for h in range(plans.shape[1]):
                action = dict(zip(acts, map(float, plans[i, h]), strict=True))
                for k, v in action.items():
                    totals[k] += v
                step = Step(dict(zip(names, map(float, paths[i, h]), strict=True)), action,
                            dict(zip(names, map(float, paths[i, h + 1]), strict=True)), h,
                            dict(totals))
                cost[i] -= self.objective.evaluate(step).value
        return cost
