"""Detection bench: lmtwin's alerts against river's ADWIN and Page-Hinkley and a 3-sigma
residual rule, on streams from the true simulators with injected faults.

Each stream is fed reading by reading to a twin (persistence and the numeric learner),
which scores every transition; every detector reads the same scored residuals:

- lmtwin: the ``Monitor`` attached to the twin (conformal p-values, drift martingale);
- ADWIN, Page-Hinkley (river) and the 3-sigma rule on the normalised residual
  ``z = (reading - prediction) / sigma`` (sigma: the twin's difficulty estimate).

Faults, on the sensor of the first state variable (tumour volume ``v``, tank ``level``),
or in the dynamics: a 5-sigma spike (sigma: the standard deviation of the twin's one-step
residuals on the same seed's fault-free stream); a stuck sensor (the last good reading
repeated); a slow sensor bias (a ramp of a quarter sigma per reading); a step in the
dynamics (the cancer's growth rate doubled from a patient on; the tank's leak 50% larger
from a reading on). Settings are chosen on seeds that the report does not score: each
detector's most sensitive setting with at most 1 false alarm per 1,000 fault-free
readings on every tuning stream.

    python -m lmtwin.bench.alerts [--quick]      # writes results/alerts.md and PNGs
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmtwin.errors import DependencyNotInstalled
from lmtwin.intervene.alerts import Monitor, Shift
from lmtwin.predictors import LocalRidge, Persistence
from lmtwin.schema import Variable
from lmtwin.scoring import Score
from lmtwin.store import MemoryStore
from lmtwin.systems import CANCER_VARIABLES, TANK_VARIABLES, simulate_patients, simulate_tank
from lmtwin.systems.cancer import RHO
from lmtwin.twin import Twin

FAULTS = ("spike", "stuck", "bias", "step")
SYSTEMS = ("cancer", "tank")
ALPHA = 0.0005  # anomaly level; the monitor's window of 2000 resolves p down to 1/2001
WINDOW = 2000
TARGET_FA = 1.0  # false alarms per 1,000 fault-free readings


@dataclass
class Size:
    warm_patients: int = 40
    test_patients: int = 30
    warm_rows: int = 2200
    test_rows: int = 2000


QUICK = Size(warm_patients=12, test_patients=8, warm_rows=700, test_rows=500)


@dataclass
class Event:
    """A fault on the readings ``onset..end`` (row indices); it counts as detected by an
    alarm on a row in ``onset..until``."""

    fault: str
    onset: int
    end: int
    until: int


@dataclass
class Stream:
    system: str
    seed: int
    fault: str
    variables: list[Variable]
    rows: list[tuple[str, float, dict[str, float]]]
    warm: int  # rows before this index are the twin's warm-up, never scored
    events: list[Event] = field(default_factory=list)


@dataclass
class Run:
    """The residuals a twin scored on one stream: ``row`` is the row index of the reading
    judged; ``p`` and ``ps`` the monitor's anomaly p-values (plain and smoothed), ``pp``
    its spike test's p-value for the reading before, ``x`` its drift CUSUM's score."""

    stream: Stream
    row: np.ndarray
    variable: np.ndarray
    z: np.ndarray
    r: np.ndarray
    previous: np.ndarray
    p: np.ndarray
    ps: np.ndarray
    pp: np.ndarray
    x: np.ndarray
    alerted: set[tuple[int, str]]  # (row, variable) of the Monitor's stored alerts
    seconds: float
    live: Setting | None = None  # the lmtwin setting the Monitor ran with, if any
    sigma: np.ndarray | None = None  # the twin's difficulty of each score
    # (alpha, spike) -> the anomaly alarms and drift scores of a Monitor replayed exactly
    replays: dict[tuple[float, float], tuple[set[tuple[int, str]], np.ndarray]] = field(
        default_factory=dict)


# --- streams from the true simulators ---------------------------------------------------
def _cancer_rows(seed: int, n: int, rho: float, first: int) -> list[tuple[str, float,
                                                                          dict[str, float]]]:
    rng = np.random.default_rng(1000 + seed)
    out = []
    for i, patient in enumerate(simulate_patients(n, seed=seed, rho=rho)):
        for t, row in enumerate(patient.rows()):
            noisy = dict(row)
            for k in ("v", "c"):  # 1% relative sensor noise
                noisy[k] = max(0.0, row[k] * (1 + 0.01 * rng.standard_normal()))
            out.append((f"p{first + i}", float(t), noisy))
    return out


def _tank_rows(seed: int, warm: int, test: int, step_at: int | None
               ) -> list[tuple[str, float, dict[str, float]]]:
    rng = np.random.default_rng(2000 + seed)
    period = int(rng.integers(10, 26))
    n = warm + test
    if step_at is None:
        levels, valves = simulate_tank(n, period=period, level=float(rng.uniform(5, 30)))
    else:
        cut = warm + step_at - (warm + step_at) % (2 * period)  # keep the valve's phase
        first, v1 = simulate_tank(cut, period=period, level=float(rng.uniform(5, 30)))
        start = first[-1] + 2.0 * v1[-1] - 0.05 * first[-1]
        second, v2 = simulate_tank(n - cut, period=period, leak=0.075, level=start)
        levels, valves = np.concatenate([first, second]), np.concatenate([v1, v2])
    noise = rng.normal(0, 0.2, size=n)
    return [("tank", float(i), {"level": max(0.0, float(levels[i] + noise[i])),
                                "valve": float(valves[i])}) for i in range(n)]


def clean_stream(system: str, seed: int, size: Size) -> Stream:
    if system == "cancer":
        n = size.warm_patients + size.test_patients
        rows = _cancer_rows(seed, n, RHO, 0)
        warm = sum(1 for r in rows if int(r[0][1:]) < size.warm_patients)
        return Stream(system, seed, "none", list(CANCER_VARIABLES), rows, warm)
    rows = _tank_rows(seed, size.warm_rows, size.test_rows, None)
    return Stream(system, seed, "none", list(TANK_VARIABLES), rows, size.warm_rows)


def fault_stream(clean: Stream, fault: str, sigma: float, size: Size) -> Stream:
    """``clean`` with ``fault`` injected after the warm-up. ``sigma`` is the spread
    of the residual of the faulty variable: relative (cancer) or in cm (tank)."""
    system, seed = clean.system, clean.seed
    key = "v" if system == "cancer" else "level"
    rng = np.random.default_rng(3000 + seed)
    if fault == "step":
        if system == "cancer":
            half = size.test_patients // 2
            before = _cancer_rows(seed, size.warm_patients + half, RHO, 0)
            after = _cancer_rows(seed + 500, size.test_patients - half, 2 * RHO,
                                 size.warm_patients + half)
            rows = before + after
            onset = len(before) + 1  # the first transition of the changed patients
        else:
            rows = _tank_rows(seed, size.warm_rows, size.test_rows, size.test_rows // 2)
            period = _tank_period(seed)
            at = size.warm_rows + size.test_rows // 2
            onset = at - at % (2 * period) + 1
        return Stream(system, seed, fault, clean.variables, rows, clean.warm,
                      [Event(fault, onset, len(rows) - 1, len(rows) - 1)])
    rows = [(ep, t, dict(v)) for ep, t, v in clean.rows]
    events = []
    for onset, end in _windows(clean, fault, size, rng):
        if fault == "spike":
            sign = 1.0 if rng.uniform() < 0.5 else -1.0
            _bump(rows, onset, key, sign * 5 * sigma, system)
            events.append(Event(fault, onset, onset, onset + 1))
            continue
        good = rows[onset - 1][2][key]
        for k, i in enumerate(range(onset, end + 1), start=1):
            if fault == "stuck":
                rows[i][2][key] = good
            else:  # bias: a slow ramp
                _bump(rows, i, key, 0.25 * sigma * k, system)
        events.append(Event(fault, onset, end, end))
    return Stream(system, seed, fault, clean.variables, rows, clean.warm, events)


def _tank_period(seed: int) -> int:
    return int(np.random.default_rng(2000 + seed).integers(10, 26))


def _bump(rows: list[tuple[str, float, dict[str, float]]], i: int, key: str, amount: float,
          system: str) -> None:
    values = rows[i][2]
    values[key] = max(0.0, values[key] * (1 + amount) if system == "cancer"
                      else values[key] + amount)


def _windows(clean: Stream, fault: str, size: Size, rng: np.random.Generator
             ) -> Iterator[tuple[int, int]]:
    """Fault windows after the warm-up, apart enough for the detectors to settle."""
    if clean.system == "cancer":
        starts: dict[str, int] = {}
        for i, (ep, _, _) in enumerate(clean.rows):
            starts.setdefault(ep, i)
        test = [ep for ep in starts if int(ep[1:]) >= size.warm_patients]
        for j, ep in enumerate(test):
            if j % 2 == 0:
                continue  # every other patient: a fault-free one between faults
            first = starts[ep]
            if fault == "spike":
                at = first + int(rng.integers(10, 50))
                yield at, at
            elif fault == "stuck":
                yield first + 20, first + 45
            else:
                yield first + 15, first + 55
        return
    gap = {"spike": 150, "stuck": 250, "bias": 250}[fault]
    length = {"spike": 1, "stuck": 40, "bias": 60}[fault]
    for onset in range(clean.warm + gap // 2, len(clean.rows) - length - 5, gap):
        yield onset, onset + length - 1


# --- running a twin on a stream -------------------------------------------------------
def run_stream(stream: Stream, live: Setting | None = None) -> Run:
    """Feed ``stream`` to a fresh twin with a Monitor attached (``live``'s settings, or
    one that never raises a drift alarm, to record p-values); record every score."""
    params = (dict(live.params) if live is not None
              else {"alpha": ALPHA, "spike": ALPHA, "h": 1e300, "k": 0.5})
    twin = Twin(f"{stream.system}{stream.seed}", variables=stream.variables,
                store=MemoryStore(), predictors=[Persistence(), LocalRidge()],
                score_window=10**9, costly_every=0)
    monitor = Monitor(twin, alpha=params["alpha"], spike=params.get("spike", params["alpha"]),
                      window=WINDOW, h=params["h"], k=params["k"], seed=stream.seed,
                      refractory=int(params.get("refractory", 0)))
    index = {(ep, t): i for i, (ep, t, _) in enumerate(stream.rows)}
    rec: dict[str, list[Any]] = {k: [] for k in ("row", "variable", "z", "r", "previous",
                                                 "p", "ps", "pp", "x", "sigma")}

    def record(score: Score) -> None:  # runs after the monitor's listener
        if monitor.last_ is None:
            return
        verdict = monitor.last_
        rec["row"].append(index[(score.episode, score.t)])  # a score is dated its reading
        rec["variable"].append(score.target)
        rec["z"].append((score.actual - score.combined) / score.sigma)
        rec["r"].append(score.actual - score.combined)
        rec["previous"].append(score.previous)
        rec["p"].append(verdict.p)
        rec["ps"].append(verdict.smooth)
        rec["pp"].append(verdict.pair)
        rec["x"].append(verdict.shift)
        rec["sigma"].append(score.sigma)

    twin.add_listener(record)
    started = time.perf_counter()
    for ep, t, values in stream.rows:
        twin.observe(values, episode=ep, t=t)
    seconds = time.perf_counter() - started
    alerted = {(index[(a.episode, a.t)], a.variable) for a in monitor.alerts()}
    twin.close()
    f = {k: np.array(rec[k], dtype=float)
         for k in ("z", "r", "previous", "p", "ps", "pp", "x", "sigma")}
    return Run(stream, np.array(rec["row"], dtype=int), np.array(rec["variable"]),
               f["z"], f["r"], f["previous"], f["p"], f["ps"], f["pp"], f["x"], alerted,
               seconds, live, f["sigma"])


def residual_sigma(run: Run) -> float:
    """The standard deviation of the faulty variable's residuals in the second half of
    the warm-up: relative to the previous reading for the cancer (patients differ in
    size by orders of magnitude), in cm for the tank."""
    key = "v" if run.stream.system == "cancer" else "level"
    mask = (run.variable == key) & (run.row < run.stream.warm) & (run.row > run.stream.warm // 2)
    r = run.r[mask]
    if run.stream.system == "cancer":
        r = r / np.maximum(run.previous[mask], 1e-9)
    return float(np.std(r))


# --- detectors on the recorded residuals ------------------------------------------------
@dataclass(frozen=True)
class Setting:
    """One detector with its settings; ``params`` is hashable for the tables."""

    method: str
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        if not self.params:
            return self.method
        return f"{self.method} ({', '.join(f'{k}={v}' for k, v in self.params)})"


def grid() -> list[Setting]:
    """The settings tried on the tuning seeds (the 3-sigma rule has none to tune)."""
    # alpha 0: no single-reading test (the spike test and the drift CUSUM only); levels
    # below 1/(WINDOW + 1) are never reached (the Monitor refuses them)
    out = [Setting("lmtwin", (("alpha", a), ("spike", sp), ("h", h), ("k", k),
                              ("refractory", q)))
           for a in (0.0, ALPHA) for sp in (ALPHA, 2 * ALPHA) for h in (5, 6, 8, 10)
           for k in (0.5, 1.0) for q in (0, 50)]
    out += [Setting("ADWIN", (("delta", d), ("input", x)))
            for d in (1e-2, 1e-3, 1e-4, 1e-5, 1e-6) for x in ("z", "|z|")]
    out += [Setting("Page-Hinkley", (("threshold", h), ("input", x)))
            for h in (10, 20, 50, 100, 200) for x in ("z", "|z|")]
    out.append(Setting("3-sigma"))
    return out


def alarms(run: Run, setting: Setting) -> set[tuple[int, str]]:
    """(row, variable) of each alarm ``setting`` raises on the run's residuals."""
    if setting == run.live:
        return set(run.alerted)  # the alerts the Monitor itself stored, live
    params = dict(setting.params)
    if setting.method == "lmtwin":
        return _lmtwin(run, params)
    out: set[tuple[int, str]] = set()
    for var in np.unique(run.variable):
        mask = run.variable == var
        rows = run.row[mask]
        for i in _detect(setting.method, params, run, mask):
            out.add((int(rows[i]), str(var)))
    return out


