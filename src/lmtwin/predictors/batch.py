"""Many queries at once: the retrieved examples of every query as arrays (a ``Batch``),
from one batch search over the retriever. Used by rollouts (every path at one step) and
by the twin's scoring of many new transitions."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from lmtwin.errors import NotReady
from lmtwin.predictors.base import Forecast, Predictor, wanted
from lmtwin.predictors.simple import Batch
from lmtwin.retrieval import Retriever
from lmtwin.schema import Schema
from lmtwin.types import Note, Query, Transition

Answers = tuple[Query, dict[str, Forecast], dict[str, str]]


def retrieve_batch(retriever: Retriever, schema: Schema, columns: Mapping[str, np.ndarray],
                   names: list[str], targets: list[str], current: np.ndarray,
                   k: int) -> Batch:
    """The ``k`` nearest examples of each of ``len(current)`` queries.

    ``columns`` holds the queries' values keyed ``s:name`` / ``a:name`` (every query
    carries the same variables); ``names`` orders the inputs as
    ``predictors.simple.features`` does; ``current`` (n, T) the targets' current values.
    """
    n = len(current)
    inputs = np.column_stack([columns["a:" + m[2:]] if m.startswith("a:") else columns["s:" + m]
                              for m in names]) if names else np.zeros((n, 0))
    if k == 0 or not len(retriever):  # no examples: every one missing
        return Batch(names, targets, inputs, current, np.full((n, k, len(names)), np.nan),
                     np.full((n, k, len(targets)), np.nan))
    ids = retriever.search_batch(columns, n, schema, k)
    table, finite = retriever.table(names, targets)
    padded = bool((ids < 0).any())
    # one gather, feature-major (F + T, n, k): np.take is ~3x faster than fancy indexing,
    # and LocalRidge's passes run along the examples in this layout
    got = np.take(table, np.maximum(ids, 0) if padded else ids, axis=1)
    if padded:
        got[:, ids < 0] = np.nan
    view = got.transpose(1, 2, 0)
    f = len(names)

    def more(rows: np.ndarray, wide: int) -> Batch:
        return retrieve_batch(retriever, schema, {c: np.asarray(v)[rows]
                                                  for c, v in columns.items()},
                              names, targets, current[rows], wide)

    return Batch(names, targets, inputs, current, view[:, :, :f], view[:, :, f:],
                 complete=finite and not padded, more=more)


def forecast_transitions(predictors: Sequence[Predictor], retriever: Retriever, schema: Schema,
                         notes: list[Note], transitions: Sequence[Transition],
                         ask: Callable[[Predictor, Query], dict[str, Forecast]]
                         ) -> dict[int, Answers]:
    """The cheap predictors' forecasts of many transitions from the current retriever,
    keyed by ``id(transition)``: each transition's query, the forecasts and the reasons
    of the predictors that could not answer.

    One batch search and one ``predict_batch`` per group of transitions carrying the same
    variables; a predictor without a batch call is asked once per query through ``ask``
    (which may raise ``NotReady``). Costly predictors (the language model) are left out.
    """
    cheap = [p for p in predictors if not getattr(p, "costly", False)]
    batched = [p for p in cheap if hasattr(p, "predict_batch")]
    groups: dict[tuple[tuple[str, ...], ...], list[Transition]] = {}
    for tr in transitions:
        targets = tuple(t for t in schema.states if t in tr.next_state and t in tr.state)
        if targets:
            groups.setdefault((tuple(sorted(tr.state)), tuple(sorted(tr.action)), targets),
                              []).append(tr)
    out: dict[int, Answers] = {}
    for (skeys, akeys, targets), trs in groups.items():
        queries = [Query(dict(tr.state), dict(tr.action), list(targets), schema, notes)
                   for tr in trs]
        for q, tr in zip(queries, trs, strict=True):
            out[id(tr)] = (q, {}, {})
        columns = {f"s:{k}": np.array([tr.state[k] for tr in trs]) for k in skeys}
        columns.update({f"a:{k}": np.array([tr.action[k] for tr in trs]) for k in akeys})
        names = list(skeys) + [f"a:{k}" for k in akeys]
        current = np.array([[tr.state[t] for t in targets] for tr in trs])
        k = max((wanted(p) for p in batched), default=0)
        batch = retrieve_batch(retriever, schema, columns, names, list(targets),
                               current, k) if batched else None
        for p in cheap:
            if batch is not None and p in batched:
                mean, ok = p.predict_batch(batch)  # type: ignore[attr-defined]
                mean = np.asarray(mean, dtype=float)
                for i, tr in enumerate(trs):
                    _, answered, skipped = out[id(tr)]
                    if ok[i] and np.all(np.isfinite(mean[i])):
                        answered[p.name] = Forecast(mean[i][None, :])
                    else:
                        skipped[p.name] = ("NotReady: too few usable examples or a "
                                           "non-finite forecast")
                continue
            for q, tr in zip(queries, trs, strict=True):
                _, answered, skipped = out[id(tr)]
                try:
                    answered.update(ask(p, q))
                except NotReady as exc:
                    skipped[p.name] = f"NotReady: {exc}"
    return out
