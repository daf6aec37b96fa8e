"""The Twin: mirrors a system from observations and predicts its response to actions.

Data flow (see DESIGN.md)::

    observe(values) -> schema.validate -> store.append -> retriever.add -> score pending
    predict(state, action) -> retriever.search(k) -> each predictor in context
                           -> Hedge weights -> conformal interval -> Prediction
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmtwin.errors import BackendError, InvalidValue, NotReady, SchemaError
from lmtwin.llm.base import LLMBackend
from lmtwin.predictors import Hedge, LLMPredictor, LocalRidge, Persistence, Predictor, Query
from lmtwin.predictors.base import Forecast
from lmtwin.retrieval import Retriever
from lmtwin.tuner import Tuner
from lmtwin.schema import Schema, SchemaChange, Variable
from lmtwin.store import Note, SQLiteStore, Store
from lmtwin.types import Observation, Prediction, Transition
from lmtwin.uncertainty import Calibrator
from lmtwin.uncertainty.conformal import difficulty


@dataclass
class _Pending:
    state: dict[str, float]
    by_predictor: dict[str, dict[str, float]]
    mean: dict[str, float]
    sigma: dict[str, float]
    lower: dict[str, float]
    upper: dict[str, float]
    weights: dict[str, float]


@dataclass
class Score:
    """One scored prediction of one target, kept in ``Twin.scores_``."""

    episode: str
    t: float
    target: str
    actual: float
    combined: float
    lower: float | None
    upper: float | None
    by_predictor: dict[str, float] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)


@dataclass
class Simulation:
    """Sample paths of the state: ``paths`` has shape (n_paths, horizon + 1, n_variables)."""

    variables: list[str]
    paths: np.ndarray

    def quantiles(self, q: Sequence[float] = (0.05, 0.5, 0.95)) -> np.ndarray:
        return np.quantile(self.paths, q, axis=0)


def default_predictors(backend: LLMBackend | None = None) -> list[Predictor]:
    """Persistence, the numeric in-context learner and the language model (embedded
    Gemma 3 270M when ``backend`` is None)."""
    if backend is None:
        from lmtwin.llm import LlamaCppBackend

        backend = LlamaCppBackend()
    return [Persistence(), LocalRidge(), LLMPredictor(backend)]


class Twin:
    """A digital twin that learns in context and updates without retraining.

    Args:
        name: the twin's name in its store.
        variables: the initial schema (ignored for variables the store already has).
        store: a ``Store``, a path to an SQLite file, or None for an in-memory SQLite.
        predictors: None for ``default_predictors(backend)``.
        backend: the language model for the default predictors (None: embedded Gemma).
        retriever: None for raw standardised features and exact search, k=16.
        strict: unknown variables raise (True) or are added to the schema (False).
        level: nominal coverage of the prediction intervals.
        n_samples: samples carried by each Prediction.

    Example:
        >>> from lmtwin import Twin, Variable, Persistence, LocalRidge
        >>> twin = Twin(variables=[Variable("x")], predictors=[Persistence(), LocalRidge()])
        >>> _ = twin.observe({"x": 1.0}); _ = twin.observe({"x": 2.0})
        >>> round(twin.predict({"x": 2.0}).mean["x"], 3)
        2.0
    """

    def __init__(
        self,
        name: str = "twin",
        variables: Sequence[Variable] | None = None,
        store: Store | str | Path | None = None,
        predictors: Sequence[Predictor] | None = None,
        backend: LLMBackend | None = None,
        retriever: Retriever | None = None,
        strict: bool = True,
        level: float = 0.9,
        n_samples: int = 50,
        seed: int = 0,
    ) -> None:
        if not 0 < level < 1:
            raise ValueError("level must lie between 0 and 1")
        self.name = name
        self.store: Store = (
            SQLiteStore(":memory:")
            if store is None
            else SQLiteStore(store)
            if isinstance(store, (str, Path))
            else store
        )
        self._own_backend: LLMBackend | None = None
        if predictors is None and backend is None:
            from lmtwin.llm import LlamaCppBackend

            backend = self._own_backend = LlamaCppBackend()
        self.predictors: list[Predictor] = list(
            default_predictors(backend) if predictors is None else predictors
        )
        self.retriever = retriever if retriever is not None else Retriever()
        self.strict = strict
        self.level = level
        self.n_samples = n_samples
        self.hedge = Hedge()
        self.calibrator = Calibrator()
        self.schema = Schema()
        self.scores_: list[Score] = []
        self._last: dict[str, Observation] = {}
        self._pending: dict[str, _Pending] = {}
        self.tuner: Tuner | None = None
        self._rng = np.random.default_rng(seed)
        self._lock = threading.RLock()
        self._reload()
        for var in variables or []:
            if var.name not in self.schema:
                self.add_variable(var)

    # --- model -----------------------------------------------------------------------
    def _reload(self) -> None:
        """Rebuild schema, transitions and last observations from the store."""
        for change in self.store.schema_changes(self.name):
            self.schema.apply(change)
        for obs in self.store.observations(self.name):
            self._link(obs)

    def _changed(self, change: SchemaChange) -> SchemaChange:
        self.store.append_schema_change(self.name, change)
        self.retriever.invalidate()
        return change

    def add_variable(self, variable: Variable) -> SchemaChange:
        """Add a variable while the twin runs; versioned and stored."""
        with self._lock:
            return self._changed(self.schema.add(variable))

    def remove_variable(self, name: str) -> SchemaChange:
        """Remove a variable; its history stays in the store."""
        with self._lock:
            return self._changed(self.schema.remove(name))

    def describe_variable(self, name: str, **fields: Any) -> SchemaChange:
        """Change a variable's unit, description, bounds or role."""
        with self._lock:
            return self._changed(self.schema.describe(name, **fields))

    def add_knowledge(self, text: str, at: float | None = None) -> Note:
        """Add a free-text fact; it reaches the language model's prompt from now on."""
        if not isinstance(text, str) or not text.strip():
            raise SchemaError("a knowledge note must be non-empty text")
        if len(text) > 2000:
            raise SchemaError("a knowledge note must be at most 2000 characters")
        note = Note(time.time() if at is None else at, text.strip())
        self.store.append_note(self.name, note)
        return note

    @property
    def notes(self) -> list[Note]:
        return self.store.notes(self.name)

    # --- mirror ----------------------------------------------------------------------
    def observe(
        self,
        values: Mapping[str, object],
        episode: str = "default",
        t: float | None = None,
        strict: bool | None = None,
    ) -> Observation:
        """Record the values of some variables at time ``t`` of ``episode``.

        Values are validated before anything is stored; unknown names raise in strict
        mode and are added as state variables otherwise. ``t`` defaults to the episode's
        last time plus one. Returns the stored observation.
        """
        with self._lock:
            strict = self.strict if strict is None else strict
            clean = self.schema.validate(values, strict=strict)
            if not clean:
                raise SchemaError("an observation needs at least one value")
            last = self._last.get(episode)
            if t is None:
                t = 0.0 if last is None else last.t + 1.0
            t = self.schema.check_value("t", t)
            if last is not None and t <= last.t:
                raise InvalidValue("t", t, f"not after the episode's last time {last.t}")
            for name in self.schema.unknown(clean):
                self.add_variable(Variable(name, "state", description="added from data"))
            obs = Observation(str(episode), t, clean)
            self.store.append(self.name, [obs], self.schema.version)
            self._link(obs)
            return obs

    def observe_many(self, observations: Sequence[Observation]) -> int:
        """Record many observations in one transaction (strict validation)."""
        with self._lock:
            clean = [
                Observation(o.episode, o.t, self.schema.validate(o.values, strict=True))
                for o in observations
            ]
            self.store.append(self.name, clean, self.schema.version)
            for obs in clean:
                self._link(obs)
            return len(clean)

    def _link(self, obs: Observation) -> None:
        """Turn the episode's previous observation and this one into a transition."""
        last = self._last.get(obs.episode)
        self._last[obs.episode] = obs
        if last is None or obs.t <= last.t:
            return
        roles = self.schema.variables
        state = {k: v for k, v in last.values.items() if k in roles and roles[k].role != "action"}
        action = {k: v for k, v in last.values.items() if k in roles and roles[k].role == "action"}
        nxt = {k: v for k, v in obs.values.items() if k in roles and roles[k].role == "state"}
        self.retriever.add(Transition(obs.episode, last.t, state, action, nxt))
        if self.tuner is not None:
            self.tuner.poke()
        pending = self._pending.pop(obs.episode, None)
        if pending is not None:
            self._score(obs, pending)

    def _score(self, obs: Observation, pending: _Pending) -> None:
        actual = {t: obs.values[t] for t in pending.mean if t in obs.values}
        self.hedge.update(actual, pending.state, pending.by_predictor)
        for target, value in actual.items():
            self.calibrator.add(target, value, pending.mean[target], pending.sigma[target])
            self.scores_.append(
                Score(
                    obs.episode,
                    obs.t,
                    target,
                    value,
                    pending.mean[target],
                    pending.lower.get(target),
                    pending.upper.get(target),
                    {n: f[target] for n, f in pending.by_predictor.items() if target in f},
                    pending.weights,
                )
            )

    # --- intervene -------------------------------------------------------------------
    def _split(self, values: Mapping[str, object]) -> tuple[dict[str, float], dict[str, float]]:
        clean = self.schema.validate(values, strict=True)
        roles = self.schema.variables
        state = {k: v for k, v in clean.items() if roles[k].role != "action"}
        action = {k: v for k, v in clean.items() if roles[k].role == "action"}
        return state, action

    def predict(
        self,
        state: Mapping[str, object],
        action: Mapping[str, object] | None = None,
        episode: str | None = None,
        predictors: Sequence[str] | None = None,
    ) -> Prediction:
        """Predict the next state from ``state`` under ``action``.

        With ``episode``, the prediction is scored when that episode's next observation
        arrives: this is how combination weights and intervals learn from the stream.
        ``predictors`` names the predictors to ask (None: all), e.g. the fast numeric
        ones where a language model call per request would be too slow.
        """
        with self._lock:
            query, forecasts, skipped, examples = self._forecasts(state, action, predictors)
            s = query.state
            prediction = self._combine(query, forecasts, skipped, examples)
            if episode is not None:
                self._pending[str(episode)] = _Pending(
                    dict(s),
                    prediction.by_predictor,
                    prediction.mean,
                    prediction.provenance["sigma"],
                    prediction.lower,
                    prediction.upper,
                    prediction.weights,
                )
            return prediction

    def forecast(
        self,
        state: Mapping[str, object],
        action: Mapping[str, object] | None = None,
        predictors: Sequence[str] | None = None,
    ) -> dict[str, float]:
        """The combined point forecast of the next state only: no interval, no samples,
        never scored (the data assimilation's prior: one per reading)."""
        with self._lock:
            query, forecasts, _, _ = self._forecasts(state, action, predictors)
            weights = self.hedge.weights(list(forecasts))
            mean = sum(weights[n] * f.mean for n, f in forecasts.items())
            return {t: float(v) for t, v in zip(query.targets, np.ravel(mean), strict=True)}

    def _forecasts(
        self,
        state: Mapping[str, object],
        action: Mapping[str, object] | None,
        predictors: Sequence[str] | None,
    ) -> tuple[Query, dict[str, Forecast], dict[str, str], list[Transition]]:
        """Validate, retrieve, and ask each chosen predictor."""
        s, a = self._split(state)
        s2, a2 = self._split(action or {})
        if s2:
            raise SchemaError(f"{sorted(s2)} are not actions; pass them in state")
        a.update(a2)
        targets = [n for n in self.schema.states if n in s]
        if not targets:
            raise NotReady(
                "nothing to predict: the state has no state variable"
                if self.schema.states
                else "the twin has no state variables"
            )
        chosen = self._chosen(predictors)
        query = Query(s, a, targets, self.schema, self.notes)
        wanted = max((p.k for p in chosen), default=0)
        examples = self.retriever.search(s, a, self.schema, k=wanted) if wanted else []
        forecasts, skipped = self._ask(chosen, query, examples)
        return query, forecasts, skipped, examples

    def _chosen(self, names: Sequence[str] | None) -> list[Predictor]:
        if names is None:
            return self.predictors
        known = {p.name: p for p in self.predictors}
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            raise InvalidValue("predictors", list(names),
                               f"choose one or more of {sorted(known)}")
        return [known[n] for n in dict.fromkeys(names)]

    def _ask(
        self, chosen: list[Predictor], query: Query, examples: list[Transition]
    ) -> tuple[dict[str, Forecast], dict[str, str]]:
        forecasts: dict[str, Forecast] = {}
        skipped: dict[str, str] = {}
        for p in chosen:
            try:
                # examples are nearest last: each predictor gets its k nearest
                forecasts[p.name] = p.predict(
                    query, examples[max(0, len(examples) - p.k) :] if p.k else []
                )
            except (NotReady, BackendError) as exc:
                # reported in provenance: a clear fallback, never a silent guess
                skipped[p.name] = f"{type(exc).__name__}: {exc}"
        if not forecasts:
            raise NotReady(f"no predictor could answer: {skipped}")
        return forecasts, skipped

    def _combine(
        self,
        query: Query,
        forecasts: dict[str, Forecast],
        skipped: dict[str, str],
        examples: list[Transition],
    ) -> Prediction:
        targets = query.targets
        weights = self.hedge.weights(list(forecasts))
        means = {n: f.mean for n, f in forecasts.items()}
        mean = sum(weights[n] * means[n] for n in forecasts)
        assert isinstance(mean, np.ndarray)
        spread = np.sqrt(sum(weights[n] * (means[n] - mean) ** 2 for n in forecasts))
        lower, upper, sigma = {}, {}, {}
        samples = np.empty((self.n_samples, len(targets)))
        calibrated = True
        for j, t in enumerate(targets):
            cur = query.state[t]
            sigma[t] = difficulty(
                float(spread[j]),
                float(mean[j] - cur),
                float(np.sqrt(self.hedge.scale(t))) + abs(cur),
            )
            interval = self.calibrator.interval(t, float(mean[j]), sigma[t], self.level)
            if interval is None:
                calibrated = False
            else:
                lower[t], upper[t] = interval
        if calibrated:
            # samples drawn from the calibrated residual distribution around the mean
            for j, t in enumerate(targets):
                half = (upper[t] - lower[t]) / 2
                z = self._rng.standard_normal(self.n_samples) * half / 1.645
                samples[:, j] = mean[j] + z
        else:
            names = list(forecasts)
            picks = self._rng.choice(len(names), size=self.n_samples, p=[weights[n] for n in names])
            for i, p in enumerate(picks):
                s = forecasts[names[p]].samples
                samples[i] = s[self._rng.integers(len(s))]
        return Prediction(
            variables=targets,
            samples=samples,
            mean={t: float(mean[j]) for j, t in enumerate(targets)},
            lower=lower,
            upper=upper,
            level=self.level,
            by_predictor={
                n: {t: float(m[j]) for j, t in enumerate(targets)} for n, m in means.items()
            },
            weights=weights,
            provenance={
                "n_examples": len(examples),
                "schema_version": self.schema.version,
                "skipped": skipped,
                "calibrated": calibrated,
                "sigma": sigma,
                "info": {n: f.info for n, f in forecasts.items() if f.info},
            },
        )

    def simulate(
        self,
        state: Mapping[str, object],
        plan: Sequence[Mapping[str, object]],
        n_paths: int = 1,
        horizon: int | None = None,
    ) -> Simulation:
        """Roll predictions forward along ``plan`` (one action mapping per step), drawing
        one sample per step for each path. Costs ``horizon * n_paths`` predictions."""
        horizon = len(plan) if horizon is None else horizon
        if horizon < 1 or horizon > len(plan):
            raise SchemaError(f"horizon must lie in 1..{len(plan)} (the plan's length)")
        s0, _ = self._split(state)
        variables = [n for n in self.schema.states if n in s0]
        paths = np.empty((n_paths, horizon + 1, len(variables)))
        for p in range(n_paths):
            current = dict(s0)
            paths[p, 0] = [current[v] for v in variables]
            for step in range(horizon):
                pred = self.predict(current, plan[step])
                row = (
                    pred.samples[self._rng.integers(len(pred.samples))]
                    if p
                    else np.array([pred.mean[v] for v in pred.variables])
                )
                current.update({v: float(x) for v, x in zip(pred.variables, row, strict=True)})
                self._clip(current)
                paths[p, step + 1] = [current[v] for v in variables]
        return Simulation(variables, paths)

    def _clip(self, values: dict[str, float]) -> None:
        for k, v in values.items():
            var = self.schema.variables.get(k)
            if var is not None:
                lo = -np.inf if var.lower is None else var.lower
                hi = np.inf if var.upper is None else var.upper
                values[k] = float(np.clip(v, lo, hi))

    # --- encoder ---------------------------------------------------------------------
    def tune(
        self,
        steps: int = 1000,
        progress: bool = True,
        on_step: Callable[[int, float], None] | None = None,
    ) -> list[float]:
        """Fine-tune the retrieval encoder (only it) on the stored transitions, now.

        Replaces the raw encoder by the CALM-DT set encoder on first call; predictors are
        never retrained. The twin keeps serving while it trains. Returns the contrastive
        loss per step. ``start_tuner`` does this in the background as data arrives.
        """
        from lmtwin.tuner import tune_twin

        if not progress:
            return tune_twin(self, steps, on_step)[1]
        from rich.progress import Progress

        with Progress() as bar:
            task = bar.add_task("tuning the retrieval encoder", total=steps)

            def tick(step: int, loss: float) -> None:
                bar.update(task, advance=1, description=f"tuning encoder, loss {loss:.3f}")
                if on_step:
                    on_step(step, loss)

            return tune_twin(self, steps, tick)[1]

    def start_tuner(self, every: int = 500, steps: int = 1000,
                    min_transitions: int = 100) -> Tuner:
        """Re-tune the encoder in a background thread every ``every`` new transitions
        (the DESIGN's "tuner"); ``close`` stops it. Returns the running ``Tuner``."""
        from lmtwin.tuner import Tuner

        if self.tuner is not None:
            self.tuner.stop()
        self.tuner = Tuner(self, every, steps, min_transitions).start()
        return self.tuner

    # --- read ------------------------------------------------------------------------
    def history(
        self,
        variable: str | None = None,
        episode: str | None = None,
        t_from: float | None = None,
        t_to: float | None = None,
        as_of: float | None = None,
    ) -> list[Observation]:
        """Stored observations, optionally as they were known at the time ``as_of``."""
        return self.store.observations(self.name, episode, variable, t_from, t_to, as_of)

    def state(self, episode: str = "default", as_of: float | None = None) -> dict[str, float]:
        """The last known value of each variable of ``episode`` (as of a past time)."""
        values: dict[str, float] = {}
        for obs in self.history(episode=episode, as_of=as_of):
            values.update(obs.values)
        return values

    def close(self) -> None:
        """Stop the tuner; close the store and the backend the twin made itself (never
        one passed in)."""
        if self.tuner is not None:
            self.tuner.stop()
        self.store.close()
        if self._own_backend is not None:
            self._own_backend.close()

    # --- cooperate (lmtwin.cooperate) ---
    def env(self, objective: Any, horizon: int = 30, **options: Any) -> Any:
        """A Gymnasium environment whose dynamics are this twin's rollouts (fast numeric
        path), rewarded by ``objective``; options as ``lmtwin.cooperate.twin_game``.
        Extra ``agents``."""
        from lmtwin.cooperate import TwinEnv, twin_game

        return TwinEnv(twin_game(self, objective, horizon=horizon, **options))

    def parallel_env(self, agents: Mapping[str, Sequence[str]], objective: Any,
                     horizon: int = 30, **options: Any) -> Any:
        """A PettingZoo Parallel environment on this twin: each agent owns the action
        variables listed in ``agents`` and is rewarded with its shaped reward (options
        as ``lmtwin.cooperate.twin_game``: shaping, levels, default, ...). Extra ``agents``."""
        from lmtwin.cooperate import TwinParallelEnv, twin_game

        return TwinParallelEnv(twin_game(self, objective, agents, horizon, **options))