def replay(run: Run, alpha: float, spike: float) -> tuple[set[tuple[int, str]], np.ndarray]:
    """A Monitor with levels ``alpha`` and ``spike`` (no drift test) run again on the
    scores the twin made: the same residuals, difficulties, readings before and draws,
    so the same verdicts as live (the monitor never changes what the twin scores). Its
    anomaly alarms (row, variable) and the drift CUSUM's score of each reading."""
    key = (alpha, spike)
    if key not in run.replays:
        assert run.sigma is not None
        monitor = Monitor(store=MemoryStore(), name="replay", alpha=alpha, spike=spike,
                          window=WINDOW, h=math.inf, seed=run.stream.seed)
        rows = run.stream.rows
        index = {(ep, t): i for i, (ep, t, _) in enumerate(rows)}
        x = np.full(len(run.row), math.nan)
        for i, row in enumerate(run.row.tolist()):
            ep, t, _ = rows[row]
            monitor.check(str(run.variable[i]), float(run.r[i]), 0.0, float(run.sigma[i]),
                          ep, t, float(run.previous[i]))
            if monitor.last_ is not None:
                x[i] = monitor.last_.shift
        found = {(index[(a.episode, a.t)], a.variable) for a in monitor.alerts()}
        run.replays[key] = (found, x)
    return run.replays[key]


