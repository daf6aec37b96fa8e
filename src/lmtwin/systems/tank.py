"""A tank filled in bursts through a valve, read by a noisy level sensor: the smallest
system where a twin's model of the action tells it more than the readings alone.

    level[t+1] = level[t] + gain * valve[t] - leak * level[t]
"""

from __future__ import annotations

import numpy as np

from lmtwin.schema import Variable

TANK_VARIABLES = [
    Variable("level", unit="cm", description="water level", lower=0.0),
    Variable("valve", role="action", description="inflow valve open (1) or shut (0)",
             lower=0.0, upper=1.0),
]


def simulate_tank(steps: int = 200, period: int = 20, gain: float = 2.0, leak: float = 0.05,
                  level: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
    """The true levels and the valve settings (open and shut for ``period`` steps each)."""
    levels, valves = np.empty(steps), np.empty(steps)
    for i in range(steps):
        valves[i] = 1.0 if (i // period) % 2 == 0 else 0.0
        levels[i] = level
        level = level + gain * valves[i] - leak * level
    return levels, valves


def tank_step(level: np.ndarray | float, valve: np.ndarray | float, gain: float = 2.0,
              leak: float = 0.05,
              noise: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """One step of many tanks at once, with process noise of standard deviation
    ``noise`` (drawn from ``rng``); the level never goes below 0."""
    level = np.asarray(level, dtype=float)
    nxt = level + gain * np.asarray(valve, dtype=float) - leak * level
    if noise > 0:
        gen = rng if rng is not None else np.random.default_rng()
        nxt = nxt + noise * gen.standard_normal(np.shape(nxt))
    return np.maximum(nxt, 0.0)
