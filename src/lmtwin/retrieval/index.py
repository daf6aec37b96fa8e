"""Vector indexes: exact numpy search for small stores; for large ones a k-d tree when
the embedding has few dimensions (exact), faiss otherwise.

Every index answers a batch of queries at once (``search_batch``): the nearest examples
of every rollout path in one matrix product (numpy), one tree query or one faiss call.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from lmtwin.errors import DependencyNotInstalled

IndexKind = Literal["auto", "exact", "kdtree", "faiss"]

KDTREE_MAX_DIM = 8  # a k-d tree prunes well in few dimensions; beyond, faiss


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


class KDTreeIndex:
    """Exact search through a k-d tree (scipy ``cKDTree``), for embeddings of few
    dimensions (the raw encoder's standardised variables).

    Measured for 1,000 rollout queries of 64 neighbours among 60,000 4-d vectors on 2
    cores: 4.2 ms on one thread, exact; faiss IVF (nlist 490, nprobe 8) 7.5 ms with
    recall 0.99-1.0, and its OpenMP threads slow several-fold on a busy machine.

    A tree cannot grow, so vectors added since it was built (the tail) are searched
    exactly in numpy and merged; the tree is rebuilt (18 ms for 60,000 vectors) when
    the tail grows past 1/8 of the store, or when scanning it for a batch of queries
    would take more than n / 4 distances.

    Args:
        dim: vector dimension.
        workers: threads of a batch query (scipy's, not OpenMP: no spinning when the
            cores are busy).
    """

    def __init__(self, dim: int = 0, workers: int = 1) -> None:
        self.workers = workers
        self.reset(dim)

    def reset(self, dim: int) -> None:
        self._data = ExactIndex(dim)  # every vector; its rows past the tree are the tail
        self._tree: Any = None
        self._built = 0  # vectors in the tree

    def __len__(self) -> int:
        return len(self._data)

    def add(self, vectors: np.ndarray) -> None:
        self._data.add(vectors)

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        return self.search_batch(np.asarray(query)[None, :], k)[1][0]

    def _rebuild(self) -> None:
        from scipy.spatial import cKDTree

        n = len(self._data)
        self._tree = cKDTree(self._data._data[:n].astype(np.float64), leafsize=16,
                             balanced_tree=False, compact_nodes=False)
        self._built = n

    def search_batch(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.atleast_2d(np.asarray(queries, dtype=np.float64))
        n = len(self._data)
        if n == 0 or k < 1:
            return np.zeros((len(q), 0)), np.zeros((len(q), 0), dtype=np.int64)
        tail = n - self._built
        # scanning the tail costs tail x queries distances and a sort of every row (a
        # rollout scans at each of its steps); a rebuild about n log n, once
        if tail and (4 * tail * len(q) > n or 8 * tail > n):
            self._rebuild()
            tail = 0
        kt = min(k, self._built)  # the tree holds at least 7/8 of the vectors: kt >= 1
        dist, ids = self._tree.query(q, k=kt, workers=self.workers)
        dist = np.reshape(dist, (len(q), kt)) ** 2
        ids = np.reshape(ids, (len(q), kt)).astype(np.int64)
        if not tail:
            return dist, ids
        data = self._data._data[self._built : n].astype(np.float64)
        d = ((q[:, None, :] - data[None]) ** 2).sum(axis=2)
        dist = np.concatenate([dist, d], axis=1)
        ids = np.concatenate([ids, np.broadcast_to(np.arange(self._built, n), d.shape)],
                             axis=1)
        order = np.argsort(dist, axis=1, kind="stable")[:, : min(k, n)]
        return np.take_along_axis(dist, order, axis=1), np.take_along_axis(ids, order, axis=1)


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
               kind: IndexKind = "auto", dim: int = 0) -> VectorIndex:
    """The index for a store of ``expected_size`` vectors of ``dim`` dimensions (0:
    unknown).

    ``kind="auto"``: exact numpy search up to ``faiss_above`` vectors; beyond, an exact
    k-d tree when ``1 <= dim <= KDTREE_MAX_DIM``, else faiss IVF (if faiss is not
    installed, exact search with a ``FaissMissingWarning``: never silent).
    ``"exact"``: always numpy. ``"kdtree"``: always the k-d tree. ``"faiss"``: faiss or
    ``DependencyNotInstalled``.
    """
    if kind == "exact":
        return ExactIndex(dim)
    if kind == "kdtree":
        return KDTreeIndex(dim)
    if kind == "faiss":
        return FaissIndex(dim, kind="ivf" if expected_size > faiss_above else "flat")
    if expected_size > faiss_above:
        if 1 <= dim <= KDTREE_MAX_DIM:
            return KDTreeIndex(dim)
        try:
            return FaissIndex(dim, kind="ivf")
        except DependencyNotInstalled:
            warnings.warn(
                f"a store of {expected_size} transitions is searched exactly in numpy "
                "(slow for rollouts) because faiss is not installed: "
                "pip install 'lmtwin[faiss]'", FaissMissingWarning, stacklevel=2)
    return ExactIndex(dim)
