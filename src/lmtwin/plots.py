"""Plots a person would rather look at than read."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from lmtwin.twin import Score


def trajectories(
    scores: Sequence[Score], episodes: Sequence[str], path: Path, change_episode: str | None = None
) -> Path:
    """Predicted against actual trajectories, with intervals, one row per episode."""
    targets = sorted({s.target for s in scores})
    fig, axes = plt.subplots(
        len(episodes), len(targets), figsize=(5 * len(targets), 3.2 * len(episodes)), squeeze=False
    )
    for i, ep in enumerate(episodes):
        for j, target in enumerate(targets):
            ax = axes[i][j]
            rows = [s for s in scores if s.episode == ep and s.target == target]
            t = np.array([s.t for s in rows])
            ax.plot(t, [s.actual for s in rows], "k.-", lw=1, ms=3, label="actual")
            ax.plot(t, [s.combined for s in rows], "C0-", lw=1.2, label="twin (combined)")
            for k, name in enumerate(sorted({n for s in rows for n in s.by_predictor})):
                pts = [(s.t, s.by_predictor[name]) for s in rows if name in s.by_predictor]
                if pts and name != "persistence":
                    ax.plot(
                        *zip(*pts, strict=True), color=f"C{k + 2}", lw=0.8, alpha=0.7, label=name
                    )
            iv = [(s.t, s.lower, s.upper) for s in rows if s.lower is not None]
            if iv:
                ti, lo, hi = zip(*iv, strict=True)
                ax.fill_between(ti, lo, hi, color="C0", alpha=0.2, label="90% interval")
            title = f"{ep}: {target}"
            if ep == change_episode:
                title += " (radiotherapy starts)"
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("day")
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def error_curves(
    scores: Sequence[Score], path: Path, window: int = 60, change_at: int | None = None
) -> Path:
    """Rolling squared error (relative to persistence) of each predictor over the stream."""
    names = sorted({n for s in scores for n in s.by_predictor})
    fig, ax = plt.subplots(figsize=(9, 3.5))
    base = np.array(
        [(s.by_predictor.get("persistence", s.actual) - s.actual) ** 2 + 1e-12 for s in scores]
    )
    kernel = np.ones(window)
    for name in [*names, "combined"]:
        err = np.array(
            [
                (
                    (s.combined if name == "combined" else s.by_predictor.get(name, np.nan))
                    - s.actual
                )
                ** 2
                for s in scores
            ]
        )
        ok = ~np.isnan(err)
        num = np.convolve(np.where(ok, err, 0.0), kernel, "same")
        den = np.convolve(np.where(ok, base, 0.0), kernel, "same")
        ax.plot(num / np.maximum(den, 1e-12), lw=2 if name == "combined" else 1, label=name)
    if change_at:
        ax.axvline(change_at, color="k", ls="--", lw=1)
        ax.text(change_at, ax.get_ylim()[1] * 0.9, " radiotherapy starts", fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("scored prediction (stream order)")
    ax.set_ylabel(f"MSE / persistence MSE (rolling {window})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def assimilation(truth: np.ndarray, readings: np.ndarray, fused: np.ndarray, path: Path,
                 unit: str = "cm") -> Path:
    """The truth, the noisy readings and the state fused with the twin's forecast."""
    fig, ax = plt.subplots(figsize=(9, 3.5))
    t = np.arange(len(truth))
    ax.plot(t, readings, ".", color="0.6", ms=3, label="readings")
    ax.plot(t, truth, "k-", lw=1.2, label="truth")
    ax.plot(t, fused, "C0-", lw=1.2, label="fused with the twin's forecast")
    ax.set_xlabel("step")
    ax.set_ylabel(unit)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
