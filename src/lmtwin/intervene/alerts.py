"""Anomalies and drift: a conformal p-value for every scored observation, and a conformal
test martingale per variable.

Data flow::

    twin.observe -> the twin scores the new transition -> Monitor.update(score)
        e = (actual - predicted) / a scale learnt per variable (Residuals)
        p of |e| among the variable's recent ones <= alpha          -> "anomaly"
        p of the spike score of two readings (pair_score) <= spike -> "anomaly" (spike)
        normal scores of the signed e's smoothed p-values
            two-sided CUSUM >= h                                    -> "drift", reset
        (optional) Simple Jumper martingale (crepes' betting function) on the p of |e|
            CUSUM of its bets >= threshold                          -> "drift", reset
    alerts -> store.append_record(twin, "alert", ...)     append-only
    acknowledgements -> store.append_record(twin, "alert_ack", {"alert": id, ...})

False alarms follow from the levels. While a variable's residuals are exchangeable (no
fault), each p-value test flags a reading with probability at most ``alpha``; the drift
CUSUM reads exactly standard normal scores, so its mean time to a false alarm is the
Gaussian CUSUM's run length at ``h`` and ``k``; the test martingale's, at least
``threshold`` (its bets' CUSUM is an e-detector, Shin, Ramdas and Rinaldo 2023). The
martingale was the drift test before: on the bench it needed 32 readings (median) to
flag a dynamics step that the CUSUM flags in a few. A learning twin's residuals are only
roughly exchangeable, so the bench measures the real rate.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from lmtwin.errors import DependencyNotInstalled, LmtwinError

if TYPE_CHECKING:
    from lmtwin.store import Store
    from lmtwin.twin import Twin

log = logging.getLogger("lmtwin.alerts")

ALERT = "alert"
ACK = "alert_ack"


class InvalidSetting(LmtwinError, ValueError):
    """A monitor setting that cannot work (a level outside (0, 1), one the window cannot
    reach, a negative allowance, ...); nothing is created. Also a ``ValueError``."""


class AlertNotFound(LmtwinError):
    """No alert with that id in the twin's log."""

    def __init__(self, twin: str, alert_id: int) -> None:
        self.id = alert_id
        super().__init__(f"twin {twin!r} has no alert {alert_id}")


class AlertAcknowledged(LmtwinError):
    """The alert was acknowledged before; an acknowledgement is given once."""

    def __init__(self, twin: str, alert_id: int) -> None:
        self.id = alert_id
        super().__init__(f"alert {alert_id} of twin {twin!r} is already acknowledged")


class Scored(Protocol):
    """What the monitor reads from a scored prediction (``lmtwin.twin.Score``)."""

    episode: str
    t: float
    target: str
    actual: float
    combined: float
    sigma: float
    previous: float


@dataclass(frozen=True)
class Alert:
    """One alert as stored: ``id`` is its record id in the twin's log, ``at`` wall time.

    ``kind`` is "anomaly" (``p_value`` at most ``level``) or "drift" (the martingale's
    CUSUM ``martingale`` reached ``level``). ``t`` is the time of the reading judged, as in
    ``Score.t``: ``actual`` (read at ``t``) against ``predicted``."""

    id: int
    at: float
    kind: str
    variable: str
    episode: str
    t: float
    actual: float
    predicted: float
    sigma: float
    p_value: float
    martingale: float
    level: float
    acknowledged: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DriftDetector:
    """A Simple Jumper conformal test martingale on a stream of p-values, with a CUSUM
    alarm: ``update(p)`` returns True when the CUSUM of its bets reaches ``threshold``,
    and then starts afresh.

    The martingale is crepes' ``SimpleJumper`` (ALRW Alg. 8.1) run one p-value at a time
    (crepes computes it over a whole array): the same betting function and jumps, with
    the capital kept normalised so that a long quiet stream cannot underflow.

    Args:
        threshold: the CUSUM level that raises the alarm (mean time to a false alarm at
            least this many uniform p-values).
        jump: the Jumper's rate of redistributing capital among the bets.
        betting: a crepes betting function (None: ``one_sided()``).
    """

    def __init__(self, threshold: float = 3000.0, jump: float = 0.01,
                 betting: Any = None) -> None:
        if not threshold > 1:
            raise InvalidSetting("threshold must exceed 1")
        if not 0 < jump < 1:
            raise InvalidSetting("jump must lie between 0 and 1")
        self.threshold = threshold
        self.jump = jump
        self.betting = betting if betting is not None else one_sided()
        self.alarm_ = 0.0  # the CUSUM at the last alarm
        self._table = _step_table(self.betting)
        self.reset()

    def reset(self) -> None:
        self.capital_: np.ndarray | None = None  # share of the capital on each bet
        self.log_value_ = 0.0  # log of the martingale since the last reset
        self.cusum_ = 1.0
        self.n_ = 0

    def rewards(self, p: float) -> np.ndarray:
        """The bets' rewards for one p-value (from a table when they are steps)."""
        if self._table is not None:
            cuts, rows = self._table
            return rows[int(np.searchsorted(cuts, p, side="left"))]
        return np.asarray(self.betting.apply(np.array([p], dtype=float)))[0]

    def update(self, p: float) -> bool:
        """Bet on one p-value; True when the alarm goes off (the detector then resets)."""
        rewards = self.rewards(p)
        if self.capital_ is None:
            self.capital_ = np.full(len(rewards), 1.0 / len(rewards))
        grown = self.capital_ * rewards
        factor = float(grown.sum())  # the martingale's bet on this p-value
        self.capital_ = (1 - self.jump) * grown / factor + self.jump / len(grown)
        self.log_value_ += math.log(factor)
        self.cusum_ = max(self.cusum_, 1.0) * factor
        self.n_ += 1
        if self.cusum_ >= self.threshold:
            self.alarm_ = self.cusum_
            self.reset()
            return True
        return False


