"""Data assimilation: fuse noisy readings with the twin's own forecast.

For each variable with a declared sensor noise, a Kalman filter whose process model is
the twin itself::

    reading z_t arrives for episode e
      prior    x-  = twin.forecast(fused state of e at t-1, last action)  (the forecast)
               P-  = max(S - R, process**2)                                (its variance)
      update   x+, P+ = Kalman update of (x-, P-) with z_t, R = sensor**2  (filterpy)

``S`` is the variance of the innovations ``z - x-`` seen so far (discounted, per
variable): the innovation of a Kalman filter has variance ``P- + R``, so ``S - R`` is how
far the twin's forecasts are from the truth, learnt from the stream like the twin's own
intervals. A twin that forecasts well is trusted more; one that drifts is trusted less.
The forecast is made from the previous *fused* state, so noise in one reading does not
propagate into the next forecast. When the twin cannot forecast (``NotReady``: too
little data; ``BackendError`` or its ``ParseError``: a model failed; a forecast that is
not finite), the prior is a random walk: the last fused value with variance
``P+ + process**2``. Each such fallback is recorded, never silent: the fused value's
``source`` is "random walk" and its ``reason`` says why, and ``fallbacks_`` counts them
per cause.

Readings of a filtered variable must lie within ``±MAX_READING`` (1e150): beyond it the
squares in the variances overflow. ``check`` refuses such an observation with
``InvalidValue`` before anything is stored; should arithmetic still turn non-finite,
the filter restarts from the reading (``source`` "reset", with the reason).

The store keeps the raw readings; the fused state is what the twin believes the system
is in, and is served beside them.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from lmtwin.errors import BackendError, DependencyNotInstalled, InvalidValue, NotReady
from lmtwin.types import Observation

if TYPE_CHECKING:
    from lmtwin.twin import Twin

MAX_READING = 1e150  # |reading| beyond which a filter's variances would overflow


@dataclass(frozen=True)
class Noise:
    """Declared noise of one variable, in its unit: the spread of one sensor reading, and
    the smallest spread of the change per step that the twin cannot forecast (the floor
    of the prior's spread; also the random walk's step when there is no forecast)."""

    sensor: float
    process: float

    def __post_init__(self) -> None:
        for name in ("sensor", "process"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidValue(name, value, "noise must be a number")
            if not (math.isfinite(value) and 0 < value <= MAX_READING):
                raise InvalidValue(name, value, f"noise must be positive and at most "
                                                f"{MAX_READING:g}")


@dataclass(frozen=True)
class Fused:
    """The fused value of one variable: ``mean`` with spread ``sd``; ``prior`` is the
    forecast it was fused with (None for a first reading), ``gain`` the weight given to
    the reading (1 trusts the reading alone, 0 the forecast alone); ``reason`` says why
    the twin's forecast was not the prior (a random walk or a reset), else None."""

    mean: float
    sd: float
    prior: float | None
    gain: float
    source: str  # "twin" | "random walk" | "first reading" | "reset"
    reason: str | None = None


@dataclass
class _Episode:
    values: dict[str, float] = field(default_factory=dict)  # latest known, fused if filtered
    fused: dict[str, Fused] = field(default_factory=dict)
    variance: dict[str, float] = field(default_factory=dict)


