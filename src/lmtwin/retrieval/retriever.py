"""The retriever keeps every transition, their embeddings and indexes over them.

Examples that carry the query's variables come first. Transitions are grouped by which
variables they carry; a search ranks the groups holding every variable of the query
before those missing one, then those missing two, and so on, nearest first within each
tier. Without this, after a schema change the transitions stored before a variable
existed (embedded with that variable's mean) crowd out the few new ones, and the local
learners, which need every input, find too few complete examples and fall back
(issue 12: the numeric learner fell back 84 times on a pendulum whose angular velocity
appeared half-way).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from lmtwin.retrieval.encoders import Encoder, RawEncoder
from lmtwin.retrieval.index import IndexKind, VectorIndex, make_index
from lmtwin.schema import Schema
from lmtwin.types import Transition


@dataclass
class _Group:
    """Transitions that carry the same variables, and an index over their embeddings."""

    present: np.ndarray  # bool per key of ``Retriever._keys``
    index: VectorIndex
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    built_for: int = 0  # the size the index kind was chosen for


def schema_keys(schema: Schema) -> list[str]:
    """Embedding keys: ``s:`` for state and context variables, ``a:`` for actions."""
    return [f"s:{n}" for n in schema.states + schema.contexts] + [
        f"a:{n}" for n in schema.actions
    ]


class Retriever:
    """Selects the k transitions whose context is nearest the query's, preferring those
    that carry every variable of the query.

    Embeddings are computed once per transition and recomputed only when the encoder
    changes (a new variable, a tuned encoder, or the data having doubled since the
    encoder's scales were fitted).

    Args:
        encoder: None for standardised raw features.
        k: examples returned when a search does not say.
        index: ``"auto"`` (exact numpy search; beyond ``faiss_above`` transitions in a
            group, an exact k-d tree for embeddings of up to ``KDTREE_MAX_DIM``
            dimensions, else faiss, with a warning if faiss is missing), ``"exact"``,
            ``"kdtree"`` or ``"faiss"`` (see ``lmtwin.retrieval.index.make_index``).
        faiss_above: group size from which ``"auto"`` uses a k-d tree or faiss.
    """

    def __init__(
        self,
        encoder: Encoder | None = None,
        k: int = 16,
        index: IndexKind = "auto",
        faiss_above: int = 5_000,
    ) -> None:
        self.encoder: Encoder = encoder if encoder is not None else RawEncoder()
        self.k = k
        self.index_kind: IndexKind = index
        self.faiss_above = faiss_above
        self.transitions: list[Transition] = []
        self._fitted_on = 0
        self._encoded_version = -1
        self._keys: list[str] = []
        self._counts = np.zeros(0)  # transitions carrying each key
        self._counted = 0
        self._fit_counts = np.zeros(0)  # the same when the encoder was last fitted
        self._encoder: Encoder | None = None  # the encoder the indexes were built with
        self._groups: dict[bytes, _Group] = {}
        self._indexed = 0
        self._tables: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[np.ndarray, bool]] = {}

    def __len__(self) -> int:
        return len(self.transitions)

    def add(self, transition: Transition) -> None:
        self.transitions.append(transition)

    def invalidate(self) -> None:
        """Force a re-fit and re-index at the next search (after tuning, schema change)."""
        self._fitted_on = 0
        self._encoded_version = -1  # a swapped encoder may carry the same version number

    @property
    def indexes(self) -> dict[str, str]:
        """Per group of carried variables, its size and index type (for a description)."""
        return {
            ",".join(k for k, p in zip(self._keys, g.present, strict=True) if p):
                f"{len(g.ids)} {type(g.index).__name__}"
            for g in self._groups.values()
        }

    # --- indexing --------------------------------------------------------------------
    def _sync(self, schema: Schema) -> None:
        n = len(self.transitions)
        keys = schema_keys(schema)
        if keys != self._keys:
            self._keys, self._counted = keys, 0
            self._counts = np.zeros(len(keys))
            self._groups, self._indexed = {}, 0
        if self._counted < n:
            self._counts += self._presence(self.transitions[self._counted :]).sum(axis=0)
            self._counted = n
        # refit the scales when the data doubled, overall or for any one variable (a
        # variable added half-way is first scaled on its first few values)
        grown = (self._counts >= 2 * np.maximum(self._fit_counts, 1)).any() if len(
            self._fit_counts) == len(self._counts) else True
        stale = (self._fitted_on == 0 or n >= 2 * self._fitted_on or grown
                 or not self.encoder.covers(schema))
        if stale:
            self.encoder.fit(self.transitions, schema)
            self._fitted_on = max(n, 1)
            self._fit_counts = self._counts.copy()
        if self.encoder.version != self._encoded_version or self.encoder is not self._encoder:
            self._groups, self._indexed = {}, 0
            self._encoded_version = self.encoder.version
            self._encoder = self.encoder
        if self._indexed < n:
            self._index(self.transitions[self._indexed :], self._indexed)
            self._indexed = n

    def _presence(self, transitions: list[Transition]) -> np.ndarray:
        """(n, keys): which of the schema's variables each transition carries."""
        return np.array(
            [[(t.action if k[0] == "a" else t.state).get(k[2:]) is not None for k in self._keys]
             for t in transitions], dtype=bool).reshape(len(transitions), len(self._keys))

    def _index(self, new: list[Transition], first: int) -> None:
        vectors = self._encode([(t.state, t.action) for t in new])
        present = self._presence(new)
        by_group: dict[bytes, list[int]] = {}
        for i, row in enumerate(present):
            by_group.setdefault(row.tobytes(), []).append(i)
        for key, rows in by_group.items():
            group = self._groups.get(key)
            if group is None:
                group = self._groups[key] = _Group(present[rows[0]], self._new_index(len(rows)))
                group.built_for = len(rows)
            size = len(group.ids) + len(rows)
            if size >= 2 * group.built_for and (
                    self.index_kind == "faiss" or size > self.faiss_above):
                # the group doubled: re-choose its index (exact -> faiss IVF) and retrain
                group.index = self._new_index(size)
                group.built_for = size
                old = [self.transitions[i] for i in group.ids.tolist()]
                group.index.add(np.concatenate(
                    [self._encode([(t.state, t.action) for t in old]), vectors[rows]]))
            else:
                group.index.add(vectors[rows])
            group.ids = np.concatenate([group.ids, first + np.asarray(rows, dtype=np.int64)])

    def _new_index(self, size: int) -> VectorIndex:
        dim = self._dim()
        index = make_index(size, self.faiss_above, self.index_kind, dim)
        index.reset(dim)
        return index

    def _dim(self) -> int:
        return int(self._encode([({}, {})]).shape[1])

    def _encode(self, contexts: list[tuple[dict[str, float], dict[str, float]]]) -> np.ndarray:
        return np.asarray(self.encoder.encode(contexts), dtype=np.float32)

    # --- search ----------------------------------------------------------------------
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
        columns = {f"s:{n}": np.array([v]) for n, v in state.items()}
        columns.update({f"a:{n}": np.array([v]) for n, v in action.items()})
        ids = self.search_batch(columns, 1, schema, k or self.k)[0]
        return [self.transitions[i] for i in reversed(ids[ids >= 0].tolist())]

    def search_batch(
        self, columns: Mapping[str, np.ndarray], n: int, schema: Schema, k: int
    ) -> np.ndarray:
        """Ids of the k nearest transitions of each of ``n`` queries given as columns
        keyed ``s:name`` / ``a:name`` (every query carries the same variables): shape
        (n, k), nearest first, -1 where the store has fewer. One matrix product (or one
        faiss call) per group of transitions, not one search per query."""
        out = np.full((n, k), -1, dtype=np.int64)
        if not self.transitions or k < 1:
            return out
        self._sync(schema)
        wanted = np.array([key in columns for key in self._keys], dtype=bool)
        queries = self._encode_columns(columns, n)
        tiers: dict[int, list[_Group]] = {}
        for g in self._groups.values():
            tiers.setdefault(int((wanted & ~g.present).sum()), []).append(g)
        if len(self._groups) == 1:  # the usual case: every transition carries the same
            g = next(iter(self._groups.values()))
            _, local = g.index.search_batch(queries, k)
            out[:, : local.shape[1]] = np.where(local >= 0, g.ids[np.clip(local, 0, None)], -1)
            return out
        for missing in sorted(tiers):
            d_parts, i_parts = [], []
            for g in tiers[missing]:
                dist, local = g.index.search_batch(queries, k)
                ids = g.ids
                valid = local >= 0
                d_parts.append(np.where(valid, dist, np.inf))
                i_parts.append(np.where(valid, ids[np.clip(local, 0, None)], -1))
            dist = np.concatenate(d_parts, axis=1)
            ids = np.concatenate(i_parts, axis=1)
            order = np.argsort(dist, axis=1, kind="stable")[:, :k]
            tier = np.take_along_axis(ids, order, axis=1)
            # earlier tiers first, then this tier's nearest, in each row's free places
            merged = np.concatenate([out, tier], axis=1)
            keep = np.argsort(merged < 0, axis=1, kind="stable")[:, :k]
            out = np.take_along_axis(merged, keep, axis=1)
            if (out >= 0).all():
                break
        return out

    def _encode_columns(self, columns: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        encode_columns = getattr(self.encoder, "encode_columns", None)
        if encode_columns is not None:
            return np.asarray(encode_columns(columns, n), dtype=np.float32)
        contexts = [
            ({k[2:]: float(c[i]) for k, c in columns.items() if k[0] == "s"},
             {k[2:]: float(c[i]) for k, c in columns.items() if k[0] == "a"})
            for i in range(n)
        ]
        return self._encode(contexts)

    # --- arrays for batch predictors --------------------------------------------------
    def table(self, names: list[str], targets: list[str]) -> tuple[np.ndarray, bool]:
        """Every stored transition as numbers, feature-major: shape (len(names) +
        len(targets), n), the inputs named as ``predictors.simple.features`` names them
        (``a:`` for actions) then the targets' changes; NaN where a value is missing.
        And whether every entry is finite. Cached; new transitions are appended."""
        key = (tuple(names), tuple(targets))
        cached = self._tables.get(key)
        n = len(self.transitions)
        have = 0 if cached is None else cached[0].shape[1]
        if cached is not None and have == n:
            return cached
        new = self.transitions[have:]
        nan = float("nan")
        rows = [[(t.action.get(m[2:], nan) if m.startswith("a:") else t.state.get(m, nan))
                 for m in names]
                + [t.next_state.get(m, nan) - t.state.get(m, nan) for m in targets]
                for t in new]
        part = np.array(rows, dtype=float).reshape(len(new), len(names) + len(targets)).T
        finite = bool(np.isfinite(part).all())
        if cached is not None:
            part, finite = np.hstack([cached[0], part]), finite and cached[1]
        self._tables[key] = (np.ascontiguousarray(part), finite)
        return self._tables[key]

    def arrays(self, names: list[str], targets: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Every stored transition as numbers: inputs (n, len(names)) named as
        ``predictors.simple.features`` names them (``a:`` for actions) and the targets'
        changes (n, len(targets)); NaN where a value is missing (views of ``table``)."""
        table = self.table(names, targets)[0]
        return table[: len(names)].T, table[len(names) :].T
