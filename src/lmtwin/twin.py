"""The Twin: mirrors a system from observations and predicts its response to actions.

Orchestration only. Data flow (see DESIGN.md)::

    observe(values) -> schema.validate -> store.append
                    -> each new transition: predicted from what came before it, scored
                       (lmtwin.scoring: Hedge weights, calibrator, listeners) -> retriever.add
    predict(state, action) -> retriever.search(k) -> each predictor in context
                           -> lmtwin.predictors.combine: weights, interval, samples
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmtwin.errors import BackendError, InvalidValue, NotReady, SchemaError
from lmtwin.llm.base import LLMBackend
from lmtwin.predictors import (
    Hedge,
    LLMPredictor,
    LocalRidge,
    NearestNeighbours,
    Persistence,
    Predictor,
    Query,
)
from lmtwin.predictors.base import Examples, Forecast, wanted
from lmtwin.predictors.batch import forecast_transitions
from lmtwin.predictors.combine import combine
from lmtwin.predictors.ridge_cv import RidgeCV
from lmtwin.retrieval import Retriever
from lmtwin.schema import Schema, SchemaChange, Variable
from lmtwin.scoring import Listener, Score, Scorer
from lmtwin.store import Note, SQLiteStore, Store
from lmtwin.tuner import Tuner
from lmtwin.types import Observation, Prediction, Transition
from lmtwin.uncertainty import Calibrator

__all__ = ["Score", "Simulation", "Twin", "default_predictors"]


@dataclass
class _Pending:
    state: dict[str, float]
    action: dict[str, float]
    prediction: Prediction


@dataclass
class Simulation:
    """Sample paths of the state: ``paths`` has shape (n_paths, horizon + 1, n_variables)."""

    variables: list[str]
    paths: np.ndarray

    def quantiles(self, q: Sequence[float] = (0.05, 0.5, 0.95)) -> np.ndarray:
        return np.quantile(self.paths, q, axis=0)


def default_predictors(backend: LLMBackend | None = None) -> list[Predictor]:
    """Persistence, the numeric in-context learner, a ridge with its penalty chosen by
    leave-one-out error on the 64 nearest rows (a short series' whole history), the
    average change of the 5 nearest rows and the language model (embedded Gemma 3 270M
    when ``backend`` is None)."""
    if backend is None:
        from lmtwin.llm import LlamaCppBackend

        backend = LlamaCppBackend()
    return [Persistence(), LocalRidge(), RidgeCV(k=64), NearestNeighbours(), LLMPredictor(backend)]


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
        seed: seed of the sampling.
        score_window: a bulk load (``observe_many``, reopening a store) scores only its
            last ``score_window`` transitions: the weights' discount (0.95 a step) and the
            calibrator's window (300 residuals) forget anything older, so scoring it would
            cost time and change nothing. Every transition from ``observe`` is scored.
        costly_every: a costly predictor (one with ``costly = True``: the language model)
            joins the scoring of every ``costly_every``-th transition from ``observe``
            (0: never), and of every live prediction it answered.
        max_pending: live predictions kept waiting for their episode's next observation
            (the oldest are dropped beyond it).

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
        score_window: int = 1000,
        costly_every: int = 20,
        max_pending: int = 1000,
    ) -> None:
        if not (isinstance(level, (int, float)) and 0 < level < 1):
            raise InvalidValue("level", level, "the intervals' coverage must lie in (0, 1)")
        for field_name, value in (("n_samples", n_samples), ("score_window", score_window),
                                  ("costly_every", costly_every), ("max_pending", max_pending)):
            if not isinstance(value, int) or value < (1 if field_name == "n_samples" else 0):
                raise InvalidValue(field_name, value, "must be a non-negative integer")
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
        self.scorer = Scorer(Hedge(), Calibrator())
        self.score_window = score_window
        self.costly_every = costly_every
        self.max_pending = max_pending
        self.schema = Schema()
        self._last: dict[str, Observation] = {}
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._notes: list[Note] = []
        self._since_costly = 0
        self.tuner: Tuner | None = None
        self._rng = np.random.default_rng(seed)
        self._lock = threading.RLock()
        self._reload()
        for var in variables or []:
            if var.name not in self.schema:
                self.add_variable(var)

    # --- model -----------------------------------------------------------------------
    @property
    def hedge(self) -> Hedge:
        """The combination weights (learnt by the scorer)."""
        return self.scorer.hedge

    @hedge.setter
    def hedge(self, hedge: Hedge) -> None:
        self.scorer.hedge = hedge

    @property
    def calibrator(self) -> Calibrator:
        """The conformal calibrator of the intervals (fed by the scorer)."""
        return self.scorer.calibrator

    @calibrator.setter
    def calibrator(self, calibrator: Calibrator) -> None:
        self.scorer.calibrator = calibrator

    @property
    def scores_(self) -> list[Score]:
        """Scored predictions, oldest first (every transition is scored: see scoring)."""
        return self.scorer.scores

    @property
    def unscored_(self) -> Counter[str]:
        """Transitions that could not be scored, by reason (reported, never hidden)."""
        return self.scorer.unscored

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(score)`` for every scored prediction, before its residual
        reaches the calibrator (so a p-value against the calibrator is out-of-sample)."""
        self.scorer.listeners.append(listener)

    def _reload(self) -> None:
        """Rebuild schema, transitions and last observations from the store, scoring the
        last ``score_window`` transitions as they are linked."""
        for change in self.store.schema_changes(self.name):
            self.schema.apply(change)
        self._notes = self.store.notes(self.name)
        self._link_many(self.store.observations(self.name))

    def _link_many(self, observations: Sequence[Observation]) -> None:
        """Link a bulk of observations; score the last ``score_window`` transitions in
        chunks, each chunk in one batch from what was stored before it (never from itself
        or later), then learn them in order. A chunk is at most a sixteenth of what is
        already stored (1 to 256): predicted from a store half their age (the rule was
        "as large as what is stored"), a short series' later rows were forecast far
        ahead of their examples, and those errors set the weights (on the plankton
        series the numeric learner, the best one after, started 334x persistence)."""
        first_scored = len(observations) - self.score_window
        window: list[tuple[Transition, _Pending | None, float]] = []
        for i, obs in enumerate(observations):
            made = self._transition(obs)
            if made is None:
                continue
            if i >= first_scored:
                window.append(made)
            else:
                self._add(made[0])
        start = 0
        while start < len(window):
            size = min(256, max(1, len(self.retriever) // 16))
            self._score_chunk(window[start : start + size])
            start += size

    def _score_chunk(self, chunk: Sequence[tuple[Transition, _Pending | None, float]]) -> None:
        forecasts = forecast_transitions(
            self.predictors, self.retriever, self.schema, self._notes,
            [tr for tr, pending, _ in chunk if not self._same(tr, pending)],
            lambda p, q: self._ask([p], q)[0])
        for tr, pending, at in chunk:
            if self._same(tr, pending):
                assert pending is not None
                self.scorer.record(tr, pending.prediction, "live", at)
            elif id(tr) in forecasts:
                query, answered, skipped = forecasts[id(tr)]
                if answered:
                    self.scorer.record(tr, self._combined(query, answered, skipped, [], 0),
                                       "prequential", at)
                else:
                    self.scorer.unscored[f"NotReady: no predictor could answer: {skipped}"[
                        :120]] += 1
            self._add(tr)

    def _transition(
        self, obs: Observation
    ) -> tuple[Transition, _Pending | None, float] | None:
        """The transition from the episode's previous observation to ``obs`` (None for an
        episode's first observation), with the live prediction waiting for it and the
        time of ``obs`` (what a score of the transition is dated)."""
        last = self._last.get(obs.episode)
        self._last[obs.episode] = obs
        if last is None:
            return None
        roles = self.schema.variables
        state = {k: v for k, v in last.values.items() if k in roles and roles[k].role != "action"}
        action = {k: v for k, v in last.values.items() if k in roles and roles[k].role == "action"}
        nxt = {k: v for k, v in obs.values.items() if k in roles and roles[k].role == "state"}
        return (Transition(obs.episode, last.t, state, action, nxt),
                self._pending.pop(obs.episode, None), obs.t)

    def _add(self, transition: Transition) -> None:
        self.retriever.add(transition)
        if self.tuner is not None:
            self.tuner.poke()

    @staticmethod
    def _same(transition: Transition, pending: _Pending | None) -> bool:
        """Whether a live prediction was made from this transition's state and action."""
        return (
            pending is not None
            and pending.action == transition.action
            and all(transition.state.get(k) == v for k, v in pending.state.items())
        )

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
        with self._lock:
            self.store.append_note(self.name, note)
            self._notes.append(note)
        return note

    @property
    def notes(self) -> list[Note]:
        """The knowledge notes, oldest first (kept in memory; the store has them too)."""
        return list(self._notes)

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
            episode = _episode(episode)
            clean = self.schema.validate(values, strict=strict)
            if not clean:
                raise SchemaError("an observation needs at least one value")
            last = self._last.get(episode)
            if t is None:
                t = 0.0 if last is None else last.t + 1.0
            t = self.schema.check_value("t", t)
            if last is not None and t <= last.t:
                raise InvalidValue("t", t, f"not after the episode's last time {last.t}")
            obs = Observation(episode, t, clean)
            unknown = self.schema.unknown(clean)
            try:  # the new variables and the observation commit together, or neither
                with self.store.transaction():
                    for name in unknown:
                        self.add_variable(Variable(name, "state", description="added from data"))
                    self.store.append(self.name, [obs], self.schema.version)
            except BaseException:
                if unknown:  # back to the stored schema
                    self.schema = Schema()
                    for change in self.store.schema_changes(self.name):
                        self.schema.apply(change)
                    self.retriever.invalidate()
                raise
            self._link(obs)
            return obs

    def observe_many(self, observations: Sequence[Observation]) -> int:
        """Record many observations in one transaction, all or none (strict validation).

        Each episode's times must rise, within the batch and after what is stored; every
        observation needs at least one value. The last ``score_window`` transitions are
        scored prequentially (see ``Twin``)."""
        with self._lock:
            clean: list[Observation] = []
            last_t = {ep: o.t for ep, o in self._last.items()}
            for i, o in enumerate(observations):
                if not isinstance(o, Observation):
                    raise InvalidValue(f"observations[{i}]", o, "not an Observation")
                values = self.schema.validate(o.values, strict=True)
                if not values:
                    raise SchemaError(f"observations[{i}] has no values")
                episode = _episode(o.episode)
                t = self.schema.check_value("t", o.t)
                before = last_t.get(episode)
                if before is not None and t <= before:
                    raise InvalidValue(
                        f"observations[{i}].t", t,
                        f"not after episode {episode!r}'s last time {before}")
                last_t[episode] = t
                clean.append(Observation(episode, t, values))
            self.store.append(self.name, clean, self.schema.version)
            self._link_many(clean)
            return len(clean)

    def _link(self, obs: Observation) -> None:
        """Turn the episode's previous observation and this one into a transition, score
        it from what came before it, then add it to what the twin retrieves from."""
        made = self._transition(obs)
        if made is not None:
            self._score(*made)
            self._add(made[0])

    def _score(self, transition: Transition, pending: _Pending | None, at: float) -> None:
        """Score the transition prequentially: reuse a live prediction made from the same
        state and action, else predict it now (costly predictors every n-th time)."""
        state, action = transition.state, transition.action
        if self._same(transition, pending):
            assert pending is not None
            self.scorer.record(transition, pending.prediction, "live", at)
            return
        targets = [t for t in self.schema.states if t in transition.next_state and t in state]
        if not targets:
            return
        self._since_costly += 1
        ask_costly = self.costly_every > 0 and self._since_costly >= self.costly_every
        chosen = [p for p in self.predictors if ask_costly or not getattr(p, "costly", False)]
        if ask_costly:
            self._since_costly = 0
        query = Query(dict(state), dict(action), targets, self.schema, self._notes)
        try:
            forecasts, skipped, examples = self._ask(chosen, query)
            prediction = self._combined(query, forecasts, skipped, examples, 0)
        except NotReady as exc:
            self.scorer.unscored[f"NotReady: {exc}"[:120]] += 1
            return
        self.scorer.record(transition, prediction, "prequential", at)

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
            prediction = self._combined(query, forecasts, skipped, examples)
            if episode is not None:
                key = _episode(episode)
                self._pending.pop(key, None)
                self._pending[key] = _Pending(dict(query.state), dict(query.action), prediction)
                while len(self._pending) > self.max_pending:
                    self._pending.popitem(last=False)
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
            mean = np.zeros(len(query.targets))
            for n, f in forecasts.items():
                if weights[n] > 0:
                    mean = mean + weights[n] * f.mean
            return {t: float(v) for t, v in zip(query.targets, mean, strict=True)}

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
        query = Query(s, a, targets, self.schema, self._notes)
        forecasts, skipped, examples = self._ask(chosen, query)
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
        self, chosen: list[Predictor], query: Query
    ) -> tuple[dict[str, Forecast], dict[str, str], list[Transition]]:
        """Retrieve once for the predictor wanting most examples; ask each predictor."""
        most = max((wanted(p) for p in chosen), default=0)
        examples = Examples(
            self.retriever.search(query.state, query.action, self.schema, k=most)
            if most else [],
            lambda k: self.retriever.search(query.state, query.action, self.schema, k=k))
        forecasts: dict[str, Forecast] = {}
        skipped: dict[str, str] = {}
        for p in chosen:
            try:
                # examples are nearest last: each predictor gets the nearest it wants
                n = wanted(p)
                forecast = p.predict(query, examples.last(n))
            except (NotReady, BackendError) as exc:
                # reported in provenance: a clear fallback, never a silent guess
                skipped[p.name] = f"{type(exc).__name__}: {exc}"
                continue
            if not np.all(np.isfinite(forecast.samples)):
                skipped[p.name] = "NotReady: a non-finite forecast (values near the float limit)"
                continue
            forecasts[p.name] = forecast
        if not forecasts:
            raise NotReady(f"no predictor could answer: {skipped}")
        return forecasts, skipped, examples

    def _combined(
        self,
        query: Query,
        forecasts: dict[str, Forecast],
        skipped: dict[str, str],
        examples: list[Transition],
        n_samples: int | None = None,
    ) -> Prediction:
        return combine(query, forecasts, self.hedge, self.calibrator, self.level,
                       self.n_samples if n_samples is None else n_samples, self._rng,
                       skipped, examples, self.schema.version)

    def simulate(
        self,
        state: Mapping[str, object] | Sequence[Mapping[str, object]],
        plan: Sequence[Mapping[str, object]],
        n_paths: int | None = None,
        horizon: int | None = None,
        seed: int | np.random.Generator | None = None,
        predictors: Sequence[str] | None = None,
    ) -> Simulation:
        """Sample ``n_paths`` paths of the state along ``plan`` (one action mapping per
        step), all at once (``lmtwin.intervene``): the numeric predictors answer every path
        in one batch, combined with the Hedge weights; each step's noise is drawn from the
        calibrated residuals. Every path is a sample (none is the mean path). ``seed``
        fixes the noise (common random numbers across calls); None draws it from the
        twin's generator. ``predictors`` may name the language model: one call per
        path-step. Raises NotReady while the intervals are uncalibrated.

        ``state`` may give one start state per path (a cohort, a filter's state
        samples): a list of mappings, or a mapping of 1-d arrays of one length; then
        ``n_paths`` defaults to their number (``intervene.plans.check_starts``)."""
        from lmtwin.intervene import simulate

        out = simulate(self, state, plan, n_paths, horizon, seed, predictors)
        return Simulation(out.variables, out.paths)

    # --- encoder ---------------------------------------------------------------------
    def tune(
        self, steps: int = 1000, on_step: Callable[[int, float], None] | None = None
    ) -> list[float]:
        """Fine-tune the retrieval encoder (only it) on the stored transitions, now.

        Replaces the raw encoder by the CALM-DT set encoder on first call; predictors are
        never retrained. The twin keeps serving while it trains. Returns the contrastive
        loss per step; ``on_step(step, loss)`` follows it (the CLI draws a progress bar
        with it). ``start_tuner`` does this in the background as data arrives.
        """
        from lmtwin.tuner import tune_twin

        return tune_twin(self, steps, on_step)[1]

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

    # --- intervene (lmtwin.intervene) ---
    def _now(self, state: Mapping[str, object] | None, episode: str) -> Mapping[str, object]:
        """``state``, or the episode's latest state and context values."""
        if state is not None:
            return state
        roles = self.schema.variables
        return {k: v for k, v in self.state(episode).items()
                if k in roles and roles[k].role != "action"}

    def compare(self, state: Mapping[str, object] | None, plans: Any, horizon: int,
                n_paths: int = 200, objective: Any = None, seed: int | None = 0,
                episode: str = "default", **options: Any) -> Any:
        """What-if: simulate each plan (a mapping name -> plan, or a list) from ``state``
        on the same noise; each plan's trajectory and ``objective`` distribution, and
        for each pair the probability one beats the other on the same paths. See
        ``lmtwin.intervene.compare``."""
        from lmtwin.intervene import compare

        if objective is None:
            raise SchemaError("compare needs an objective (lmtwin.intervene.Objective)")
        return compare(self, self._now(state, episode), plans, horizon, n_paths, objective,
                       seed=seed, **options)

    def optimise(self, state: Mapping[str, object] | None, objective: Any, horizon: int,
                 constraints: Any = None, episode: str = "default", **options: Any) -> Any:
        """The action plan minimising the expected ``objective`` over ``horizon`` steps,
        within the schema's bounds and ``constraints`` (CMA-ES on batched rollouts); an
        ``OptimalPlan`` with the expected objective and its interval. See
        ``lmtwin.intervene.optimise``."""
        from lmtwin.intervene import optimise

        return optimise(self, self._now(state, episode), objective, horizon, constraints,
                        **options)[0]

    def mpc(self, objective: Any, horizon: int, constraints: Any = None,
            replan_every: int = 1, **options: Any) -> Any:
        """A receding-horizon controller: ``controller.act(state)`` re-plans on this twin
        as each observation arrives and returns the action to apply now."""
        from lmtwin.intervene import MPC

        return MPC(self, objective, horizon, constraints, replan_every, **options)

    def time_to(self, variable: str, threshold: float, plan: Sequence[Mapping[str, object]],
                horizon: int, state: Mapping[str, object] | None = None,
                n_paths: int = 500, seed: int | None = 0, episode: str = "default",
                **options: Any) -> Any:
        """When ``variable`` first crosses ``threshold`` along ``plan``: per-path times,
        median, interval and probability of crossing within ``horizon``. See
        ``lmtwin.intervene.time_to``."""
        from lmtwin.intervene import time_to

        return time_to(self, variable, threshold, plan, horizon, self._now(state, episode),
                       n_paths, seed, **options)


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


def _episode(episode: object) -> str:
    """Episodes are named by text: 1 and "1" are the same episode."""
    if isinstance(episode, bool) or not isinstance(episode, (str, int)):
        raise InvalidValue("episode", episode, "an episode is named by a string or an integer")
    name = str(episode)
    if not name or len(name) > 200:
        raise InvalidValue("episode", episode, "an episode name has 1 to 200 characters")
    return name
