"""Many queries at once: the retrieved examples of every query as arrays (a ``Batch``),
from one batch search over the retriever. Used by rollouts (every path at one step) and
by the twin's scoring of many new transitions."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from lmtwin.predictors.simple import Batch
from lmtwin.retrieval import Retriever
from lmtwin.schema import Schema


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
    return Batch(names, targets, inputs, current, view[:, :, :f], view[:, :, f:],
                 complete=finite and not padded)