def _lmtwin(run: Run, params: dict[str, Any]) -> set[tuple[int, str]]:
    """The alarms of the Monitor with ``params``: its anomalies replayed exactly
    (``replay``), its drift CUSUM and refractory span run on the replay's scores as the
    Monitor runs them."""
    found, x = replay(run, params["alpha"], params.get("spike", params["alpha"]))
    out = set(found)
    for var in np.unique(run.variable):
        mask = run.variable == var
        cusum, calm = Shift(params["h"], params["k"]), 0
        for row, score in zip(run.row[mask].tolist(), x[mask].tolist(), strict=True):
            if not math.isfinite(score):
                continue  # an episode's first readings: no drift test
            calm -= 1
            if cusum.update(score) and calm < 0:
                calm = params.get("refractory", 0)
                out.add((row, str(var)))
    return out


def _detect(method: str, params: dict[str, Any], run: Run, mask: np.ndarray) -> list[int]:
    z = run.z[mask]
    if method == "3-sigma":
        return _three_sigma(z)
    try:
        from river import drift
    except ImportError as exc:
        raise DependencyNotInstalled("river", "bench") from exc

    x = np.abs(z) if params["input"] == "|z|" else z
    detector: Any = (drift.ADWIN(delta=params["delta"], clock=1) if method == "ADWIN"
                     else drift.PageHinkley(threshold=params["threshold"], mode="both"))
    hits = []
    for i, value in enumerate(x):
        detector.update(float(value))
        if detector.drift_detected:
            hits.append(i)
    return hits


