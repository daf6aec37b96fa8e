"""Vector indexes: exact numpy search for small stores, faiss for large ones.

Every index answers a batch of queries at once (``search_batch``): the nearest examples
of every rollout path in one matrix product (numpy) or one faiss call.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from lmtwin.errors import DependencyNotInstalled

IndexKind = Literal["auto", "exact", "faiss"]


class FaissMissingWarning(UserWarning):
    """A large store is searched exactly in numpy because faiss is not installed."""


@runtime_checkable
class VectorIndex(Protocol):
    """Nearest neighbours by Euclidean distance; ids are insertion positions."""

    def add(self, vectors: np.ndarray) -> None: ...

    def search(self, query: np.ndarray, k: int) -> np.ndarray: ...

    def search_batch(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Squared distances and ids, both (n_queries, k'), nearest first; k' <= k."""
        ...

    def reset(self, dim: int) -> None: ...

    def __len__(self) -> int: ...


class ExactIndex:
    """Brute-force search over a growing float32 matrix (amortised appends)."""

    def __init__(self, dim: int = 0, chunk: int = 4_000_000) -> None:
        self.chunk = chunk  # distances computed at once: bounds memory for big batches
        self.reset(dim)

    def reset(self, dim: int) -> None:
        self._data = np.zeros((1024, dim), dtype=np.float32)
        self._n = 0
        self._sq = np.zeros(0)

    def __len__(self) -> int:
        return self._n

    def add(self, vectors: np.ndarray) -> None:
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        need = self._n + len(vectors)
        if need > len(self._data):
            grown = np.zeros((max(need, 2 * len(self._data)), self._data.shape[1]), np.float32)
            grown[: self._n] = self._data[: self._n]
            self._data = grown
        self._data[self._n : need] = vectors
        self._n = need

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        return self.search_batch(np.asarray(query)[None, :], k)[1][0]

    def search_batch(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.atleast_2d(np.asarray(queries, dtype=np.float64))
        if self._n == 0 or k < 1:
            return np.zeros((len(q), 0)), np.zeros((len(q), 0), dtype=np.int64)
        data = self._data[: self._n].astype(np.float64)
        if len(self._sq) != self._n:
            self._sq = (data**2).sum(axis=1)
        k = min(k, self._n)
        dists = np.empty((len(q), k))
        ids = np.empty((len(q), k), dtype=np.int64)
        step = max(1, self.chunk // self._n)
        for lo in range(0, len(q), step):
            block = q[lo : lo + step]
            # |q - x|^2 = |q|^2 - 2 q.x + |x|^2: one matrix product for the whole block
            d = self._sq[None, :] - 2.0 * block @ data.T + (block**2).sum(axis=1)[:, None]
            near = np.argpartition(d, k - 1, axis=1)[:, :k] if k < self._n else (
                np.broadcast_to(np.arange(self._n), (len(block), self._n)))
            dn = np.take_along_axis(d, near, axis=1)
            order = np.argsort(dn, axis=1, kind="stable")
            ids[lo : lo + step] = np.take_along_axis(near, order, axis=1)
            dists[lo : lo + step] = np.maximum(np.take_along_axis(dn, order, axis=1), 0.0)
        return dists, ids


class FaissIndex:
    """A faiss index; install ``lmtwin[faiss]``.

    Args:
        dim: vector dimension.
        kind: ``"flat"`` (exact, BLAS-fast) or ``"ivf"`` (an inverted file: approximate,
            trained on the first vectors added, ``2 sqrt(n)`` cells of which ``nprobe``
            are searched; what makes rollouts over a large store fast. Measured for 1,000
            queries of 64 neighbours among 60,000 4-d vectors on 2 busy cores: nprobe 8,
            49 ms, recall 0.988; nprobe 16, 86 ms, recall 0.9999; exact flat search 0.77 s,
            HNSW 0.07 s).
        nprobe: cells an IVF search visits.
    """

    def __init__(self, dim: int = 0, kind: Literal["flat", "ivf"] = "flat",
                 nprobe: int = 8) -> None:
        try:
            import faiss
        except ImportError as exc:
            raise DependencyNotInstalled("faiss-cpu", "faiss") from exc
        self._faiss = faiss
        self.kind = kind
        self.nprobe = nprobe
        self.reset(dim)

    def reset(self, dim: int) -> None:
        self._dim = dim
        self._index: Any = None if self.kind == "ivf" else self._faiss.IndexFlatL2(max(dim, 1))

    def __len__(self) -> int:
        return 0 if self._index is None else int(self._index.ntotal)

    def _pad(self, x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(x, dtype=np.float32))
        return np.ascontiguousarray(x) if self._dim else np.zeros((len(x), 1), np.float32)

    def add(self, vectors: np.ndarray) -> None:
        x = self._pad(vectors)
        if self._index is None:  # an IVF index is trained on its first vectors
            # faiss wants at least 39 training vectors per cell
            nlist = max(1, min(int(2 * np.sqrt(len(x))), len(x) // 39))
            quantizer = self._faiss.IndexFlatL2(x.shape[1])
            index = self._faiss.IndexIVFFlat(quantizer, x.shape[1], nlist)
            index.cp.seed = 1234  # deterministic k-means
            index.train(x)
            index.nprobe = min(self.nprobe, nlist)
            self._quantizer = quantizer  # kept alive: the index does not own it
            self._index = index
        if len(x) < 256:
            # a few vectors: one thread. faiss's OpenMP team costs more than the work
            # (measured 13 ms to add one vector on a busy 2-core machine, 0.05 ms here)
            threads = self._faiss.omp_get_max_threads()
            self._faiss.omp_set_num_threads(1)
            try:
                self._index.add(x)
            finally:
                self._faiss.omp_set_num_threads(threads)
            return
        self._index.add(x)

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        _, ids = self.search_batch(np.asarray(query)[None, :], k)
        return ids[0][ids[0] >= 0]

    def search_batch(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = self._pad(queries)
        if len(self) == 0 or k < 1:
            return np.zeros((len(q), 0)), np.zeros((len(q), 0), dtype=np.int64)
        dists, ids = self._index.search(q, min(k, len(self)))
        return dists.astype(np.float64), ids.astype(np.int64)


def make_index(expected_size: int = 0, faiss_above: int = 20_000,
               kind: IndexKind = "auto") -> VectorIndex:
    """The index for a store of ``expected_size`` vectors.

    ``kind="auto"``: exact numpy search up to ``faiss_above`` vectors, faiss IVF beyond;
    if faiss is not installed, exact search with a ``FaissMissingWarning`` (never silent).
    ``"exact"``: always numpy. ``"faiss"``: faiss or ``DependencyNotInstalled``.
    """
    if kind == "exact":
        return ExactIndex()
    if kind == "faiss":
        return FaissIndex(kind="ivf" if expected_size > faiss_above else "flat")
    if expected_size > faiss_above:
        try:
            return FaissIndex(kind="ivf")
        except DependencyNotInstalled:
            warnings.warn(
                f"a store of {expected_size} transitions is searched exactly in numpy "
                "(slow for rollouts) because faiss is not installed: "
                "pip install 'lmtwin[faiss]'", FaissMissingWarning, stacklevel=2)
    return ExactIndex()
