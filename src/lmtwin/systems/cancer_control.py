"""The lung-cancer PKPD system one step at a time, for controllers scored on the truth.

The same equations as :mod:`lmtwin.systems.cancer` (HDTwinGen protocol, Euler, dt = 1):

    c' = max(0, c - c / 2 + ca)
    v' = max(0, v + (rho * ln(K / v) - beta_c * c - effect * (alpha_r * ra + beta_r * ra^2)) v)

with ``v' = v`` where ``v <= 0``. ``rho`` and ``effect`` are drifts (the default is the
protocol's system). Deterministic: it draws nothing from ``rng`` (no noise, as in the
protocol).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from lmtwin.schema import Schema
from lmtwin.systems.cancer import ALPHA_R, BETA_C, BETA_R, CANCER_VARIABLES, RHO, K, diameter


@dataclass
class CancerSystem:
    """The true cancer system as ``Dynamics`` (``schema``, ``step``)."""

    rho: float = RHO
    radio_effect: float = 1.0
    schema: Schema = field(init=False)

    def __post_init__(self) -> None:
        self.schema = Schema(list(CANCER_VARIABLES))

    def step(self, state: Mapping[str, float], action: Mapping[str, float],
             rng: np.random.Generator) -> tuple[dict[str, float], dict[str, float]]:
        v, c = state["v"], state["c"]
        ca, ra = action.get("ca", 0.0), action.get("ra", 0.0)
        if v <= 0:
            dv = 0.0
        else:
            growth = self.rho * math.log(K / v) - BETA_C * c
            growth -= self.radio_effect * (ALPHA_R * ra + BETA_R * ra**2)
            dv = growth * v
        nxt = {"v": max(v + dv, 0.0), "c": max(c - c / 2.0 + ca, 0.0)}
        return nxt, {"v": 0.0, "c": 0.0}

    @staticmethod
    def start(rng: np.random.Generator) -> dict[str, float]:
        """The protocol's initial state: ``v0 = U(0,1) * 1149.8817 + 0.014165``, ``c0 = 0``."""
        return {"v": float(rng.uniform() * 1149.8817 + 0.014165), "c": 0.0}


class ProtocolPolicy:
    """The protocol's treatment policy as a policy of the state, with its memory: the
    mean tumour diameter ``D`` over the last 15 steps gives ``p = sigmoid((2/13)(D - 6.5))``;
    chemo (dose ``chemo``) when ``U < p``, radio (``radio``) when an independent ``U < p``.
    Call ``reset(seed)`` at each episode's start (``Game.play`` does)."""

    def __init__(self, variables: tuple[str, ...] = ("ca", "ra"), chemo: float = 5.0,
                 radio: float = 2.0) -> None:
        self.variables = variables
        self.doses = {"ca": chemo, "ra": radio}
        self.reset(0)

    def reset(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed + 7919)
        self._diameters: list[float] = []

    def __call__(self, state: Mapping[str, float],
                 totals: Mapping[str, float] | None = None) -> dict[str, float]:
        self._diameters = [*self._diameters[-14:], float(diameter(state["v"]))]
        d = float(np.mean(self._diameters))
        p = 1.0 / (1.0 + math.exp(-(2.0 / 13.0) * (d - 6.5)))
        u = {"ca": self._rng.uniform(), "ra": self._rng.uniform()}
        return {k: (self.doses[k] if u[k] < p else 0.0) for k in self.variables}