def _three_sigma(z: np.ndarray, window: int = WINDOW, start: int = 30) -> list[int]:
    """|z - mean| > 3 sd, against the mean and sd of the previous ``window`` residuals."""
    hits = []
    for i in range(start, len(z)):
        past = z[max(0, i - window):i]
        if abs(z[i] - past.mean()) > 3 * past.std():
            hits.append(i)
    return hits


@dataclass
class Outcome:
    """One detector on one stream: delays of the events it caught (None: missed), or its
    false alarms on a fault-free stream per 1,000 scored readings."""

    delays: list[int | None] = field(default_factory=list)
    false_per_1000: float | None = None


def score(run: Run, setting: Setting) -> Outcome:
    found = alarms(run, setting)
    stream = run.stream
    if stream.fault == "none":
        scored = int(np.sum(run.row >= stream.warm))
        false = sum(1 for row, _ in found if row >= stream.warm)
        return Outcome(false_per_1000=1000.0 * false / max(scored, 1))
    rows = sorted({row for row, _ in found})
    delays: list[int | None] = []
    for event in stream.events:
        hit = next((r for r in rows if event.onset <= r <= event.until), None)
        delays.append(None if hit is None else hit - event.onset)
    return Outcome(delays)


# --- the bench ------------------------------------------------------------------------
@dataclass
class Results:
    size: Size
    tune_seeds: list[int]
    seeds: list[int]
    chosen: dict[str, Setting]
    tuning: dict[Setting, dict[str, float]]
    outcomes: dict[tuple[str, str, str, int], Outcome]  # (method, system, fault, seed)
    runs_seconds: float
    example: Run | None = None
    load: tuple[float, float] = (math.nan, math.nan)  # 1-min load average at start, end
    # (system, seed) -> (the spike's size, the largest fault-free residual scored, the
    # largest among the residuals calibrating the tests when scoring starts)
    spikes: dict[tuple[str, int], tuple[float, float, float]] = field(default_factory=dict)


