"""Batched rollouts: N paths x H steps through the twin's own predictors, at once.

Paths start from one state or from one start state each (a cohort, a filter's samples).
At each step the nearest examples of every path come from one batch search (one matrix
product; on a large store one k-d tree query, or one faiss call for embeddings of many
dimensions) and one gather, each numeric predictor answers every path in numpy
(``predict_batch``), the answers are combined with the twin's Hedge weights,
and noise is drawn from the calibrated residuals: ``sigma * q(u)``, where ``q`` is the
inverse distribution of the twin's recent normalised residuals of similar difficulty
(``Calibrator.residual_quantiles``, five bins of sigma) and ``u`` uniforms drawn
once per rollout. Two plans given the same uniforms see the same noise (common random
numbers), so their difference is not hidden by sampling noise.

The language model joins only when named in ``predictors``: one call per path-step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from lmtwin.errors import BackendError, InvalidValue, NotReady
from lmtwin.intervene.plans import MAX_PATHS, check_count
from lmtwin.predictors.base import Predictor, wanted
from lmtwin.predictors.batch import retrieve_batch
from lmtwin.predictors.combine import sigmas
from lmtwin.predictors.simple import Batch
from lmtwin.scoring import dominant
from lmtwin.types import Query

if TYPE_CHECKING:
    from lmtwin.twin import Twin


@dataclass
class Rollout:
    """Sampled paths: ``paths`` (n, horizon + 1, S) of ``variables`` under ``plans``
    (n, horizon, A) of ``actions``; ``answered`` counts the path-steps each predictor
    answered (the others fell back to the rest, with Hedge weights renormalised)."""

    variables: list[str]
    paths: np.ndarray
    actions: list[str]
    plans: np.ndarray
    answered: dict[str, int] = field(default_factory=dict)


def uniforms(rng: np.random.Generator | int | None, n_paths: int, horizon: int,
             n_targets: int) -> np.ndarray:
    """The random numbers of a rollout, shape (n_paths, horizon, n_targets): pass the
    same array to several rollouts for common random numbers."""
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return gen.random((n_paths, horizon, n_targets))


def batch_predictors(twin: Twin, names: Sequence[str] | None) -> list[Predictor]:
    """The predictors of a rollout: those named (validated by the twin), or by default
    every predictor with a batch call (the language model only when named)."""
    if names is not None:
        return twin._chosen(names)
    chosen = [p for p in twin.predictors if hasattr(p, "predict_batch")]
    if not chosen:
        raise NotReady("the twin has no predictor with a batch call; name the predictors "
                       "to roll out with (one call per path-step)")
    return chosen


def rollout(
    twin: Twin,
    state: Mapping[str, float | np.ndarray],
    actions: Sequence[str],
    plans: np.ndarray,
    u: np.ndarray | None,
    predictors: Sequence[str] | None = None,
) -> Rollout:
    """Roll ``state`` (validated values: a number for every path, or an array (n,) of
    one start value per path, see ``plans.check_starts``) forward under ``plans``
    (n, horizon, A).

    ``u``: uniforms (n, horizon, targets) for the noise (see ``uniforms``), or None for
    the combined mean path without noise. The caller holds the twin's lock and has
    validated the inputs (``lmtwin.intervene.plans``).
    """
    schema = twin.schema
    n, horizon = plans.shape[0], plans.shape[1]
    check_count("n_paths", n, MAX_PATHS)
    targets = [v for v in schema.states if v in state]
    starts = {k: np.broadcast_to(np.asarray(v, dtype=float), (n,)) for k, v in state.items()}
    contexts = {k: v for k, v in starts.items() if k not in targets}
    chosen = batch_predictors(twin, predictors)
    if u is not None:
        u = np.asarray(u, dtype=float)
        if u.shape != (n, horizon, len(targets)):
            raise InvalidValue("u", u.shape, f"expected shape {(n, horizon, len(targets))}")
        missing = [t for t in targets if twin.calibrator.n(t) < twin.calibrator.min_residuals]
        if missing:
            raise NotReady(
                f"too little scored data to sample the uncertainty of {missing}: each needs "
                f"{twin.calibrator.min_residuals} scored predictions")
    names = sorted(list(targets) + list(contexts)) + sorted(f"a:{a}" for a in actions)
    k_max = max((wanted(p) for p in chosen), default=0)
    x = np.empty((n, horizon + 1, len(targets)))
    x[:, 0] = np.column_stack([starts[t] for t in targets])
    lower = np.array([_bound(schema, t, "lower") for t in targets])
    upper = np.array([_bound(schema, t, "upper") for t in targets])
    answered = {p.name: 0 for p in chosen}
    # noise from the residuals of predictions led by the predictor leading these paths
    # (the calibrator's Mondrian group, as a single prediction is calibrated)
    group = dominant(twin.hedge.weights([p.name for p in chosen]))
    for step in range(horizon):
        cur = x[:, step]
        columns = {f"s:{t}": cur[:, j] for j, t in enumerate(targets)}
        columns.update({f"s:{c}": v for c, v in contexts.items()})
        columns.update({f"a:{a}": plans[:, step, i] for i, a in enumerate(actions)})
        batch = retrieve_batch(twin.retriever, twin.schema, columns, names, targets, cur,
                               k_max)
        means = np.empty((len(chosen), n, len(targets)))
        ok = np.zeros((len(chosen), n), dtype=bool)
        for i, p in enumerate(chosen):
            means[i], ok[i] = _ask(twin, p, batch, columns, targets, contexts, actions)
            answered[p.name] += int(ok[i].sum())
        w = _weights(twin, [p.name for p in chosen], ok)
        if (w.sum(axis=0) <= 0).any():
            raise NotReady(f"no predictor could answer {int((w.sum(axis=0) <= 0).sum())} "
                           f"of {n} paths at step {step}")
        mean = np.einsum("pn,pnt->nt", w, np.where(ok[:, :, None], means, 0.0))
        nxt = mean
        if u is not None:
            # the twin's difficulty (combine.sigmas, as a single prediction's), every path
            sigma = sigmas(mean, cur, means.transpose(1, 0, 2), ok.T, w.T, twin.hedge,
                           twin.calibrator, targets)
            z = np.column_stack([_quantiles(twin, t, u[:, step, j], sigma[:, j], group)
                                 for j, t in enumerate(targets)])
            nxt = mean + sigma * z
        nxt = np.clip(nxt, lower, upper)
        if not np.isfinite(nxt).all():
            raise NotReady(f"the rollout left finite numbers at step {step}")
        x[:, step + 1] = nxt
    return Rollout(targets, x, list(actions), plans, answered)


def _quantiles(twin: Twin, target: str, u: np.ndarray, sigma: np.ndarray,
               group: str | None) -> np.ndarray:
    q = twin.calibrator.residual_quantiles(target, u, sigma, group=group)
    if q is None:  # checked before the rollout; a concurrent reset of the calibrator
        raise NotReady(f"the intervals of {target!r} are not calibrated")
    return q


def _weights(twin: Twin, names: list[str], ok: np.ndarray) -> np.ndarray:
    """(P, n) Hedge weights of the predictors that answered each path, as a single
    prediction would weigh them (one call per pattern of answers, not per path)."""
    if ok.all():  # the usual case: every predictor answered every path
        got = twin.hedge.weights(names)
        return np.repeat(np.array([[got[nm]] for nm in names]), ok.shape[1], axis=1)
    w = np.zeros(ok.shape)
    patterns, inverse = np.unique(ok.T, axis=0, return_inverse=True)
    for i, pattern in enumerate(patterns):
        answered = [nm for nm, a in zip(names, pattern, strict=True) if a]
        got = twin.hedge.weights(answered)
        cols = np.flatnonzero(inverse.ravel() == i)
        for j, nm in enumerate(names):
            if pattern[j]:
                w[j, cols] = got[nm]
    return w


def _bound(schema: object, name: str, which: str) -> float:
    var = schema[name]  # type: ignore[index]
    value = getattr(var, which)
    return (-np.inf if which == "lower" else np.inf) if value is None else float(value)


def _ask(twin: Twin, p: Predictor, batch: Batch, columns: dict[str, np.ndarray],
         targets: list[str], contexts: Mapping[str, np.ndarray],
         actions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    predict_batch = getattr(p, "predict_batch", None)
    if predict_batch is not None:
        mean, ok = predict_batch(batch)
        return np.asarray(mean, dtype=float), np.asarray(ok, dtype=bool)
    # one call per path-step (the language model, when asked for)
    n = len(batch.current)
    notes = twin.notes
    mean = np.zeros((n, len(targets)))
    ok = np.zeros(n, dtype=bool)
    for i in range(n):
        s = {t: float(batch.current[i, j]) for j, t in enumerate(targets)}
        s.update({c: float(v[i]) for c, v in contexts.items()})
        a = {name: float(columns[f"a:{name}"][i]) for name in actions}
        examples = twin.retriever.search(s, a, twin.schema, k=wanted(p)) if wanted(p) else []
        try:
            f = p.predict(Query(s, a, targets, twin.schema, notes), examples)
        except (NotReady, BackendError):
            continue  # counted in Rollout.answered; the others carry this path-step
        mean[i], ok[i] = f.mean, True
    return mean, ok
