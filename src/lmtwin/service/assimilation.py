"""Data assimilation: a Kalman filter per variable whose sensor noise is declared.

Each (episode, variable) gets a constant-velocity filter (filterpy): position and rate of
change, white-noise acceleration of spread ``process_noise``, readings of spread
``sensor_noise``. The raw readings are what the store keeps; the fused state is what the
twin believes the system is in, and is served beside it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from lmtwin.errors import DependencyNotInstalled


@dataclass(frozen=True)
class Noise:
    """Declared noise of one variable: sensor spread (same unit as the variable) and the
    spread of its unmodelled acceleration per unit time."""

    sensor: float
    process: float


@dataclass(frozen=True)
class Fused:
    mean: float
    sd: float
    rate: float


class Assimilator:
    """Kalman filters for the variables of one twin that declare a sensor noise."""

    def __init__(self) -> None:
        try:
            from filterpy.kalman import KalmanFilter
        except ImportError as exc:
            raise DependencyNotInstalled("filterpy", "service") from exc
        self._kf_class = KalmanFilter
        self._filters: dict[tuple[str, str], tuple[float, object]] = {}
        self._lock = threading.Lock()

    def _new(self, z: float, noise: Noise) -> object:
        kf = self._kf_class(dim_x=2, dim_z=1)
        kf.x = np.array([[z], [0.0]])
        kf.H = np.array([[1.0, 0.0]])
        kf.P = np.diag([noise.sensor**2, (noise.sensor * 10) ** 2])
        kf.R = np.array([[noise.sensor**2]])
        return kf

    def update(self, episode: str, name: str, t: float, z: float, noise: Noise) -> Fused:
        """Fold the reading ``z`` taken at time ``t`` into the filter; return the fused value."""
        from filterpy.common import Q_discrete_white_noise

        with self._lock:
            key = (episode, name)
            entry = self._filters.get(key)
            if entry is None or t <= entry[0]:
                kf = self._new(z, noise)
            else:
                last_t, kf = entry
                dt = t - last_t
                kf.F = np.array([[1.0, dt], [0.0, 1.0]])  # type: ignore[attr-defined]
                kf.Q = Q_discrete_white_noise(dim=2, dt=dt,  # type: ignore[attr-defined]
                                              var=noise.process**2)
                kf.R = np.array([[noise.sensor**2]])  # type: ignore[attr-defined]
                kf.predict()  # type: ignore[attr-defined]
                kf.update(np.array([[z]]))  # type: ignore[attr-defined]
            self._filters[key] = (t, kf)
            return self._read(kf)

    @staticmethod
    def _read(kf: object) -> Fused:
        x = kf.x  # type: ignore[attr-defined]
        p = kf.P  # type: ignore[attr-defined]
        return Fused(float(x[0, 0]), float(np.sqrt(max(p[0, 0], 0.0))), float(x[1, 0]))

    def fused(self, episode: str) -> dict[str, Fused]:
        with self._lock:
            return {name: self._read(kf) for (ep, name), (_, kf) in self._filters.items()
                    if ep == episode}

    def forget(self, name: str) -> None:
        with self._lock:
            for key in [k for k in self._filters if k[1] == name]:
                del self._filters[key]