def one_sided() -> Any:
    """crepes' step betting function with bets only on p-values that are too small
    (reward ``b / a`` when ``p <= a``, for ``a`` in 0.01, 0.05, 0.1 and ``b`` in 0.2, 0.5).

    A fault makes residuals larger, never smaller; crepes' default grid also bets on
    large p-values, and on the tuning seeds it alarmed on stretches where the twin was
    more accurate than usual (a fast, well-predicted tumour shrinkage)."""
    try:
        from crepes.martingales import StepBettingFunction
    except ImportError as exc:
        raise DependencyNotInstalled("crepes>=0.9", None) from exc
    return StepBettingFunction(Gs=[0.2, 0.5], A=[0.01, 0.05, 0.1])


def _step_table(betting: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """A step betting function's rewards are constant between its thresholds: ask crepes
    once per piece (at each threshold and above the last), then look them up, instead of
    a Python loop over every bet for every p-value."""
    from crepes.martingales import StepBettingFunction

    if not isinstance(betting, StepBettingFunction) or betting.s is not None:
        return None
    cuts = np.unique(np.atleast_1d(np.asarray(betting.A, dtype=float)))
    probes = np.append(cuts, 1.0)  # p <= cut[i] for the i-th piece, above all for the last
    return cuts, np.asarray(betting.apply(probes))


class Window:
    """A variable's last ``size`` nonconformity scores ``|actual - predicted| / sigma``,
    kept sorted, for conformal p-values by binary search.

    The p-values are crepes' (``ConformalRegressor.predict_p`` on the same normalised
    residuals, as in ``Calibrator.pvalue``; the tests check they agree), computed
    incrementally: crepes fits (sorts) the whole window for every p-value, measured
    1.1 ms a reading and variable with 2,000 residuals, which made ingest three times
    slower on a twin of three variables; here a reading costs a few microseconds.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise InvalidSetting("a window holds at least one residual")
        self.size = size
        self._order: deque[float] = deque()
        self._sorted = np.empty(0)

    def __len__(self) -> int:
        return len(self._order)

    def top(self, without: float | None = None) -> float:
        """The largest score held (infinity while empty); ``without``: leaving one score
        equal to it out."""
        held = self._sorted
        if without is not None and len(held) and held[-1] == without:
            held = held[:-1]
        return float(held[-1]) if len(held) else math.inf

    def pvalues(self, score: float, theta: float) -> tuple[float, float]:
        """(p-value, smoothed p-value) of ``score``; ``theta`` is the smoothing's uniform
        tie-breaking draw."""
        n = len(self._order)
        below = int(np.searchsorted(self._sorted, score, side="left"))
        upto = int(np.searchsorted(self._sorted, score, side="right"))
        plain = (n - below + 1) / (n + 1)
        smooth = (n - upto + theta * (upto - below + 1)) / (n + 1)
        return plain, smooth

    def add(self, score: float) -> None:
        if len(self._order) == self.size:
            oldest = self._order.popleft()
            at = int(np.searchsorted(self._sorted, oldest, side="left"))
            self._sorted = np.delete(self._sorted, at)
        self._order.append(score)
        self._sorted = np.insert(self._sorted, int(np.searchsorted(self._sorted, score)), score)

    def replace(self, old: float, new: float) -> bool:
        """Put ``new`` in the place of the latest score equal to ``old``; False when no
        score equals it (it has left the window)."""
        for i in range(len(self._order) - 1, -1, -1):
            if self._order[i] == old:
                self._order[i] = new
                at = int(np.searchsorted(self._sorted, old, side="left"))
                self._sorted = np.delete(self._sorted, at)
                self._sorted = np.insert(self._sorted,
                                         int(np.searchsorted(self._sorted, new)), new)
                return True
        return False


SCALES = ("sigma", "absolute", "relative")


class Shift:
    """A two-sided CUSUM on the normal scores of smoothed conformal p-values:
    ``x = Phi^-1(1 - p)`` where ``p`` is the upper-tail p-value of the signed normalised
    residual among the variable's recent ones. While the residuals are exchangeable the
    smoothed ``p`` is uniform, so ``x`` is exactly standard normal whatever the residuals'
    own distribution (heavy tails included), and the CUSUM's false-alarm rate is the
    Gaussian one. A change of the dynamics biases the residuals one way: ``x`` drifts
    off zero and the CUSUM climbs by about ``|mean(x)| - k`` a reading.

    Args:
        h: the alarm level (both sides); the CUSUM starts afresh after an alarm.
        k: the allowance subtracted each reading (half the shift to detect fastest).
    """

    def __init__(self, h: float = 8.0, k: float = 0.5) -> None:
        if not h > 0 or not k >= 0:
            raise InvalidSetting("the CUSUM needs h > 0 and k >= 0")
        self.h = h
        self.k = k
        self.alarm_ = 0.0
        self.reset()

    def reset(self) -> None:
        self.up_ = 0.0
        self.down_ = 0.0

    @property
    def value(self) -> float:
        return max(self.up_, self.down_)

    def update(self, x: float) -> bool:
        """Add one normal score; True when either side reaches ``h`` (then reset)."""
        self.up_ = max(0.0, self.up_ + x - self.k)
        self.down_ = max(0.0, self.down_ - x - self.k)
        if self.value >= self.h:
            self.alarm_ = self.value
            self.reset()
            return True
        return False


def normal_score(p: float) -> float:
    """``Phi^-1(1 - p)``, the standard normal quantile of a p-value's complement."""
    from scipy.special import ndtri

    return float(-ndtri(min(max(p, 1e-12), 1 - 1e-12)))


class Residuals:
    """One variable's recent residuals, the scale that normalises them, and the sorted
    windows of normalised scores its p-values are computed from.

    The scale is learnt from the residuals: of the twin's difficulty ``sigma``, a constant
    (additive sensor noise) and the previous reading's size (relative noise), the one
    whose normalised residuals have the lightest tail (smallest ratio of the 99% to the
    50% quantile of ``|e|``), chosen again every ``rechoose`` residuals. Measured on
    the bench's fault-free streams (tuning seeds): the twin's difficulty counts the
    predicted change, but the one-step residual is mostly sensor noise (tank: residual sd
    0.23-0.26 cm in every quartile of a difficulty ranging 0.45-0.69; cancer volume:
    about 1% of the reading whatever the relative difficulty, 4-10%), so residual /
    difficulty mixed scales and a 5-sigma spike scored below the fault-free 99.95% quantile
    on the cancer in 13 of 30 cases (3 of 30 with the relative scale and the pair test).

    Windows: ``abs`` of ``|e|`` (the anomaly test), ``signed`` of ``e`` (the drift test's
    p-values) and ``pair`` of the into-and-out-of score of consecutive readings
    (``pair_score``: a spike on one reading pushes the residual into it one way and the
    one out of it the other way).
    """

    def __init__(self, size: int, rechoose: int = 200) -> None:
        self.size = size
        self.rechoose = rechoose
        # (residual, sigma, previous) of each reading, and of the episode's reading
        # before it (NaNs when it had none): enough to renormalise everything. A tenth
        # more than the windows hold: an episode's first kept reading has no spike score,
        # and a spike window rebuilt from only ``size`` readings held fewer than ``size``
        # scores, so its smallest p-value stayed above the level (on the bench's cancer,
        # 30 patients in 2,000 readings: 1/1,966 > 0.0005, the spike test never fired)
        self.raw: deque[tuple[float, float, float, float, float, float]] = deque(
            maxlen=size + size // 10 + 1)
        self.marked: deque[bool] = deque(maxlen=self.raw.maxlen)  # flagged by a test
        self.scale = "sigma"
        self.floor = 0.0  # added to |previous| for the relative scale (readings at 0)
        self.abs = Window(size)
        self.signed = Window(size)
        self.pair = Window(size)
        self._since = 0

    def unit(self, sigma: float, previous: float) -> float:
        if self.scale == "absolute":
            return 1.0
        if self.scale == "relative":
            unit = abs(previous) + self.floor if math.isfinite(previous) else math.nan
            return unit if unit > 0 else math.nan
        return sigma

    def normalise(self, residual: float, sigma: float, previous: float) -> float:
        unit = self.unit(sigma, previous)
        return residual / unit if math.isfinite(unit) and unit > 0 else math.nan

    def clipped(self, reading: tuple[float, float, float], kept: bool = False
                ) -> tuple[float, float, float]:
        """``reading`` with its residual cut to the largest one the window holds (how a
        flagged reading joins the windows: see ``Monitor``); ``kept``: the reading is in
        the window already, cut to the largest of the others."""
        _, sigma, previous = reading
        e = self.normalise(*reading)
        top = self.abs.top(abs(e) if kept else None)
        if not math.isfinite(e) or abs(e) <= top:
            return reading
        return (math.copysign(top, e) * self.unit(sigma, previous), sigma, previous)

    def add(self, reading: tuple[float, float, float],
            before: tuple[float, float, float] | None, flagged: bool = False) -> None:
        """Keep one reading's (residual, sigma, previous), with the episode's reading
        before it (None: none, or not kept); a flagged reading's residual is clipped
        (``clipped``) and so is its spike score."""
        if flagged:
            reading = self.clipped(reading)
        self.raw.append((*reading, *(before or (math.nan,) * 3)))
        self.marked.append(flagged)
        e = self.normalise(*reading)
        self.abs.add(abs(e))
        self.signed.add(e)
        if before is not None:
            score = pair_score(self.normalise(*before), e)
            self.pair.add(min(score, self.pair.top()) if flagged else score)
        self._since += 1
        if self._since >= self.rechoose and len(self.raw) >= self.rechoose:
            self._since = 0
            self.choose()

    def revise(self, reading: tuple[float, float, float]) -> tuple[float, float, float]:
        """Clip a reading kept earlier (found by its values), once a later test flagged
        it: the residual into a spike joined the windows as an ordinary one. Returns the
        reading as now kept."""
        new = self.clipped(reading, kept=True)
        if new == reading:
            return reading
        for j in range(len(self.raw) - 1, -1, -1):
            if self.raw[j][:3] == reading:
                entry = self.raw[j]
                self.raw[j] = (*new, *entry[3:])
                self.marked[j] = True
                e_old, e_new = self.normalise(*reading), self.normalise(*new)
                self.abs.replace(abs(e_old), abs(e_new))
                self.signed.replace(e_old, e_new)
                if math.isfinite(entry[3]):
                    first = self.normalise(*entry[3:])
                    self.pair.replace(pair_score(first, e_old), pair_score(first, e_new))
                break
        return new

    def choose(self) -> None:
        """Pick the scale with the lightest tail and rebuild the windows with it."""
        r, s, prev, r0, s0, prev0 = (np.array(x, dtype=float)
                                     for x in zip(*self.raw, strict=True))
        size = np.abs(prev[np.isfinite(prev)])
        floor = 0.01 * float(np.median(size)) if size.size else 0.0
        units = {"sigma": s, "absolute": np.ones_like(r), "relative": np.abs(prev) + floor}
        best, best_ratio = self.scale, math.inf
        for name in SCALES:
            e = np.abs(r / units[name])
            if not np.all(np.isfinite(e)):
                continue
            q50, q99 = np.quantile(e, [0.5, 0.99])
            if q50 > 0 and q99 / q50 < best_ratio:
                best, best_ratio = name, float(q99 / q50)
        self.scale, self.floor = best, floor
        e = r / units[best]
        e0 = r0 / {"sigma": s0, "absolute": np.ones_like(r0),
                   "relative": np.abs(prev0) + floor}[best]
        self.abs, self.signed, self.pair = (Window(self.size) for _ in range(3))
        pairs = [pair_score(first, value) if math.isfinite(first) else math.nan
                 for value, first in zip(e.tolist(), e0.tolist(), strict=True)]
        # a flagged reading's spike score stays clipped to the largest ordinary one
        top = max((p for p, m in zip(pairs, self.marked, strict=True)
                   if not m and math.isfinite(p)), default=math.inf)
        for value, score, marked in zip(e.tolist(), pairs, self.marked, strict=True):
            self.abs.add(abs(value))
            self.signed.add(value)
            if math.isfinite(score):
                self.pair.add(min(score, top) if marked else score)


def pair_score(before: float, after: float) -> float:
    """How much two consecutive normalised residuals look like a spike on the reading
    between them: ``|before - after| / sqrt(2)`` when they have opposite signs and
    ``|before|`` is at least a third of ``|after|``, else 0.

    A spike of size s on one reading adds s to the residual into it and about -s to the
    one out of it (the next prediction follows the reading); with the residuals' lag-one
    correlation near -1/2 (tank -0.3 to -0.5 on the bench) the difference is the
    likelihood-ratio statistic for that pattern. On the bench's tuning seeds (spike test
    alone at level 0.0005) it flagged 24 of 26 tank and 15 of 30 cancer spikes with
    0.64 false alarms per 1,000 readings, against 20 and 8 (0.38) with the smaller
    ``|e|`` of the pair used before. The third: one large residual after an ordinary
    one is no spike on the ordinary reading (with the difference alone it was blamed,
    a false alarm beside each single outlier); a spike's residual into it is rarely
    that much smaller than the one out of it (the same hits on the tuning seeds)."""
    if before * after >= 0 or 3 * abs(before) < abs(after):
        return 0.0
    return abs(before - after) / math.sqrt(2)


@dataclass
class Verdict:
    """What the monitor computed for the last reading it judged (for benches and plots).

    ``p``/``smooth``: the anomaly p-value (plain, smoothed); ``pair``: the spike test's
    p-value for the episode's previous reading (NaN: not tested); ``shift``: the drift
    CUSUM's normal score (NaN on an episode's first readings); ``start``: one of the
    episode's first ``settle`` readings."""

    p: float
    smooth: float
    pair: float
    shift: float
    start: bool


@dataclass
class _Last:
    """An episode's last judged reading of a variable."""

    count: int
    reading: tuple[float, float, float] | None  # (residual, sigma, previous); None: unkept
    base: dict[str, Any]
    flagged: bool


class Monitor:
    """Raises anomaly and drift alerts from a twin's scored predictions and keeps them in
    the twin's store.

    ``Monitor(twin)`` registers itself with ``twin.add_listener``: every prediction the
    twin scores reaches ``update`` before its residual enters the twin's calibrator; the
    scores the twin already holds (from reopening its store) calibrate the p-values
    without raising alerts. Without a twin, pass ``store`` and ``name`` and call
    ``check`` yourself.

    Each variable's residuals are normalised by a scale learnt from them (``Residuals``:
    the twin's difficulty, a constant or the reading's size). Three tests per reading:

    - anomaly: the conformal p-value of ``|e|`` among the variable's recent ones is at
      most ``alpha`` (0: test off);
    - spike: the p-value of the spike score of the episode's previous reading and this
      one (``pair_score``) is at most ``spike``; the alert is dated the previous reading
      (the spiked one), unless that one was flagged already; the residual out of a spike
      is not judged a spike itself;
    - drift: a two-sided CUSUM (``Shift``) of the normal scores of the signed residuals'
      smoothed p-values reaches ``h``; optionally also the Simple Jumper test martingale
      (``DriftDetector``) on the anomaly p-values reaches ``threshold``; none within
      ``refractory`` readings of the variable's last drift alert.

    An episode's first ``settle`` readings (a new patient: the twin has not seen this one
    yet, and a drug concentration jumps from 0 at the first dose) are judged among the
    first readings of other episodes only, and feed neither the spike nor the drift test:
    on the cancer's fault-free streams their residuals were 10x the median one (|e| 99%
    quantile 1.0-1.6 against 0.1 from the fourth reading on). A reading flagged
    anomalous joins the windows at the largest residual already there: the tail keeps
    its mass (leaving flagged residuals out, as before, made the window's tail thinner
    and thinner: 2.5x alpha false alarms at alpha 0.01), and one fault does not raise the
    bar for the next. So do both residuals of a flagged spike, the one into it clipped
    after the fact (``Residuals.revise``): left in, the bench's spikes (one every
    120-150 readings) became the spike window's largest scores, and each missed spike
    hid the next.

    False alarms: for exchangeable residuals each p-value test flags at most ``alpha`` of
    the readings, and the CUSUM on exactly normal scores has a known run length; the
    twin's residuals are only roughly exchangeable, so ``lmtwin.bench.alerts`` measures
    the rate. The defaults are the settings it chose on its tuning seeds (single-reading
    test off, spike level 0.0005, h 8, k 0.5, refractory 50): 0.96 false alarms per
    1,000 fault-free readings on its scored seeds.

    Args:
        twin: the twin to watch.
        alpha: p-value at or below which a reading is an anomaly; 0 turns the test off.
            A level needs ``1 / level - 1`` residuals of the variable first, and at
            least ``1 / (window + 1)`` (smaller ones are refused: never reached).
        spike: the spike test's level (0: off; None: ``alpha`` if set, else 0.0005 or,
            for a small window, the smallest level it reaches).
        threshold: the test martingale's CUSUM level (``math.inf``: not used).
        window: residuals per variable that calibrate the p-values.
        jump: the test martingale's jumping rate.
        h, k: the drift CUSUM's level and allowance.
        settle: an episode's first readings judged apart.
        refractory: after a drift alert, that many readings of the variable raise no
            other (the CUSUM still restarts at each crossing): a lasting change is one
            alert, not one every ``h / (shift - k)`` readings. On the bench's tuning
            seeds one fault-free patient the twin mispredicted raised 4 drift alerts in
            18 readings at h=5, k=1.
        seed: seeds the tie-breaking draws of the smoothed p-values.

    Raises:
        InvalidSetting: a level outside [0, 1) or below ``1 / (window + 1)``, a window
            below 1, ``h <= 0``, ``k < 0``, ``settle < 0``, ``threshold <= 1``, a jump
            outside (0, 1), or neither a twin nor a store and name.

    Example:
        >>> from lmtwin.store import MemoryStore
        >>> m = Monitor(store=MemoryStore(), name="pump", alpha=0.01, window=200)
        >>> for i in range(200):
        ...     _ = m.check("x", actual=float(i % 7), predicted=3.0, sigma=1.0)
        >>> [a.kind for a in m.check("x", actual=40.0, predicted=3.0, sigma=1.0)]
        ['anomaly']
    """

    def __init__(
        self,
        twin: Twin | None = None,
        store: Store | None = None,
        name: str | None = None,
        alpha: float = 0.0,
        threshold: float = math.inf,
        window: int = 2000,
        jump: float = 0.01,
        h: float = 8.0,
        k: float = 0.5,
        settle: int = 3,
        seed: int = 0,
        spike: float | None = None,
        refractory: int = 50,
    ) -> None:
        if not isinstance(window, int) or window < 1:
            raise InvalidSetting(f"window must be a positive number of residuals, not {window!r}")
        if spike is None:  # alpha's level, else the bench's choice if the window reaches it
            spike = alpha or max(0.0005, 1 / (window + 1))
        for name_, level in (("alpha", alpha), ("spike", spike)):
            if not 0 <= level < 1:  # NaN fails too
                raise InvalidSetting(f"{name_} must lie in [0, 1) (0: test off), not {level!r}")
            if level and level < 1 / (window + 1):
                raise InvalidSetting(
                    f"{name_}={level:g} is never reached with a window of {window} (its "
                    f"smallest p-value is 1/{window + 1}): widen the window")
        if settle < 0:
            raise InvalidSetting("settle must be at least 0")
        if not isinstance(refractory, int) or refractory < 0:
            raise InvalidSetting(f"refractory must be a whole number >= 0, not {refractory!r}")
        if twin is not None:
            store, name = twin.store, twin.name
        if store is None or name is None:
            raise InvalidSetting("pass a twin, or a store and the twin's name")
        Shift(h, k)  # checks h and k
        if not threshold > 1:  # inf: no test martingale
            raise InvalidSetting(f"threshold must exceed 1, not {threshold!r}")
        if not 0 < jump < 1:
            raise InvalidSetting(f"jump must lie between 0 and 1, not {jump!r}")
        self.store = store
        self.name = name
        self.alpha = alpha
        self.spike = spike
        self.refractory = refractory
        self.threshold = threshold
        self.jump = jump
        self.h = h
        self.k = k
        self.settle = settle
        self.window = window
        self.residuals: dict[str, Residuals] = {}
        self.starts: dict[str, Window] = {}
        self.shifts: dict[str, Shift] = {}
        self.detectors: dict[str, DriftDetector] = {}
        self._last: dict[tuple[str, str], _Last] = {}
        self._calm: dict[str, int] = {}  # per variable: readings left without drift alerts
        self.last_: Verdict | None = None  # None when the last check gave no verdict
        self.skipped_ = 0
        self.errors_ = 0
        self._rng = np.random.default_rng(seed)
        self._subscribers: list[Callable[[Alert], None]] = []
        self._lock = threading.Lock()
        if twin is not None:
            # what the twin scored before (a reopened store) calibrates, raises nothing
            for score in list(twin.scores_)[-window:]:
                self._judge(score.target, score.actual, score.combined, score.sigma,
                            score.episode, score.t, score.previous, quiet=True)
            twin.add_listener(self._listen)

    def _of(self, variable: str) -> Residuals:
        found = self.residuals.get(variable)
        if found is None:
            found = self.residuals[variable] = Residuals(self.window)
        return found

    def n(self, variable: str) -> int:
        """Residuals of ``variable`` calibrating its p-values now."""
        found = self.residuals.get(variable)
        return len(found.abs) if found is not None else 0

    def scale(self, variable: str) -> str:
        """The scale normalising ``variable``'s residuals now (one of ``SCALES``)."""
        found = self.residuals.get(variable)
        return found.scale if found is not None else "sigma"

    def subscribe(self, fn: Callable[[Alert], None]) -> None:
        """Call ``fn(alert)`` for each new alert, once it is stored."""
        self._subscribers.append(fn)

    def update(self, score: Scored) -> list[Alert]:
        """Check one scored prediction (a ``lmtwin.twin.Score``)."""
        return self.check(score.target, score.actual, score.combined, score.sigma,
                          score.episode, score.t, score.previous)

    def _listen(self, score: Scored) -> None:
        # called inside twin.observe after the reading is stored: a failure to judge or
        # store an alert must not fail the observation (the caller would retry a reading
        # already kept); it is logged with its traceback and counted in errors_
        try:
            self.update(score)
        except Exception:
            self.errors_ += 1
            log.exception("alert monitor of twin %r failed on %s at t=%s", self.name,
                          score.target, score.t)

    def check(self, variable: str, actual: float, predicted: float, sigma: float,
              episode: str = "default", t: float = 0.0,
              previous: float = math.nan) -> list[Alert]:
        """Judge one reading of ``variable`` (``previous``: the episode's reading before
        it) against its prediction; store and return the alerts it raises (none, an
        anomaly, a spike on the previous reading, a drift, or several)."""
        raised = self._judge(variable, actual, predicted, sigma, episode, t, previous)
        with self._lock:
            alerts = [self._store(payload) for payload in raised]
        for alert in alerts:
            for fn in self._subscribers:
                fn(alert)
        return alerts

    def _judge(self, variable: str, actual: float, predicted: float, sigma: float,
               episode: str, t: float, previous: float, quiet: bool = False
               ) -> list[dict[str, Any]]:
        """The alerts one reading raises (payloads), after updating the state."""
        self.last_ = None
        if not all(math.isfinite(x) for x in (actual, predicted, sigma)) or sigma <= 0:
            self.skipped_ += 1  # an unscored residual (e.g. no difficulty): no verdict
            return []
        with self._lock:
            res = self._of(variable)
            reading = (actual - predicted, sigma, previous)
            e = res.normalise(*reading)
            if not math.isfinite(e):
                self.skipped_ += 1  # the learnt scale cannot judge it (no previous)
                return []
            key = (variable, str(episode))
            last = self._last.get(key)
            count = 1 if last is None else last.count + 1
            theta = float(self._rng.random())  # the smoothing's tie-breaking draw
            base = {"variable": variable, "episode": str(episode), "t": float(t),
                    "actual": float(actual), "predicted": float(predicted),
                    "sigma": float(sigma)}
            raised: list[dict[str, Any]] = []
            if count <= self.settle:
                start = self.starts.setdefault(variable, Window(self.window))
                p, smooth = start.pvalues(abs(e), theta) if len(start) else (1.0, 1.0)
                anomalous = p <= self.alpha
                if anomalous:
                    raised.append({"kind": "anomaly", **base, "p_value": p,
                                   "martingale": 1.0, "level": self.alpha})
                start.add(min(abs(e), start.top()) if anomalous else abs(e))
                self.last_ = Verdict(p, smooth, math.nan, math.nan, True)
                self._last[key] = _Last(count, None, base, anomalous)
                return [] if quiet else raised
            p, smooth = res.abs.pvalues(abs(e), theta) if len(res.abs) else (1.0, 1.0)
            anomalous = p <= self.alpha
            if anomalous:
                raised.append({"kind": "anomaly", **base, "p_value": p,
                               "martingale": 1.0, "level": self.alpha})
            pair = math.nan
            spiked = False
            before = last.reading if last is not None else None
            if before is not None and len(res.pair):
                assert last is not None
                score = pair_score(res.normalise(*before), e)
                pair = res.pair.pvalues(score, theta)[0] if score > 0 else 1.0
                spiked = pair <= self.spike
                if spiked and not last.flagged:
                    # the residual into the spike joined the windows as an ordinary one:
                    # clipped now, as the one out of it is below (with both left in, the
                    # bench's spikes, one every 120-150 readings, set the windows' tails)
                    last.flagged = True
                    before = last.reading = res.revise(before)
                    raised.append({"kind": "anomaly", **last.base, "p_value": pair,
                                   "martingale": 1.0, "level": self.spike})
            shift = math.nan
            calm = self._calm.get(variable, 0) - 1  # readings left without drift alerts
            if len(res.signed):
                shift = normal_score(res.signed.pvalues(e, theta)[1])
                detector = self.shifts.setdefault(variable, Shift(self.h, self.k))
                if detector.update(shift) and calm < 0:
                    calm = self.refractory
                    raised.append({"kind": "drift", **base, "p_value": smooth,
                                   "martingale": detector.alarm_, "level": self.h})
            if math.isfinite(self.threshold) and len(res.abs):
                martingale = self.detectors.get(variable)
                if martingale is None:
                    martingale = self.detectors[variable] = DriftDetector(self.threshold,
                                                                          self.jump)
                if martingale.update(smooth) and calm < 0:
                    calm = self.refractory
                    raised.append({"kind": "drift", **base, "p_value": smooth,
                                   "martingale": martingale.alarm_,
                                   "level": self.threshold})
            self._calm[variable] = calm
            flagged = anomalous or spiked  # kept at the window's largest (see Monitor)
            if flagged:
                reading = res.clipped(reading)
            res.add(reading, before, flagged)
            self.last_ = Verdict(p, smooth, pair, shift, False)
            # the residual out of a spike is no spike itself: its pair with the next
            # reading cannot blame it (flagged counts as already judged)
            self._last[key] = _Last(count, reading, base, flagged)
            return [] if quiet else raised

    def _store(self, payload: dict[str, Any]) -> Alert:
        record = self.store.append_record(self.name, ALERT, payload)
        return Alert(id=record.id, at=record.at, **payload)

    def alerts(self, after: int = 0, limit: int | None = None) -> list[Alert]:
        return alerts(self.store, self.name, after, limit)

    def acknowledge(self, alert_id: int, by: str = "", note: str = "") -> Alert:
        with self._lock:
            return acknowledge(self.store, self.name, alert_id, by, note)


def _alert(record: Any, acks: dict[int, dict[str, Any]]) -> Alert:
    fields = {k: record.payload[k] for k in Alert.__dataclass_fields__
              if k in record.payload}
    return Alert(id=record.id, at=record.at, acknowledged=acks.get(record.id), **fields)


def _acks(store: Store, name: str) -> dict[int, dict[str, Any]]:
    return {int(r.payload["alert"]): {"at": r.at, "by": r.payload.get("by", ""),
                                      "note": r.payload.get("note", "")}
            for r in store.records(name, ACK)}


def alerts(store: Store, name: str, after: int = 0, limit: int | None = None) -> list[Alert]:
    """The twin's alerts with ``id > after``, oldest first, each with its acknowledgement."""
    acks = _acks(store, name)
    return [_alert(r, acks) for r in store.records(name, ALERT, after, limit)]


def acknowledge(store: Store, name: str, alert_id: int, by: str = "", note: str = "") -> Alert:
    """Record that a person has seen alert ``alert_id``; returns the alert acknowledged.

    Raises:
        AlertNotFound: no such alert.
        AlertAcknowledged: it was acknowledged before (nothing is written).
    """
    found = store.records(name, ALERT, after=alert_id - 1, limit=1) if alert_id > 0 else []
    if not found or found[0].id != alert_id:
        raise AlertNotFound(name, alert_id)
    acks = _acks(store, name)
    if alert_id in acks:
        raise AlertAcknowledged(name, alert_id)
    record = store.append_record(name, ACK, {"alert": alert_id, "by": by, "note": note})
    acks[alert_id] = {"at": record.at, "by": by, "note": note}
    return _alert(found[0], acks)
