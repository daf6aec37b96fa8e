"""Plots of what-if comparisons (matplotlib, written to PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lmtwin.intervene.whatif import Comparison


def fan_chart(comparison: Comparison, variable: str, path: Path | str,
              title: str | None = None) -> Path:
    """Each plan's median path of ``variable`` with its 50% and 90% bands, and each plan's
    objective distribution; written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    j = comparison.variables.index(variable)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.6), width_ratios=[2, 1])
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, o) in enumerate(comparison.outcomes.items()):
        c = colours[i % len(colours)]
        q = np.quantile(o.paths[:, :, j], [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
        steps = np.arange(q.shape[1])
        ax.fill_between(steps, q[0], q[4], color=c, alpha=0.15)
        ax.fill_between(steps, q[1], q[3], color=c, alpha=0.3)
        ax.plot(steps, q[2], color=c, label=name)
        bx.errorbar([o.mean], [i], xerr=[[o.mean - o.lower], [o.upper - o.mean]], fmt="o",
                    color=c, capsize=4)
    ax.set_xlabel("step")
    ax.set_ylabel(variable)
    ax.set_title(title or f"what-if: {variable} (median, 50% and 90% of paths)")
    ax.legend(fontsize=8)
    names = list(comparison.outcomes)
    bx.set_yticks(range(len(names)), names, fontsize=8)
    bx.invert_yaxis()
    bx.set_xlabel("objective (lower is better)")
    bx.set_title(f"objective: mean and {comparison.level:.0%} of paths")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
