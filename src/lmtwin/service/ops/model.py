"""The twin as a model: predict and simulate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lmtwin.service.errors import PayloadTooLarge
from lmtwin.service.ops.base import Entry, ServiceBase, jsonable


class Model(ServiceBase):
    """Predictions and simulations from the latest (or a given) state."""

    def _current(self, entry: Entry, episode: str) -> dict[str, float]:
        schema = entry.twin.schema
        return {k: v for k, v in entry.states.get(episode, {}).items()
                if k in schema and schema[k].role != "action"}

    def predict(self, name: str, state: Mapping[str, Any] | None,
                action: Mapping[str, Any] | None, episode: str | None = None,
                score: bool = True) -> dict[str, Any]:
        """Predict the next state; ``state`` None means the episode's latest state. With
        ``score`` and an episode, the twin scores it against the next observation."""
        entry = self.entry(name)
        if state is None:
            state = self._current(entry, episode or "default")
        scored = score and episode is not None
        prediction = entry.twin.predict(state, action, episode if scored else None)
        return jsonable({**prediction.to_dict(), "scored": scored})

    def simulate(self, name: str, state: Mapping[str, Any] | None,
                 plan: Sequence[Mapping[str, Any]], n_paths: int = 1,
                 horizon: int | None = None, episode: str = "default") -> dict[str, Any]:
        steps = (horizon or len(plan)) * n_paths
        if steps > self.settings.max_simulation_steps:
            raise PayloadTooLarge(f"n_paths x horizon is {steps}; the limit is "
                                  f"{self.settings.max_simulation_steps}")
        entry = self.entry(name)
        if state is None:
            state = self._current(entry, episode)
        sim = entry.twin.simulate(state, plan, n_paths=n_paths, horizon=horizon)
        level = entry.twin.level  # the band the twin's intervals are calibrated for
        q = sim.quantiles(((1 - level) / 2, 0.5, (1 + level) / 2))
        mean = sim.paths.mean(axis=0)
        return jsonable({
            "variables": sim.variables,
            "n_paths": n_paths,
            "horizon": sim.paths.shape[1] - 1,
            "mean": {v: mean[:, j] for j, v in enumerate(sim.variables)},
            "lower": {v: q[0, :, j] for j, v in enumerate(sim.variables)},
            "median": {v: q[1, :, j] for j, v in enumerate(sim.variables)},
            "upper": {v: q[2, :, j] for j, v in enumerate(sim.variables)},
            "level": level,
        })

