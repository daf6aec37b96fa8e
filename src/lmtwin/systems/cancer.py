"""Lung cancer PKPD (HDTwinGen protocol): tumour volume v and chemo concentration c under
chemotherapy dose ca and radiotherapy dose ra. Euler steps of dt = 1."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from lmtwin.schema import Variable

RHO = 7e-5 + 2 * 7.23e-3
BETA_C = 0.028
ALPHA_R = 0.0398
BETA_R = ALPHA_R / 10


def volume(diameter: float) -> float:
    return 4.0 / 3.0 * math.pi * (diameter / 2.0) ** 3


def diameter(v: np.ndarray | float) -> np.ndarray:
    return np.cbrt(6.0 * np.asarray(v, dtype=float) / math.pi)


K = volume(30.0)

Variant = Literal["cancer", "cancer-chemo", "cancer-untreated"]

CANCER_VARIABLES = [
    Variable("v", "state", "cm3", "tumour volume", lower=0.0),
    Variable("c", "state", "mg/m3", "chemo drug concentration", lower=0.0),
    Variable("ca", "action", "mg", "chemo dose given", lower=0.0, upper=10.0),
    Variable("ra", "action", "Gy", "radio dose given", lower=0.0, upper=10.0),
]


@dataclass
class Patient:
    """One trajectory: ``v`` and ``c`` have steps + 1 values, ``ca`` and ``ra`` steps."""

    v: np.ndarray
    c: np.ndarray
    ca: np.ndarray
    ra: np.ndarray

    def rows(self, variant: Variant = "cancer") -> list[dict[str, float]]:
        """Observations per time, with the variables the variant observes; the last row
        has no action."""
        out = []
        for t in range(len(self.v)):
            row = {"v": float(self.v[t])}
            if variant != "cancer-untreated":
                row["c"] = float(self.c[t])
                if t < len(self.ca):
                    row["ca"] = float(self.ca[t])
            if variant == "cancer" and t < len(self.ra):
                row["ra"] = float(self.ra[t])
            out.append(row)
        return out


def simulate_patients(
    n: int,
    seed: int = 0,
    variant: Variant = "cancer",
    steps: int = 60,
    rho: float = RHO,
    radio_effect: float = 1.0,
    extra: Callable[[np.ndarray], np.ndarray] | None = None,
) -> list[Patient]:
    """Simulate ``n`` patients under the protocol's treatment policy.

    ``radio_effect`` multiplies the radiotherapy kill term and ``extra(v)`` adds a term to
    dv/dt (HDTwinGen's extra terms, e.g. ``0.08 * sin(v)``): drifts for the scenarios.
    """
    rng = np.random.default_rng(seed)
    patients = []
    for _ in range(n):
        v = np.zeros(steps + 1)
        c = np.zeros(steps + 1)
        ca = np.zeros(steps)
        ra = np.zeros(steps)
        v[0] = rng.uniform() * 1149.8817 + 0.014165
        for t in range(steps):
            d = diameter(v[max(0, t - 14) : t + 1]).mean()
            p = 1.0 / (1.0 + math.exp(-(2.0 / 13.0) * (d - 6.5)))
            chemo_u, radio_u = rng.uniform(), rng.uniform()
            if variant != "cancer-untreated" and chemo_u < p:
                ca[t] = 5.0
            if variant == "cancer" and radio_u < p:
                ra[t] = 2.0
            dc = -c[t] / 2.0 + ca[t]
            if v[t] <= 0:
                dv = 0.0
            else:
                growth = rho * math.log(K / v[t]) - BETA_C * c[t]
                growth -= radio_effect * (ALPHA_R * ra[t] + BETA_R * ra[t] ** 2)
                dv = growth * v[t]
                if extra is not None:
                    dv += float(extra(np.array([v[t]]))[0])
            c[t + 1] = max(c[t] + dc, 0.0)
            v[t + 1] = max(v[t] + dv, 0.0)
        patients.append(Patient(v, c, ca, ra))
    return patients


def cancer_step(
    v: np.ndarray | float, c: np.ndarray | float, ca: np.ndarray | float,
    ra: np.ndarray | float, rho: float = RHO,
    radio_effect: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """One Euler step of many patients at once (the equations of ``simulate_patients``):
    the true simulator that scores plans and that the oracle plans with."""
    v, c = np.asarray(v, dtype=float), np.asarray(c, dtype=float)
    safe = np.where(v > 0, v, 1.0)
    growth = rho * np.log(K / safe) - BETA_C * c
    growth = growth - radio_effect * (ALPHA_R * ra + BETA_R * np.asarray(ra) ** 2)
    dv = np.where(v > 0, growth * v, 0.0)
    return np.maximum(v + dv, 0.0), np.maximum(c - c / 2.0 + ca, 0.0)
