"""Vector indexes: exact numpy search by default, faiss for large stores."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from lmtwin.errors import DependencyNotInstalled


@runtime_checkable
class VectorIndex(Protocol):
    """Nearest neighbours by Euclidean distance; ids are insertion positions."""

    def add(self, vectors: np.ndarray) -> None: ...

    def search(self, query: np.ndarray, k: int) -> np.ndarray: ...

    def reset(self, dim: int) -> None: ...

    def __len__(self) -> int: ...


class ExactIndex:
    """Brute-force search over a growing float32 matrix (amortised appends)."""

    def __init__(self, dim: int = 0) -> None:
        self.reset(dim)

    def reset(self, dim: int) -> None:
        self._data = np.zeros((1024, dim), dtype=np.float32)
        self._n = 0

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
        if self._n == 0:
            return np.zeros(0, dtype=np.int64)
        data = self._data[: self._n]
        dist = ((data - np.asarray(query, dtype=np.float32)) ** 2).sum(axis=1)
        k = min(k, self._n)
        near = np.argpartition(dist, k - 1)[:k]
        return near[np.argsort(dist[near], kind="stable")]


class FaissIndex:
    """faiss ``IndexFlatL2`` (exact, BLAS-fast); install ``lmtwin[faiss]``."""

    def __init__(self, dim: int = 0) -> None:
        try:
            import faiss
        except ImportError as exc:
            raise DependencyNotInstalled("faiss-cpu", "faiss") from exc
        self._faiss = faiss
        self.reset(dim)

    def reset(self, dim: int) -> None:
        self._index = self._faiss.IndexFlatL2(max(dim, 1))
        self._dim = dim

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def _pad(self, x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(x, dtype=np.float32))
        return x if self._dim else np.zeros((len(x), 1), np.float32)

    def add(self, vectors: np.ndarray) -> None:
        self._index.add(self._pad(vectors))

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        if len(self) == 0:
            return np.zeros(0, dtype=np.int64)
        _, ids = self._index.search(self._pad(query), min(k, len(self)))
        return ids[0][ids[0] >= 0]


def make_index(expected_size: int = 0, faiss_above: int = 50_000) -> VectorIndex:
    """Exact numpy search, or faiss when the store is expected to pass ``faiss_above``."""
    if expected_size > faiss_above:
        try:
            return FaissIndex()
        except DependencyNotInstalled:
            pass
    return ExactIndex()
