"""Reads: latest and past state, history, performance of the scored predictions."""

from __future__ import annotations

from typing import Any

import numpy as np

from lmtwin.service.ops.base import ServiceBase, jsonable


class Reads(ServiceBase):
    """State, history and performance; reading never changes the twin."""

    def cached_state(self, name: str, episode: str) -> dict[str, Any] | None:
        """The latest state from memory, or None when it needs loading (never blocks)."""
        entry = self._twins.get(name)
        return None if entry is None else entry.views.get(episode)

    def state(self, name: str, episode: str = "default", as_of: float | None = None
              ) -> dict[str, Any]:
        entry = self.entry(name)
        if as_of is not None:
            return {"episode": episode, "as_of": as_of,
                    "values": entry.twin.state(episode, as_of=as_of)}
        view = entry.views.get(episode)
        if view is not None:
            return view
        with entry.lock:
            view = entry.views[episode] = self._state_view(entry, episode)
            return view

    def history(self, name: str, variable: str | None = None, episode: str | None = None,
                t_from: float | None = None, t_to: float | None = None,
                as_of: float | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        entry = self.entry(name)
        rows = entry.twin.history(variable, episode, t_from, t_to, as_of)
        return [{"episode": o.episode, "t": o.t, "values": o.values} for o in rows[-limit:]]

    def performance(self, name: str, last: int = 200) -> dict[str, Any]:
        """How the twin's scored predictions went: error per predictor and combined,
        interval coverage, and the combination weights in force."""
        twin = self.entry(name).twin
        scores = twin.scores_[-last:]  # a copy; the list grows as observations arrive
        names = [p.name for p in twin.predictors]
        sq: dict[str, list[float]] = {n: [] for n in [*names, "combined"]}
        covered = []
        for sc in scores:
            sq["combined"].append((sc.combined - sc.actual) ** 2)
            for n, v in sc.by_predictor.items():
                sq.setdefault(n, []).append((v - sc.actual) ** 2)
            if sc.lower is not None and sc.upper is not None:
                covered.append(sc.lower <= sc.actual <= sc.upper)
        return jsonable({
            "scored": len(scores),
            "mse": {n: float(np.mean(v)) if v else None for n, v in sq.items()},
            "coverage": float(np.mean(covered)) if covered else None,
            "n_intervals": len(covered),
            "level": twin.level,
            "weights": twin.hedge.weights(names),
        })