def streams(seed: int, size: Size, system: str) -> Iterator[Run]:
    """The fault-free run first (its residuals set the fault sizes), then each fault."""
    clean = run_stream(clean_stream(system, seed, size))
    yield clean
    sigma = residual_sigma(clean)
    for fault in FAULTS:
        yield run_stream(fault_stream(clean.stream, fault, sigma, size))


def spike_room(clean: Run) -> tuple[float, float, float]:
    """On a fault-free run: the injected spike's size (5 sigma), the largest residual of
    the faulty variable in the scored part, and the largest among the last ``WINDOW``
    before it (what calibrates the tests when scoring starts); relative to the reading
    before for the cancer, in cm for the tank, from an episode's fourth reading on."""
    key = "v" if clean.stream.system == "cancer" else "level"
    rows = clean.stream.rows
    settled = np.array([rows[i][1] > 3 if clean.stream.system == "cancer" else True
                        for i in clean.row.tolist()], dtype=bool)
    mask = (clean.variable == key) & settled
    r = clean.r[mask]
    if clean.stream.system == "cancer":
        r = r / np.maximum(np.abs(clean.previous[mask]), 1e-9)
    scored = clean.row[mask] >= clean.stream.warm
    return (5 * residual_sigma(clean), float(np.max(np.abs(r[scored]))),
            float(np.max(np.abs(r[~scored][-WINDOW:]))))


def _summary(outcomes: Sequence[Outcome]) -> dict[str, float]:
    delays = [d for o in outcomes for d in o.delays]
    caught = [d for d in delays if d is not None]
    false = [o.false_per_1000 for o in outcomes if o.false_per_1000 is not None]
    return {"detected": len(caught) / max(len(delays), 1),
            "delay": float(np.median(caught)) if caught else math.inf,
            "false": float(np.mean(false)) if false else 0.0,
            "worst": float(np.max(false)) if false else 0.0}


def choose(tuning: dict[Setting, dict[str, float]]) -> dict[str, Setting]:
    """Per method, the most sensitive setting within the false-alarm target on every
    tuning stream (the worst seed and system, not the mean), or, if none is, the most
    sensitive of those with the fewest false alarms at worst."""
    chosen = {}
    for method in dict.fromkeys(s.method for s in tuning):
        mine = {s: v for s, v in tuning.items() if s.method == method}
        ok = {s: v for s, v in mine.items() if v["worst"] <= TARGET_FA}
        least = min(v["worst"] for v in mine.values())
        pool = ok or {s: v for s, v in mine.items() if v["worst"] == least}
        chosen[method] = min(pool, key=lambda s: (-mine[s]["detected"], mine[s]["delay"],
                                                  mine[s]["false"]))
    return chosen