class Assimilator:
    """Kalman filters for the variables of one twin that declare a sensor noise.

    Args:
        twin: the twin whose forecasts are the filter's process model.
        noise: declared noise per variable; others pass through unfiltered.
        using: names of the twin's predictors that forecast (None: all of them). A service
            ingesting thousands of readings a second uses the fast numeric ones.
        discount: weight kept by the past innovations at each new one.

    Example:
        >>> from lmtwin import Twin, Variable, Persistence, LocalRidge
        >>> twin = Twin(variables=[Variable("x")], predictors=[Persistence(), LocalRidge()])
        >>> kf = Assimilator(twin, {"x": Noise(sensor=1.0, process=0.1)})
        >>> fused = kf.update(twin.observe({"x": 3.0}))
        >>> fused["x"].source, fused["x"].sd
        ('first reading', 1.0)
    """

    def __init__(
        self,
        twin: Twin,
        noise: Mapping[str, Noise] | None = None,
        using: Sequence[str] | None = None,
        discount: float = 0.95,
    ) -> None:
        try:
            from filterpy.kalman import update
        except ImportError as exc:
            raise DependencyNotInstalled("filterpy", "assimilation") from exc
        if not 0 < discount < 1:
            raise InvalidValue("discount", discount, "must lie between 0 and 1")
        twin._chosen(using)  # unknown predictor names: the twin's own typed error
        self._update = update
        self.twin = twin
        self.using = list(using) if using is not None else None
        self.discount = discount
        self.noise: dict[str, Noise] = {}
        self._innovation: dict[str, tuple[float, float]] = {}  # weighted sum of z², weight
        self._episodes: dict[str, _Episode] = {}
        self._lock = threading.Lock()
        # fallbacks from the twin's forecast to a random walk (or a reset), per cause
        self.fallbacks_: Counter[str] = Counter()
        self.last_fallback_: str | None = None
        for name, value in (noise or {}).items():
            self.set_noise(name, value)

    def set_noise(self, name: str, noise: Noise | None) -> None:
        """Declare (or, with None, clear) a variable's noise; its filter starts afresh."""
        with self._lock:
            if noise is None:
                self.noise.pop(name, None)
            else:
                self.noise[name] = noise
            self._innovation.pop(name, None)
            for ep in self._episodes.values():
                ep.fused.pop(name, None)
                ep.variance.pop(name, None)

    def forget(self, name: str) -> None:
        """Drop a variable (removed from the schema) from every filter."""
        self.set_noise(name, None)
        with self._lock:
            for ep in self._episodes.values():
                ep.values.pop(name, None)

    def check(self, obs: Observation) -> None:
        """Raise ``InvalidValue`` if a filtered reading of ``obs`` lies beyond
        ``MAX_READING`` (call it before storing the observation)."""
        for name, value in obs.values.items():
            if name in self.noise and not abs(value) <= MAX_READING:
                raise InvalidValue(name, value, f"a variable with a declared sensor noise "
                                                f"takes readings within ±{MAX_READING:g}")

    def fused(self, episode: str) -> dict[str, Fused]:
        with self._lock:
            ep = self._episodes.get(episode)
            return dict(ep.fused) if ep is not None else {}

    def update(self, obs: Observation) -> dict[str, Fused]:
        """Fold one observation into its episode's filters; return the fused values of the
        variables it carried that declare a noise."""
        with self._lock:
            ep = self._episodes.setdefault(obs.episode, _Episode())
            noisy = [n for n in obs.values if n in self.noise]
            forecast, why = self._forecast(ep, noisy)
            out = {}
            for name in noisy:
                if name in forecast:
                    reason = None
                elif why is not None:
                    reason = why
                else:
                    reason = "forecast: no finite value for this variable"
                out[name] = ep.fused[name] = self._fuse(ep, name, obs.values[name],
                                                        forecast.get(name), reason)
            ep.values.update(obs.values)
            ep.values.update({n: f.mean for n, f in out.items()})
            return out

    def _forecast(self, ep: _Episode, noisy: list[str]) -> tuple[dict[str, float], str | None]:
        """The twin's forecast of this step from the episode's fused state, and why it is
        empty when the twin could not forecast."""
        if not noisy or not any(n in ep.fused for n in noisy):
            return {}, None
        schema = self.twin.schema
        state = {k: v for k, v in ep.values.items() if k in schema}
        try:
            mean = self.twin.forecast(state, predictors=self.using)
        except (NotReady, BackendError) as exc:  # ParseError is a BackendError
            return {}, f"{type(exc).__name__}: {str(exc)[:300]}"
        return {n: v for n, v in mean.items() if math.isfinite(v)}, None

    def _fallback(self, reason: str) -> str:
        self.fallbacks_[reason.split(":", 1)[0]] += 1
        self.last_fallback_ = reason
        return reason

    def _fuse(self, ep: _Episode, name: str, z: float, forecast: float | None,
              reason: str | None) -> Fused:
        noise = self.noise[name]
        r = noise.sensor**2
        last = ep.fused.get(name)
        if last is None:
            ep.variance[name] = r
            return Fused(z, noise.sensor, None, 1.0, "first reading")
        if forecast is None:
            prior, p_prior, source = last.mean, ep.variance[name] + noise.process**2, "random walk"
            reason = self._fallback(reason or "forecast: none")
        else:
            total, weight = self._innovation.get(name, (0.0, 0.0))
            # until innovations are seen, the declared noise stands in for them
            s = (total + (r + noise.process**2)) / (weight + 1.0)
            prior, p_prior, source = forecast, max(s - r, noise.process**2), "twin"
            innovation = z - forecast
            # a product, not **: an overflow gives inf (caught below), never OverflowError
            self._innovation[name] = (self.discount * total + innovation * innovation,
                                      self.discount * weight + 1.0)
        x, p = self._update(np.array([prior]), np.array([[p_prior]]), np.array([z]),
                            np.array([[r]]), H=np.array([[1.0]]))
        mean, variance = float(x[0]), float(p[0, 0])
        gain = p_prior / (p_prior + r)
        if not all(math.isfinite(v) for v in (mean, variance, gain)):
            # never a non-finite state: start again from the reading, and say so
            self._innovation.pop(name, None)
            ep.variance[name] = r
            return Fused(z, noise.sensor, None, 1.0, "reset",
                         self._fallback("overflow: the filter's arithmetic was not finite"))
        ep.variance[name] = variance
        return Fused(mean, math.sqrt(max(variance, 0.0)), prior, gain, source, reason)
