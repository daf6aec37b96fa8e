"""Context parroting (Zhang and Gilpin, 2025) as a twin's predictor: copy what followed
the stored stretch most like the recent context.

In a twin the context of a query is its state and action: the retriever ranks the stored
transitions by their distance to it (every variable standardised over the whole store),
nearest first, and parroting copies the change that followed the best ``matches`` of
them (their mean), added to the query's current value. It fits nothing, so it cannot
overfit a short series, and on a stream that has just passed through similar states (a
settling system, a cycle) it repeats what happened there.

A query carries no past rows of its episode, so the window here is one row; the task
bench's ``ContextParroting`` baseline, which is given each trajectory's history, matches
windows of several rows. With one row it differs from ``NearestNeighbours`` in the
metric: the retriever's global standardisation, where the k-nearest-neighbour average
re-standardises over the retrieved rows and averages more of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lmtwin.errors import InvalidValue, NotReady
from lmtwin.predictors.base import Forecast, Query
from lmtwin.predictors.simple import Batch, design, features
from lmtwin.types import Transition


class Parroting:
    """The mean change that followed the ``matches`` stored transitions nearest to the
    query (the retriever's order), added to its current value.

    Args:
        matches: best matches whose following change is copied (1: pure parroting).
    """

    name = "parroting"

    def __init__(self, matches: int = 1) -> None:
        if isinstance(matches, bool) or not isinstance(matches, int) or matches < 1:
            raise InvalidValue("matches", matches, "a whole number of at least 1")
        self.matches = matches
        # usable examples come first almost always: a few spare ones cover a missing value
        self.k = matches + 4

    def predict(self, query: Query, examples: Sequence[Transition]) -> Forecast:
        """``examples`` as ``Retriever.search`` returns them: nearest last."""
        missing = [t for t in query.targets if t not in query.state]
        if missing:
            raise NotReady(f"parroting needs the current value of {missing}")
        names = features(query)
        copied = []
        for ex in reversed(examples):  # nearest first
            change = [ex.delta(t) for t in query.targets]
            if design(names, ex.state, ex.action) is None or None in change:
                continue
            copied.append(change)
            if len(copied) == self.matches:
                break
        if not copied:
            raise NotReady("parroting has no stored transition with every input and target")
        base = np.array([query.state[t] for t in query.targets])
        delta = np.asarray(copied, dtype=float).mean(axis=0)
        return Forecast((base + delta)[None, :], {"matches": len(copied)})

    def predict_batch(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        """``predict`` for every query of ``batch`` (examples nearest first): point
        forecasts (n, T) and which queries had a usable example (n,)."""
        b = batch.nearest(self.k)
        use = b.usable()
        # the first ``matches`` usable examples of each query, in the retriever's order
        take = use & (np.cumsum(use, axis=1) <= self.matches)
        count = take.sum(axis=1)
        ok = count >= 1
        summed = np.einsum("nk,nkt->nt", take.astype(float),
                           np.where(take[:, :, None], b.ex_deltas, 0.0))
        delta = summed / np.maximum(count, 1)[:, None]
        return batch.current + np.where(ok[:, None], delta, 0.0), ok