def run(seeds: Sequence[int] = (10, 11, 12), tune_seeds: Sequence[int] = (0, 1),
        quick: bool = False, progress: Callable[[str], None] | None = None,
        size: Size | None = None) -> Results:
    """Tune on ``tune_seeds``, then score the chosen settings on ``seeds``."""
    size = size or (QUICK if quick else Size())
    say = progress or (lambda _: None)
    started = time.perf_counter()
    load = os.getloadavg()[0]
    settings = grid()
    per: dict[Setting, list[Outcome]] = {s: [] for s in settings}
    for seed in tune_seeds:
        for system in SYSTEMS:
            for r in streams(seed, size, system):
                say(f"tuning seed {seed}: {system} {r.stream.fault} ({r.seconds:.0f} s)")
                for s in settings:
                    per[s].append(score(r, s))
    tuning = {s: _summary(v) for s, v in per.items()}
    chosen = choose(tuning)
    mine = chosen["lmtwin"]
    outcomes: dict[tuple[str, str, str, int], Outcome] = {}
    spikes: dict[tuple[str, int], tuple[float, float, float]] = {}
    example = None
    for seed in seeds:
        for system in SYSTEMS:
            for r in _scored_streams(seed, size, system, mine):
                say(f"seed {seed}: {system} {r.stream.fault} ({r.seconds:.0f} s)")
                for method, s in chosen.items():
                    outcomes[(method, system, r.stream.fault, seed)] = score(r, s)
                if r.stream.fault == "none":
                    spikes[(system, seed)] = spike_room(r)
                if example is None and system == "tank" and r.stream.fault == "step":
                    example = r
    return Results(size, list(tune_seeds), list(seeds), chosen, tuning, outcomes,
                   time.perf_counter() - started, example, (load, os.getloadavg()[0]),
                   spikes)


def _scored_streams(seed: int, size: Size, system: str, mine: Setting) -> Iterator[Run]:
    """As ``streams``, with the chosen Monitor settings live on the twin: the lmtwin
    alarms scored are the alerts the Monitor stored."""
    clean = run_stream(clean_stream(system, seed, size), mine)
    yield clean
    sigma = residual_sigma(clean)
    for fault in FAULTS:
        yield run_stream(fault_stream(clean.stream, fault, sigma, size), mine)


# --- report ---------------------------------------------------------------------------
def _cell(results: Results, method: str, system: str, fault: str) -> str:
    per_seed = [results.outcomes[(method, system, fault, s)] for s in results.seeds]
    delays = [d for o in per_seed for d in o.delays]
    caught = [d for d in delays if d is not None]
    rates = [sum(d is not None for d in o.delays) / max(len(o.delays), 1) for o in per_seed]
    text = f"{len(caught)}/{len(delays)}"
    if len(per_seed) > 1:
        text += f" ({100 * min(rates):.0f}-{100 * max(rates):.0f}%)"
    if caught:
        seed_medians = [float(np.median([d for d in o.delays if d is not None]))
                        for o in per_seed if any(d is not None for d in o.delays)]
        text += f", {np.median(caught):g}"
        if len(seed_medians) > 1:
            text += f" [{min(seed_medians):g}-{max(seed_medians):g}]"
    return text


