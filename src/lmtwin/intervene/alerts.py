"""Anomalies and drift: a conformal p-value for every scored observation, and a conformal
test martingale per variable.

Data flow::

    twin.observe -> the twin scores the new transition -> Monitor.update(score)
        nonconformity |actual - predicted| / sigma among the variable's recent ones
        p (not smoothed) <= alpha                      -> an "anomaly" alert
        p (smoothed) -> Simple Jumper martingale (crepes' betting function)
            CUSUM of its bets >= threshold             -> a "drift" alert, then reset
    alerts -> store.append_record(twin, "alert", ...)     append-only
    acknowledgements -> store.append_record(twin, "alert_ack", {"alert": id, ...})

False alarms follow from the two levels. While a variable's residuals are exchangeable
(no fault), an observation is flagged anomalous with probability at most ``alpha``, and
the drift detector's mean time to a false alarm is at least ``threshold`` observations:
the CUSUM of a test martingale's bets is an e-detector (Shin, Ramdas and Rinaldo 2023),
and by Ville's inequality the martingale itself, started afresh at any point, crosses
``threshold`` with probability at most ``1 / threshold``. So at most about
``alpha + 1 / threshold`` false alarms per observation and variable. A learning twin's
residuals are only roughly exchangeable, so the bench measures the real rate.
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
            raise ValueError("threshold must exceed 1")
        if not 0 < jump < 1:
            raise ValueError("jump must lie between 0 and 1")
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
            raise ValueError("a window holds at least one residual")
        self.size = size
        self._order: deque[float] = deque()
        self._sorted = np.empty(0)

    def __len__(self) -> int:
        return len(self._order)

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


class Monitor:
    """Raises anomaly and drift alerts from a twin's scored predictions and keeps them in
    the twin's store.

    ``Monitor(twin)`` registers itself with ``twin.add_listener``: every prediction the
    twin scores reaches ``update`` before its residual enters the twin's calibrator; the
    scores the twin already holds (from reopening its store) calibrate the p-values
    without raising alerts. Without a twin, pass ``store`` and ``name`` and call
    ``check`` yourself.

    The p-values come from the monitor's own window of the variable's normalised
    residuals (the twin's interval calibrator keeps 300, too few to resolve a p-value of
    ``alpha``: a p-value is never below ``1 / (window + 1)``), fed the same residuals.
    A residual flagged anomalous is not added to that window, so one fault does not
    hide the next.

    Args:
        twin: the twin to watch.
        alpha: p-value at or below which an observation is an anomaly; anomalies need
            ``1 / alpha - 1`` residuals of the variable first.
        threshold: the drift detector's CUSUM level (3000 and ``alpha`` 0.0005 are
            the settings ``lmtwin.bench.alerts`` chose on its tuning seeds).
        window: residuals per variable that calibrate the p-values.
        jump: the drift martingale's jumping rate.
        seed: seeds the tie-breaking draws of the smoothed p-values.

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
        alpha: float = 0.0005,
        threshold: float = 3000.0,
        window: int = 2000,
        jump: float = 0.01,
        seed: int = 0,
    ) -> None:
        if not 0 < alpha < 1:
            raise ValueError("alpha must lie between 0 and 1")
        if twin is not None:
            store, name = twin.store, twin.name
        if store is None or name is None:
            raise ValueError("pass a twin, or a store and the twin's name")
        self.store = store
        self.name = name
        self.alpha = alpha
        self.threshold = threshold
        self.jump = jump
        self.window = window
        self.windows: dict[str, Window] = {}
        self.detectors: dict[str, DriftDetector] = {}
        # (p-value, smoothed p-value) of the last check, None when it gave no verdict
        self.last_: tuple[float, float] | None = None
        self.skipped_ = 0
        self.errors_ = 0
        self._rng = np.random.default_rng(seed)
        self._subscribers: list[Callable[[Alert], None]] = []
        self._lock = threading.Lock()
        if twin is not None:
            # what the twin scored before (a reopened store) calibrates, raises nothing
            for score in list(twin.scores_)[-window:]:
                values = (score.actual, score.combined, score.sigma)
                if all(math.isfinite(x) for x in values) and score.sigma > 0:
                    self._window(score.target).add(abs(score.actual - score.combined)
                                                   / score.sigma)
            twin.add_listener(self._listen)

    def _window(self, variable: str) -> Window:
        found = self.windows.get(variable)
        if found is None:
            found = self.windows[variable] = Window(self.window)
        return found

    def n(self, variable: str) -> int:
        """Residuals of ``variable`` calibrating its p-values now."""
        return len(self.windows.get(variable, ()))

    def subscribe(self, fn: Callable[[Alert], None]) -> None:
        """Call ``fn(alert)`` for each new alert, once it is stored."""
        self._subscribers.append(fn)

    def update(self, score: Scored) -> list[Alert]:
        """Check one scored prediction (a ``lmtwin.twin.Score``)."""
        return self.check(score.target, score.actual, score.combined, score.sigma,
                          score.episode, score.t)

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
              episode: str = "default", t: float = 0.0) -> list[Alert]:
        """Judge one observation of ``variable`` against its prediction; store and
        return the alerts it raises (none, an anomaly, a drift, or both)."""
        if not all(math.isfinite(x) for x in (actual, predicted, sigma)) or sigma <= 0:
            self.skipped_ += 1  # an unscored residual (e.g. no difficulty): no verdict
            self.last_ = None
            return []
        with self._lock:
            window = self._window(variable)
            score = abs(actual - predicted) / sigma
            theta = float(self._rng.random())  # the smoothing's tie-breaking draw
            raised: list[dict[str, Any]] = []
            base = {"variable": variable, "episode": str(episode), "t": float(t),
                    "actual": float(actual), "predicted": float(predicted),
                    "sigma": float(sigma)}
            anomalous = False
            self.last_ = None
            if len(window):
                p, smooth = window.pvalues(score, theta)
                self.last_ = (p, smooth)
                if p <= self.alpha:
                    anomalous = True
                    raised.append({"kind": "anomaly", **base, "p_value": p,
                                   "martingale": 1.0, "level": self.alpha})
                detector = self.detectors.get(variable)
                if detector is None:
                    detector = self.detectors[variable] = DriftDetector(self.threshold,
                                                                        self.jump)
                if detector.update(smooth):
                    raised.append({"kind": "drift", **base, "p_value": smooth,
                                   "martingale": detector.alarm_, "level": self.threshold})
            if not anomalous:
                window.add(score)
            alerts = [self._store(payload) for payload in raised]
        for alert in alerts:
            for fn in self._subscribers:
                fn(alert)
        return alerts

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
