"""The retriever keeps every transition, their embeddings and an index over them."""

from __future__ import annotations

from lmtwin.retrieval.encoders import Encoder, RawEncoder
from lmtwin.retrieval.index import ExactIndex, VectorIndex
from lmtwin.schema import Schema
from lmtwin.types import Transition


class Retriever:
    """Selects the k transitions whose context is nearest the query's.

    Embeddings are computed once per transition and recomputed only when the encoder
    changes (a new variable, a tuned encoder, or the data having doubled since the
    encoder's scales were fitted).
    """

    def __init__(
        self, encoder: Encoder | None = None, index: VectorIndex | None = None, k: int = 16
    ) -> None:
        self.encoder: Encoder = encoder if encoder is not None else RawEncoder()
        self.index: VectorIndex = index if index is not None else ExactIndex()
        self.k = k
        self.transitions: list[Transition] = []
        self._fitted_on = 0
        self._encoded_version = -1
        self._indexed = 0

    def __len__(self) -> int:
        return len(self.transitions)

    def add(self, transition: Transition) -> None:
        self.transitions.append(transition)

    def invalidate(self) -> None:
        """Force a re-fit and re-index at the next search (after tuning, schema change)."""
        self._fitted_on = 0

    def _sync(self, schema: Schema) -> None:
        n = len(self.transitions)
        stale = self._fitted_on == 0 or n >= 2 * self._fitted_on or not self.encoder.covers(schema)
        if stale:
            self.encoder.fit(self.transitions, schema)
            self._fitted_on = max(n, 1)
        if self.encoder.version != self._encoded_version:
            vectors = self.encoder.encode([(t.state, t.action) for t in self.transitions])
            self.index.reset(vectors.shape[1])
            self.index.add(vectors)
            self._encoded_version = self.encoder.version
            self._indexed = n
        elif self._indexed < n:
            new = self.transitions[self._indexed :]
            self.index.add(self.encoder.encode([(t.state, t.action) for t in new]))
            self._indexed = n

    def search(
        self,
        state: dict[str, float],
        action: dict[str, float],
        schema: Schema,
        k: int | None = None,
    ) -> list[Transition]:
        """The nearest transitions, nearest last (closest to the query in a prompt)."""
        if not self.transitions:
            return []
        self._sync(schema)
        ids = self.index.search(self.encoder.encode([(state, action)])[0], k or self.k)
        return [self.transitions[i] for i in reversed(ids.tolist())]