def _false(results: Results, method: str, systems: Sequence[str]) -> tuple[float, float]:
    values = [results.outcomes[(method, sy, "none", s)].false_per_1000 or 0.0
              for sy in systems for s in results.seeds]
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def report(results: Results, figures: Sequence[Path] = (), command: str = "") -> str:
    size = results.size
    lines = [
        "## Anomalies and drift",
        "",
        f"Command: `{command or 'python -m lmtwin.bench.alerts'}`. Settings chosen on seeds "
        f"{', '.join(map(str, results.tune_seeds))} (per detector, the most sensitive "
        "setting with at most 1 false alarm per 1,000 fault-free readings on every tuning "
        "stream); scored on seeds "
        f"{', '.join(map(str, results.seeds))} ({results.runs_seconds / 60:.1f} min in all; "
        f"load average {results.load[0]:.1f} at the start, {results.load[1]:.1f} at the end, "
        "on 2 shared cores).",
        "",
        "Streams: cancer, patients one after another (a twin warmed up on "
        f"{size.warm_patients} patients, then {size.test_patients} scored), v and c read "
        "with 1% relative noise; tank, one episode (warm-up "
        f"{size.warm_rows} readings, then {size.test_rows} scored), level read with noise "
        "sd 0.2 cm. The twin (persistence and the numeric learner) scores every "
        "transition; every detector reads the same residuals. Faults on v (cancer) or "
        "level (tank), sigma = the sd of the twin's one-step residual on the seed's "
        "fault-free stream (relative for the cancer): spike 5 sigma (one reading); stuck "
        "(the last good reading repeated, 26 readings cancer, 40 tank); slow bias (+0.25 "
        "sigma a reading, 41 cancer, 60 tank); dynamics step (growth rate rho doubled "
        "from a patient on; tank leak 0.05 -> 0.075 from a reading on, to the end).",
        "",
        "Each cell: events caught / events (range of the per-seed rates), median delay in "
        "readings from the fault's first reading [range of per-seed medians]. A spike "
        "counts if flagged on its reading or the next; other faults while present. False "
        "alarms: alarms on the fault-free streams' scored part per 1,000 scored readings "
        "(one reading = one variable at one time), mean ± sd over seeds.",
        "",
        "Detectors: lmtwin = the `Monitor` on the twin: residuals normalised by a scale "
        "it learns per variable (the twin's difficulty, a constant or the reading's "
        "size, whichever leaves the lightest tail); an anomaly when the conformal "
        f"p-value of |e| against the last {WINDOW} is at most alpha (0: this test off), "
        "or when the p-value of the spike score of two consecutive readings (|e1 - e2| / "
        "sqrt 2 when of opposite signs and |e1| >= |e2| / 3) is at most spike; a flagged "
        "reading's residuals, "
        "the one into a spike included, join the windows clipped to their largest; a "
        "drift alarm when a two-sided CUSUM (allowance k) of the "
        "normal scores of the signed residuals' smoothed conformal p-values reaches h, "
        "none within `refractory` readings of the variable's last one; on the tuning "
        "seeds every lmtwin setting is the Monitor run again on the twin's recorded "
        "scores (the same verdicts as live: tested); "
        "a patient's first 3 readings judged among other patients' first readings. "
        "ADWIN and Page-Hinkley (river) and the 3-sigma rule "
        "(|z - mean| > 3 sd of the previous 2,000) read z = residual / the twin's "
        "difficulty estimate, or |z|. Chosen settings: "
        + "; ".join(s.label for s in results.chosen.values()) + ". On the tuning seeds "
        "they caught " + "; ".join(
            f"{m} {100 * results.tuning[s]['detected']:.0f}% of events with "
            f"{results.tuning[s]['false']:.2f} false alarms / 1,000 (worst stream "
            f"{results.tuning[s]['worst']:.2f})" for m, s in results.chosen.items()) + ".",
        "",
    ]
    for system in SYSTEMS:
        lines += [f"### {system}", "",
                  "| detector | " + " | ".join(FAULTS) + " | false alarms / 1,000 |",
                  "|---" * (len(FAULTS) + 2) + "|"]
        for method in results.chosen:
            mean, sd = _false(results, method, [system])
            cells = [_cell(results, method, system, f) for f in FAULTS]
            lines.append(f"| {method} | " + " | ".join(cells) + f" | {mean:.2f} ± {sd:.2f} |")
        lines.append("")
    lines += ["### Against the targets (lmtwin, both systems)", ""]
    lines += _targets(results)
    if figures:
        lines += [""] + [f"![{p.stem}]({p.name})" for p in figures]
    return "\n".join(lines) + "\n"


def _targets(results: Results) -> list[str]:
    mean, sd = _false(results, "lmtwin", SYSTEMS)
    spikes = [d for sy in SYSTEMS for s in results.seeds
              for d in results.outcomes[("lmtwin", sy, "spike", s)].delays]
    steps = [d for sy in SYSTEMS for s in results.seeds
             for d in results.outcomes[("lmtwin", sy, "step", s)].delays]
    caught_steps = [d for d in steps if d is not None]
    step_median = float(np.median(caught_steps)) if caught_steps else math.inf
    flagged = sum(d is not None for d in spikes)
    room = "; ".join(
        f"{sy} seed {seed}: {size:.3g} against {top:.3g} and {old:.3g}"
        for (sy, seed), (size, top, old) in sorted(results.spikes.items()))
    return [
        f"- False alarms: {mean:.2f} ± {sd:.2f} per 1,000 fault-free readings (target at "
        f"most 1): {'met' if mean <= TARGET_FA else 'NOT met'}.",
        f"- 5-sigma spikes flagged: {flagged} of {len(spikes)} (target all): "
        f"{'met' if flagged == len(spikes) else 'NOT met'}. The spike's size against the "
        "largest fault-free residual of the same variable in the scored part, and among "
        f"the last {WINDOW} residuals that calibrate the tests when scoring starts (the "
        "twin's early learning included; cancer: relative to the reading, from a "
        f"patient's fourth reading on; tank: cm): {room}.",
        f"- Dynamics step: caught {len(caught_steps)} of {len(steps)}, median delay "
        f"{step_median:g} readings (target at most 10): "
        f"{'met' if step_median <= 10 and len(caught_steps) == len(steps) else 'NOT met'}.",
    ]


