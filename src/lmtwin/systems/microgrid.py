"""A small microgrid over one day, hour by hour: the true simulator for cooperating agents.

A battery, dispatchable generators and demand response meet the net load (demand minus
solar); the rest is imported from the grid at a time-of-day tariff, up to the grid
connection's capacity (beyond it, load goes unserved). Generators and imports emit CO2,
counted against a daily cap.

State (kW, kWh, kg) and context:
    hour           context, 0..24 (advanced by the clock, not predicted)
    profile        context: the operator's load profile for this hour, base(h)
    forecast       context: the profile for the next hour, base(h + 1) (both written by
                   the operator from the usual day: they do not follow a drift)
    net            net load: base(h) * scale + AR(1) deviation + rebound of shed load
    soc, soc2, ..  battery energy; ``soc' = soc - d`` (discharge d > 0) or
                   ``soc + eff * |d|`` (charge), the flow d limited by what is stored/free
    co2            emissions so far: ``co2' = co2 + e_gen * gen + e_grid * max(0, imp)``
Actions: ``bat`` (and ``bat2``...) battery flow in [-P, P] kW (positive discharges),
``gen`` (``gen2``...) generator output, ``dr`` load shed by demand response, half of
which returns in the next hour (rebound).
Grid import ``imp = net - flows - gens - dr``; unserved ``max(0, imp - grid_cap)``.

    net' = scale * base(h + 1) + phi * (net - scale * base(h) - rebound * dr_prev)
           + rebound * dr + sd * eps
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from lmtwin.schema import Schema, Variable


def base_load(hour: float) -> float:
    """Demand minus solar (kW) at an hour: a morning and an evening peak, solar at noon."""
    demand = 30 + 12 * math.exp(-((hour - 8) ** 2) / 4) + 22 * math.exp(-((hour - 19) ** 2) / 5)
    solar = 32 * max(0.0, math.sin(math.pi * (hour - 6) / 12))
    return demand - solar


def tariff(hour: float) -> float:
    """Grid price per kWh: night 0.10, day 0.22, evening peak (17-21 h) 0.45."""
    h = hour % 24
    if 17 <= h < 21:
        return 0.45
    return 0.22 if 7 <= h < 17 else 0.10


@dataclass
class Microgrid:
    """The true microgrid (``Dynamics``: ``schema`` and ``step``).

    Attributes:
        batteries, generators: how many of each (agents ``bat``, ``bat2``, ...).
        capacity: kWh per battery; power: kW per battery; eff: charging efficiency.
        gen_max: kW per generator; e_gen, e_grid: kg CO2 per kWh.
        grid_cap: import limit (kW); dr_max: sheddable load (kW); rebound: share of shed
        load returning next hour; scale: load multiplier (a drift: > 1);
        phi, sd: AR(1) coefficient and noise (kW) of the load's deviation.
    """

    batteries: int = 1
    generators: int = 1
    capacity: float = 60.0
    power: float = 15.0
    eff: float = 0.9
    gen_max: float = 30.0
    e_gen: tuple[float, ...] = (0.8, 0.5)
    e_grid: float = 0.4
    grid_cap: float = 35.0
    dr_max: float = 10.0
    rebound: float = 0.5
    scale: float = 1.0
    phi: float = 0.7
    sd: float = 2.0
    schema: Schema = field(init=False)

    def __post_init__(self) -> None:
        self.schema = Schema(self.variables())

    # names
    def bats(self) -> list[str]:
        return ["bat" if i == 0 else f"bat{i + 1}" for i in range(self.batteries)]

    def socs(self) -> list[str]:
        return ["soc" if i == 0 else f"soc{i + 1}" for i in range(self.batteries)]

    def gens(self) -> list[str]:
        return ["gen" if i == 0 else f"gen{i + 1}" for i in range(self.generators)]

    def variables(self) -> list[Variable]:
        out = [
            Variable("hour", "context", "h", "hour of the day", lower=0.0, upper=24.0),
            Variable("profile", "context", "kW", "usual net load at this hour"),
            Variable("forecast", "context", "kW", "usual net load in the next hour"),
            Variable("net", "state", "kW", "net load: demand minus solar", lower=-60.0,
                     upper=120.0),
        ]
        out += [Variable(s, "state", "kWh", "battery energy", lower=0.0, upper=self.capacity)
                for s in self.socs()]
        out.append(Variable("co2", "state", "kg", "emissions today", lower=0.0))
        out += [Variable(b, "action", "kW", "battery flow (+ discharge)", lower=-self.power,
                         upper=self.power) for b in self.bats()]
        out += [Variable(g, "action", "kW", "generator output", lower=0.0, upper=self.gen_max)
                for g in self.gens()]
        out.append(Variable("dr", "action", "kW", "load shed by demand response", lower=0.0,
                            upper=self.dr_max))
        return out

    # physics
    def flow(self, soc: float, bat: float) -> float:
        """The battery flow that happens: discharge up to what is stored, charge up to
        what is free."""
        return float(min(bat, soc)) if bat >= 0 else float(max(bat, -(self.capacity - soc)
                                                               / self.eff))

    def grid(self, state: Mapping[str, float], action: Mapping[str, float]) -> float:
        """Grid import (negative: export) this hour."""
        flows = sum(self.flow(state[s], action.get(b, 0.0))
                    for s, b in zip(self.socs(), self.bats(), strict=True))
        gens = sum(action.get(g, 0.0) for g in self.gens())
        return state["net"] - flows - gens - action.get("dr", 0.0)

    def unserved(self, state: Mapping[str, float], action: Mapping[str, float]) -> float:
        return max(0.0, self.grid(state, action) - self.grid_cap)

    def emission(self, state: Mapping[str, float], action: Mapping[str, float]) -> float:
        e = sum(self.e_gen[min(i, len(self.e_gen) - 1)] * action.get(g, 0.0)
                for i, g in enumerate(self.gens()))
        return e + self.e_grid * max(0.0, min(self.grid(state, action), self.grid_cap))

    def step(self, state: Mapping[str, float], action: Mapping[str, float],
             rng: np.random.Generator) -> tuple[dict[str, float], dict[str, float]]:
        eps = float(rng.standard_normal())
        h = state["hour"]
        dr = action.get("dr", 0.0)
        # the deviation from the daily profile persists; shed load returns next hour
        dev = state["net"] - self.scale * base_load(h)
        net = self.scale * base_load(h + 1) + self.phi * dev + self.rebound * dr + self.sd * eps
        out = {"net": float(np.clip(net, -60.0, 120.0))}
        for s, b in zip(self.socs(), self.bats(), strict=True):
            f = self.flow(state[s], action.get(b, 0.0))
            soc = state[s] - f if f >= 0 else state[s] - self.eff * f
            out[s] = float(np.clip(soc, 0.0, self.capacity))
        out["co2"] = state["co2"] + self.emission(state, action)
        return out, dict.fromkeys(out, 0.0)

    @staticmethod
    def clock(hour: float) -> dict[str, float]:
        """The contexts at ``hour``: the hour, the usual net load now and next hour."""
        return {"hour": hour, "profile": base_load(hour), "forecast": base_load(hour + 1)}

    def start(self, rng: np.random.Generator) -> dict[str, float]:
        """A day's start at midnight: a random load deviation and battery energy."""
        s = {**self.clock(0.0),
             "net": self.scale * base_load(0.0) + 3.0 * float(rng.standard_normal()), "co2": 0.0}
        for name in self.socs():
            s[name] = float(rng.uniform(0.2, 0.8) * self.capacity)
        return s

    def episodes(self, n: int, policy: Callable[[Mapping[str, float], np.random.Generator],
                                                Mapping[str, float]] | None = None,
                 hours: int = 24, seed: int = 0) -> list[list[dict[str, float]]]:
        """``n`` days of observations (rows with the hour's action; the last has none)
        under ``policy`` (default: random actions within the bounds: exploratory data)."""
        rng = np.random.default_rng(seed)
        acts = [v for v in self.schema.variables.values() if v.role == "action"]
        days = []
        for _ in range(n):
            state = self.start(rng)
            rows = []
            for t in range(hours):
                if policy is None:
                    action = {v.name: float(rng.uniform(v.lower or 0.0, v.upper or 0.0))
                              for v in acts}
                else:
                    action = dict(policy(state, rng))
                rows.append({**state, **action})
                nxt, _ = self.step(state, action, rng)
                state = {**state, **nxt, **self.clock(float(t + 1))}
            rows.append(dict(state))
            days.append(rows)
        return days