def figures(results: Results, out: Path) -> list[Path]:
    """A PNG of the delays per detector and fault, and one of a tank dynamics step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    methods = list(results.chosen)
    fig, axes = plt.subplots(1, len(FAULTS), figsize=(13, 4.2), layout="constrained")
    for ax, fault in zip(axes, FAULTS, strict=True):
        labels = []
        for j, method in enumerate(methods):
            delays = [d for sy in SYSTEMS for s in results.seeds
                      for d in results.outcomes[(method, sy, fault, s)].delays]
            caught = [d for d in delays if d is not None]
            jitter = np.random.default_rng(j).uniform(-0.15, 0.15, len(caught))
            ax.plot(j + jitter, caught, "o", alpha=0.5, ms=4)
            labels.append(f"{method}\n{len(delays) - len(caught)} missed")
        ax.set_xticks(range(len(methods)), labels, rotation=30, fontsize=7)
        ax.set_title(fault)
        ax.set_ylabel("delay (readings)" if fault == FAULTS[0] else "")
    fig.suptitle("Detection delay per event, scored seeds, both systems")
    path = out / "alerts-delays.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    if results.example is not None:
        paths.append(_example_plot(results, results.example, out, plt))
    return paths


def _example_plot(results: Results, run: Run, out: Path, plt: Any) -> Path:
    stream = run.stream
    onset = stream.events[0].onset
    lo, hi = onset - 120, min(len(stream.rows), onset + 80)
    mask = (run.variable == "level") & (run.row >= lo) & (run.row < hi)
    params = dict(results.chosen["lmtwin"].params)
    detector = Shift(params["h"], params["k"])
    cusum = []
    level = run.variable == "level"
    for x, row in zip(run.x[level], run.row[level], strict=True):
        alarm = math.isfinite(x) and detector.update(float(x))
        if lo <= row < hi:
            cusum.append(detector.alarm_ if alarm else detector.value)
    rows = run.row[mask]
    fig, (a1, a2, a3) = plt.subplots(3, 1, figsize=(10, 6.5), sharex=True)
    a1.plot(range(lo, hi), [stream.rows[i][2]["level"] for i in range(lo, hi)], lw=1)
    a1.set_ylabel("level read (cm)")
    a2.plot(rows, run.z[mask], lw=1)
    a2.set_ylabel("z = residual / sigma")
    a3.plot(rows, cusum, lw=1)
    a3.axhline(params["h"], color="grey", ls="--", lw=1)
    a3.set_ylabel("lmtwin drift CUSUM")
    a3.set_xlabel("reading")
    for ax in (a1, a2, a3):
        ax.axvline(onset, color="crimson", lw=1)
    for j, (method, setting) in enumerate(results.chosen.items()):
        hits = sorted(r for r, _ in alarms(run, setting) if lo <= r < hi)
        a2.plot(hits, [a2.get_ylim()[0] + 0.5 * (j + 1)] * len(hits), "|", ms=10,
                label=method)
    a2.legend(fontsize=7, loc="upper left", ncol=len(results.chosen))
    fig.suptitle(f"Tank, seed {stream.seed}: the leak grows 50% at reading {onset} (red)")
    fig.tight_layout()
    path = out / "alerts-example.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def section(out: Path = Path("results"), quick: bool = False,
            seeds: Sequence[int] | None = None, tune_seeds: Sequence[int] | None = None,
            progress: Callable[[str], None] | None = None,
            command: str = "") -> tuple[str, list[Path]]:
    """Run the bench; the markdown section and the PNGs written to ``out`` (for
    ``lmtwin bench intervene --steps alerts``). Seeds: scored 10, 11, 12 and tuned on
    0, 1; quick: small streams, scored on 10 and tuned on 0."""
    seeds = seeds or ((10,) if quick else (10, 11, 12))
    tune_seeds = tune_seeds or ((0,) if quick else (0, 1))
    results = run(seeds, tune_seeds, quick, progress)
    paths = figures(results, out)
    return report(results, paths, command), paths


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="lmtwin's detection bench; writes "
                                     "OUT/intervene/alerts.md (a part of OUT/intervene.md, "
                                     "as lmtwin bench intervene --steps alerts does) and PNGs")
    parser.add_argument("--quick", action="store_true", help="small streams, one seed each")
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    flag = " --quick" if args.quick else ""
    started = time.perf_counter()
    text, _ = section(args.out, args.quick, progress=print,
                      command=f"python -m lmtwin.bench.alerts{flag}")
    took = (time.perf_counter() - started) / 60
    part = args.out / "intervene" / "alerts.md"
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_text(text + f"\nReproduce: `lmtwin bench intervene --steps alerts{flag}` or "
                    f"`python -m lmtwin.bench.alerts{flag}` ({took:.1f} min on this "
                    "machine).\n")
    print(text)


if __name__ == "__main__":
    main()
