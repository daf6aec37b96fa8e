"""Anomaly and drift alerts: conformal p-values, the drift martingale, the append-only
alert log and its acknowledgements."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from crepes.martingales import SimpleJumper, StepBettingFunction

from lmtwin import LocalRidge, Persistence, Twin, Variable
from lmtwin.errors import LmtwinError, StoreError
from lmtwin.intervene.alerts import (
    SCALES,
    Alert,
    AlertAcknowledged,
    AlertNotFound,
    DriftDetector,
    InvalidSetting,
    Monitor,
    Shift,
    Window,
    acknowledge,
    alerts,
    normal_score,
    one_sided,
)
from lmtwin.store import MemoryStore, SQLiteStore
from lmtwin.uncertainty import Calibrator


def test_online_jumper_is_crepes_simple_jumper():
    ps = np.random.default_rng(1).uniform(size=400)
    detector = DriftDetector(threshold=1e300, jump=0.05, betting=StepBettingFunction())
    logs = []
    for p in ps:
        detector.update(float(p))
        logs.append(detector.log_value_)
    expected = SimpleJumper(J=0.05, bf=StepBettingFunction()).apply(ps)
    np.testing.assert_allclose(logs, np.log(expected), atol=1e-9)
    bets = one_sided()  # the default: bets only on too small p-values
    detector = DriftDetector(threshold=1e300, jump=0.01)
    for p in ps:
        detector.update(float(p))
    assert detector.log_value_ == pytest.approx(
        math.log(SimpleJumper(J=0.01, bf=bets).apply(ps)[-1]))


def test_drift_detector_false_alarms_bounded_and_fast_on_small_p_values():
    rng = np.random.default_rng(2)
    detector = DriftDetector(threshold=100.0)
    alarms = sum(detector.update(float(p)) for p in rng.uniform(size=5000))
    # mean time to a false alarm is at least the threshold: far fewer than 5000 / 100
    assert alarms <= 50
    delays = []
    for _ in range(5):
        detector.reset()
        for p in rng.uniform(size=300):
            detector.update(float(p))
        steps = 1
        while not detector.update(float(rng.uniform(0, 0.01))):
            steps += 1
        delays.append(steps)
        assert detector.alarm_ >= 100.0 and detector.cusum_ == 1.0  # reset after alarm
    assert max(delays) <= 10, delays
    # residuals smaller than usual are no fault: a run of large p-values raises nothing
    assert not any(detector.update(float(p)) for p in rng.uniform(0.9, 1.0, size=300))


def test_pvalue_counts_larger_residuals():
    cal = Calibrator(window=100)
    assert cal.pvalue("x", 1.0, 0.0, 1.0) is None  # no residuals yet
    for r in range(1, 100):
        cal.add("x", float(r), 0.0, 1.0)  # normalised residuals 1..99
    # |50.5| is beaten by 50..99 -> 49 of them, plus itself: 50 / 100
    assert cal.pvalue("x", 50.5, 0.0, 1.0) == pytest.approx(50 / 100)
    assert cal.pvalue("x", 1000.0, 0.0, 1.0) == pytest.approx(1 / 100)
    # normalised: a residual of 101 with difficulty 2 scores 50.5 as well
    assert cal.pvalue("x", 101.0, 0.0, 2.0) == pytest.approx(0.5)
    smooth = [cal.pvalue("x", 1000.0, 0.0, 1.0, smoothing=True, seed=s) for s in range(50)]
    assert all(0 < p <= 0.01 for p in smooth) and len(set(smooth)) > 40


def _theta(seed: int) -> float:
    """The tie-breaking draw crepes makes for one smoothed p-value with ``seed``."""
    return float(np.random.RandomState(seed).rand())


def test_monitor_window_gives_crepes_pvalues():
    """The monitor's incremental window and crepes (Calibrator.pvalue) agree, plain and
    smoothed, also once the window is full and old residuals leave it."""
    rng = np.random.default_rng(7)
    cal = Calibrator(window=50, min_residuals=1)
    window = Window(50)
    for i in range(200):
        actual, sigma = float(np.round(rng.standard_t(2), 1)), float(rng.uniform(0.5, 2))
        if i:
            score = abs(actual - 0.0) / sigma
            plain, smooth = window.pvalues(score, _theta(i))
            assert plain == pytest.approx(cal.pvalue("x", actual, 0.0, sigma), abs=1e-12)
            assert smooth == pytest.approx(
                cal.pvalue("x", actual, 0.0, sigma, smoothing=True, seed=i), abs=1e-12)
        cal.add("x", actual, 0.0, sigma)
        window.add(abs(actual) / sigma)
    assert len(window) == 50


def test_pvalues_are_uniform_on_exchangeable_residuals():
    rng = np.random.default_rng(3)
    cal = Calibrator(window=500)
    ps = []
    for i in range(3000):
        r = float(rng.standard_t(3))
        if i >= 500:
            ps.append(cal.pvalue("x", r, 0.0, 1.0, smoothing=True, seed=i))
        cal.add("x", r, 0.0, 1.0)
    ps_arr = np.array(ps)
    assert abs(ps_arr.mean() - 0.5) < 0.03
    assert abs(np.mean(ps_arr <= 0.1) - 0.1) < 0.02


def _warm(monitor: Monitor, n: int, variable: str = "x", seed: int = 4) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        monitor.check(variable, float(rng.normal()), 0.0, 1.0, "e", float(i))


def test_monitor_flags_a_spike_and_not_normal_readings():
    monitor = Monitor(store=MemoryStore(), name="pump", alpha=0.01, window=300)
    _warm(monitor, 300)
    # ordinary readings are flagged at rate alpha at most (3 expected in 300)
    ordinary = len(monitor.alerts())
    assert ordinary <= 8
    n_before = monitor.n("x")
    raised = monitor.check("x", 8.0, 0.0, 1.0, "e", 300.0)
    assert [a.kind for a in raised] == ["anomaly"]
    alert = raised[0]
    assert alert.variable == "x" and alert.episode == "e" and alert.t == 300.0
    assert alert.p_value <= 0.01 and alert.level == 0.01 and alert.acknowledged is None
    # an anomalous residual joins the window at its largest ordinary residual
    assert monitor.n("x") == n_before + 1
    assert monitor.residuals["x"].abs.top() < 8.0
    assert monitor.alerts()[ordinary:] == raised


def test_monitor_raises_drift_on_a_sustained_shift_and_resets():
    monitor = Monitor(store=MemoryStore(), name="pump", alpha=0.0, h=8.0, k=0.5)
    _warm(monitor, 500)
    rng = np.random.default_rng(5)
    kinds: list[str] = []
    steps = 0
    while "drift" not in kinds:
        steps += 1
        # a bias of one residual sd: the CUSUM climbs about 0.5 a reading
        kinds += [a.kind for a in monitor.check("x", 1.0 + rng.normal(), 0.0, 1.0, "e",
                                                500.0 + steps)]
        assert steps < 40
    drift = next(a for a in monitor.alerts() if a.kind == "drift")
    assert drift.martingale >= 8.0 and drift.level == 8.0
    assert monitor.shifts["x"].value == 0.0  # started afresh
    assert "y" not in monitor.shifts  # each variable has its own CUSUM
    # the optional test martingale raises its own drift alarms at its threshold
    both = Monitor(store=MemoryStore(), name="pump", alpha=0.0, h=1e9, threshold=100.0)
    _warm(both, 500)
    found = [a for i in range(60) for a in both.check("x", 4.0, 0.0, 1.0, "e", 600.0 + i)]
    assert found and {a.level for a in found} == {100.0}


def test_shift_cusum_is_calibrated_on_normal_scores_and_fast_on_a_bias():
    rng = np.random.default_rng(8)
    scores = [normal_score(float(p)) for p in rng.uniform(size=20000)]
    assert abs(np.mean(scores)) < 0.03 and abs(np.std(scores) - 1) < 0.03
    cusum = Shift(h=8.0, k=0.5)
    assert sum(cusum.update(x) for x in scores) <= 3  # Gaussian run length ~ 10^4
    cusum.reset()
    delays = []
    for sign in (1.0, -1.0):  # both directions
        steps = 1
        while not cusum.update(sign * 2.0 + float(rng.normal())):
            steps += 1
        delays.append(steps)
    assert max(delays) <= 10 and cusum.alarm_ >= 8.0
    with pytest.raises(ValueError):
        Shift(h=0.0)


def test_scale_is_learnt_from_the_residuals():
    """Relative noise (1% of the reading) while the difficulty follows something else:
    the monitor normalises by the reading's size; additive noise: by a constant."""
    rng = np.random.default_rng(9)
    relative = Monitor(store=MemoryStore(), name="a", alpha=0.002, window=1000)
    additive = Monitor(store=MemoryStore(), name="b", alpha=0.002, window=1000)
    for i in range(1000):
        size = float(np.exp(rng.uniform(0, 6)))  # readings from 1 to 400
        sigma = float(rng.uniform(0.2, 2.0))  # a difficulty unrelated to the noise
        relative.check("v", size * (1 + 0.01 * rng.normal()), size, sigma * size * 0.05,
                       "e", float(i), previous=size)
        additive.check("v", size + 0.2 * rng.normal(), size, sigma, "e", float(i),
                       previous=size)
    assert relative.scale("v") == "relative" and additive.scale("v") == "absolute"
    assert relative.n("v") == 997  # the episode's first 3 readings are judged apart
    # a 5% jump on a small reading whose difficulty is the largest: flagged
    raised = relative.check("v", 1.05, 1.0, 2.0 * 0.05, "e", 1000.0, previous=1.0)
    assert [a.kind for a in raised] == ["anomaly"]


def test_a_spike_is_flagged_from_the_residuals_into_and_out_of_it():
    """Each residual alone is not extreme enough; the pair (one way into the reading,
    the other way out of it) is, and the alert names the spiked reading."""
    rng = np.random.default_rng(10)
    monitor = Monitor(store=MemoryStore(), name="pump", alpha=0.002, window=1000)
    for i in range(1000):
        monitor.check("x", float(rng.normal()), 0.0, 1.0, "e", float(i))
    assert monitor.scale("x") in SCALES and len(monitor.alerts()) <= 8  # 2 x 0.002 x 1000
    monitor.check("x", 0.0, 0.0, 1.0, "e", 999.5)  # an ordinary reading before the spike
    into = monitor.check("x", 2.9, 0.0, 1.0, "e", 1000.0)
    assert into == [] and monitor.last_ is not None and monitor.last_.p > 0.002
    out = monitor.check("x", -2.9, 0.0, 1.0, "e", 1001.0)
    assert [(a.kind, a.t, a.actual) for a in out] == [("anomaly", 1000.0, 2.9)]
    assert monitor.last_ is not None and monitor.last_.pair <= 0.002
    # a pair never spans two episodes
    monitor.check("x", 3.0, 0.0, 1.0, "e", 1002.0)
    assert monitor.check("x", -3.0, 0.0, 1.0, "other", 0.0) == []


def test_an_episodes_first_readings_are_judged_apart():
    """A new episode's first readings (a cold start: large residuals) are compared with
    other episodes' first readings, not with the settled ones, and feed no drift."""
    monitor = Monitor(store=MemoryStore(), name="ward", alpha=0.01, window=2000, settle=2)
    rng = np.random.default_rng(11)
    for patient in range(120):
        for t in range(1, 12):
            big = t <= 2  # the first two residuals of a patient are 20x the others
            monitor.check("c", float(rng.normal(0, 20.0 if big else 1.0)), 0.0, 1.0,
                          f"p{patient}", float(t))
            assert monitor.last_ is not None and monitor.last_.start == big
    assert len(monitor.starts["c"]) >= 230
    assert sum(a.kind == "drift" for a in monitor.alerts()) == 0
    assert len(monitor.alerts()) <= 25  # about alpha of the 1320 readings
    with pytest.raises(ValueError):
        Monitor(store=MemoryStore(), name="ward", settle=-1)


def test_subscribers_receive_stored_alerts():
    monitor = Monitor(store=MemoryStore(), name="pump", alpha=0.01, window=200)
    seen = []
    monitor.subscribe(seen.append)
    _warm(monitor, 200)
    assert seen == monitor.alerts()
    seen.clear()
    raised = monitor.check("x", -9.0, 0.0, 1.0, "e", 200.0)
    assert seen == raised and seen[0].id > 0


def test_alerts_persist_and_acknowledgements_are_appended(tmp_path):
    path = tmp_path / "alerts.db"
    store = SQLiteStore(path)
    monitor = Monitor(store=store, name="pump", alpha=0.01, window=200)
    _warm(monitor, 200)
    # a residual of 0 before the outliers: no spike test can blame the last warm reading
    monitor.check("x", 0.0, 0.0, 1.0, "e", 199.5)
    ordinary = [a.id for a in monitor.alerts()]
    first = monitor.check("x", 9.0, 0.0, 1.0, "e", 200.0)[0]
    second = monitor.check("x", -9.0, 0.0, 1.0, "e", 201.0)[0]  # spike on 200: flagged
    acked = monitor.acknowledge(first.id, by="ops", note="valve checked")
    assert acked.id == first.id and acked.acknowledged is not None
    assert acked.acknowledged["by"] == "ops" and acked.acknowledged["note"] == "valve checked"
    store.close()

    reopened = SQLiteStore(path)
    listed = alerts(reopened, "pump", after=max(ordinary, default=0))
    assert [a.id for a in listed] == [first.id, second.id]
    assert listed[0].acknowledged == acked.acknowledged and listed[1].acknowledged is None
    assert listed[1].to_dict() == {**second.to_dict(), "acknowledged": None}
    assert alerts(reopened, "pump", after=first.id) == [listed[1]]
    assert len(alerts(reopened, "pump", limit=1)) == 1
    assert len(alerts(reopened, "pump")) == len(ordinary) + 2
    assert alerts(reopened, "other") == []

    before = reopened.records("pump")
    with pytest.raises(AlertAcknowledged):
        acknowledge(reopened, "pump", first.id)
    for unknown in (0, -3, second.id + 100):
        with pytest.raises(AlertNotFound):
            acknowledge(reopened, "pump", unknown)
    with pytest.raises(AlertNotFound):  # another twin's alert id
        acknowledge(reopened, "other", second.id)
    assert reopened.records("pump") == before  # refusals change nothing
    reopened.close()


def test_unscorable_residuals_are_skipped_and_settings_checked():
    monitor = Monitor(store=MemoryStore(), name="pump")
    assert monitor.check("x", 1.0, 0.0, float("nan")) == []
    assert monitor.check("x", float("inf"), 0.0, 1.0) == []
    assert monitor.skipped_ == 2 and monitor.n("x") == 0
    store = MemoryStore()
    bad: list[dict[str, Any]] = [
        {"alpha": -0.1}, {"alpha": 1.0}, {"alpha": float("nan")}, {"spike": 1.5},
        {"alpha": 0.0001, "window": 2000},  # 1/2001 > 0.0001: never reached
        {"alpha": 0.01, "spike": 0.001, "window": 200}, {"window": 0}, {"window": 2.5},
        {"h": 0.0}, {"k": -1.0}, {"settle": -1}, {"threshold": 1.0}, {"jump": 0.0},
    ]
    for settings in bad:
        with pytest.raises(InvalidSetting) as raised:
            Monitor(store=store, name="pump", **settings)
        assert isinstance(raised.value, LmtwinError) and isinstance(raised.value, ValueError)
    with pytest.raises(InvalidSetting, match="never reached"):
        Monitor(store=store, name="pump", alpha=0.0001)
    assert store.records("pump") == []  # a refused monitor wrote nothing
    with pytest.raises(InvalidSetting):
        Monitor()
    with pytest.raises(InvalidSetting):
        DriftDetector(threshold=1.0)
    # level 0 turns a test off; the smallest reachable level is 1 / (window + 1)
    quiet = Monitor(store=MemoryStore(), name="pump", alpha=0.0, spike=1 / 201, window=200)
    _warm(quiet, 200)
    assert [a.kind for a in quiet.check("x", 50.0, 0.0, 1.0, "e", 200.0)] == []


def test_monitor_watches_a_twin_end_to_end(tmp_path):
    """Through ``twin.observe``: the twin scores each transition, the monitor judges it
    before the twin's calibrator learns it; a spike is an anomaly, a change of the
    dynamics a drift; the alerts are in the twin's SQLite file after reopening."""
    path = tmp_path / "plant.db"
    twin = Twin("plant", variables=[Variable("x"), Variable("u", "action")], store=path,
                predictors=[Persistence(), LocalRidge()])
    monitor = Monitor(twin, alpha=0.002, window=600)
    rng = np.random.default_rng(6)
    x, t = 1.0, 0
    gain = 1.0

    def step(reading: float | None = None) -> list[Alert]:
        nonlocal x, t
        u = 1.0 if (t // 5) % 2 == 0 else 0.0
        before = len(monitor.alerts())
        twin.observe({"x": x + rng.normal(0, 0.05) if reading is None else reading, "u": u},
                     episode="e", t=float(t))
        x = 0.8 * x + gain * u
        t += 1
        return monitor.alerts()[before:]

    for _ in range(650):
        step()
    false = len(monitor.alerts())
    assert false <= 4  # 650 ordinary readings, at most alpha of them plus chance drifts
    scored = len(twin.scores_)
    spike = step(reading=x + 3.0)  # 60 times the sensor noise
    assert len(twin.scores_) == scored + 1
    assert [a.kind for a in spike] == ["anomaly"]
    assert spike[0].variable == "x" and spike[0].episode == "e"
    assert spike[0].actual == pytest.approx(twin.history(episode="e")[-1].values["x"])
    for _ in range(20):
        step()
    gain = 1.6  # the valve now lets more in: the dynamics change
    delays = [i for i in range(1, 40) if any(a.kind == "drift" for a in step())]
    assert delays and delays[0] <= 15, delays
    ids = [a.id for a in monitor.alerts()]
    twin.close()

    reopened = SQLiteStore(path)
    assert [a.id for a in alerts(reopened, "plant")] == ids
    reopened.close()


def test_a_failing_alert_store_never_fails_the_observation(caplog):
    """The reading is stored before it is scored: if storing an alert fails, observe
    still succeeds, and the failure is logged and counted."""

    class Broken(MemoryStore):
        def append_record(self, twin, kind, payload):
            raise StoreError("disk full")

    twin = Twin("plant", variables=[Variable("x")], store=Broken(),
                predictors=[Persistence(), LocalRidge()])
    monitor = Monitor(twin, alpha=0.05, window=30)
    for t in range(40):
        twin.observe({"x": float(t % 3)}, episode="e", t=float(t))
    twin.observe({"x": 500.0}, episode="e", t=40.0)  # an anomaly that cannot be stored
    assert twin.history(episode="e")[-1].values == {"x": 500.0}
    assert monitor.errors_ >= 1 and "disk full" in caplog.text


def test_a_flagged_spike_leaves_no_large_residual_in_the_windows():
    """Both residuals of a flagged spike join the windows clipped (the one into it after
    the fact), so a later spike is judged against ordinary readings; the residual out of
    a spike is not blamed as a spike with the next reading, and one outlier after an
    ordinary reading does not blame the ordinary one."""
    rng = np.random.default_rng(12)
    monitor = Monitor(store=MemoryStore(), name="pump", alpha=0.0, spike=0.005, window=400)
    for i in range(400):
        monitor.check("x", float(rng.normal()), 0.0, 1.0, "e", float(i))
    res = monitor.residuals["x"]
    tops = (res.abs.top(), res.pair.top(), float(res.signed._sorted[-1]))
    before, marked = len(monitor.alerts()), sum(res.marked)
    monitor.check("x", 0.5, 0.0, 1.0, "e", 400.0)
    monitor.check("x", 7.0, 0.0, 1.0, "e", 401.0)   # into the spike
    monitor.check("x", -7.0, 0.0, 1.0, "e", 402.0)  # out of it: flags 401
    monitor.check("x", 0.8, 0.0, 1.0, "e", 403.0)   # no spike on 402
    assert [(a.kind, a.t) for a in monitor.alerts()[before:]] == [("anomaly", 401.0)]
    assert (res.abs.top(), res.pair.top(), float(res.signed._sorted[-1])) == tops
    assert sum(res.marked) == marked + 2  # kept clipped through a rescaling too
    res.choose()
    assert res.abs.top() == tops[0] and res.pair.top() <= tops[1]
    # one outlier after an ordinary reading: an anomaly of its own, never a spike on 403
    monitor.check("x", -9.0, 0.0, 1.0, "e", 404.0)
    assert all(a.t != 403.0 for a in monitor.alerts())


def test_the_spike_window_fills_across_many_episodes():
    """An episode's first kept reading has no spike score: the kept readings outnumber
    the window so the spike window still fills, and its smallest p-value reaches
    1 / (window + 1) (30 patients in 2,000 readings left it at 1/1,966 before)."""
    rng = np.random.default_rng(13)
    monitor = Monitor(store=MemoryStore(), name="ward", alpha=1 / 301, window=300, settle=1)
    for patient in range(60):
        for t in range(12):
            monitor.check("v", float(rng.normal()), 0.0, 1.0, f"p{patient}", float(t))
    res = monitor.residuals["v"]
    assert len(res.abs) == len(res.pair) == 300
    assert res.pair.pvalues(1e9, 0.5)[0] == pytest.approx(1 / 301)


def test_monitor_flags_a_spike_and_a_leak_on_a_real_tank_twin():
    """A tank twin (persistence and the numeric learner) watched while the true tank
    runs with a noisy level sensor: few false alarms, the spike flagged on its reading,
    a 50% larger leak flagged as drift within 15 readings."""
    from lmtwin.systems import TANK_VARIABLES
    from lmtwin.systems.tank import tank_step

    twin = Twin("tank", variables=list(TANK_VARIABLES), store=MemoryStore(),
                predictors=[Persistence(), LocalRidge()])
    monitor = Monitor(twin, alpha=0.0, spike=0.004, window=250, h=6.0, k=1.0)
    rng = np.random.default_rng(0)
    level, leak = 20.0, 0.05

    def read(i: int, extra: float = 0.0) -> None:
        nonlocal level
        valve = 1.0 if (i // 15) % 2 == 0 else 0.0
        noisy = max(0.0, level + float(rng.normal(0, 0.2)) + extra)
        twin.observe({"level": noisy, "valve": valve}, episode="tank", t=float(i))
        level = float(tank_step(level, valve, leak=leak))

    for i in range(450):
        read(i)
    assert monitor.n("level") == 250 and monitor.scale("level") == "absolute"
    assert len([a for a in monitor.alerts() if a.t >= 250]) <= 3  # ~1/250 of 200
    before = len(monitor.alerts())
    read(450, extra=1.5)  # 7.5 times the sensor noise
    for i in range(451, 460):
        read(i)
    assert [(a.kind, a.t) for a in monitor.alerts()[before:]] == [("anomaly", 450.0)]
    before = len(monitor.alerts())
    leak = 0.075
    for i in range(460, 480):
        read(i)
    drifts = [a.t for a in monitor.alerts()[before:] if a.kind == "drift"]
    assert drifts and drifts[0] - 460 <= 15, drifts
    twin.close()


def test_a_lasting_shift_is_one_drift_alert_within_the_refractory_span():
    """The CUSUM restarts at each crossing; with ``refractory`` readings of calm after a
    drift alert, a lasting shift raises one alert per span instead of one every few
    readings."""
    counts = {}
    for refractory in (0, 40):
        monitor = Monitor(store=MemoryStore(), name="pump", alpha=0.0, spike=0.002,
                          window=500, h=5.0, k=1.0, refractory=refractory)
        _warm(monitor, 500)
        before = len(monitor.alerts())
        rng = np.random.default_rng(14)
        for i in range(40):  # the residuals' mean moves by 2 sd and stays there
            monitor.check("x", 2.0 + float(rng.normal()), 0.0, 1.0, "e", 500.0 + i)
        counts[refractory] = [a.t for a in monitor.alerts()[before:] if a.kind == "drift"]
    assert len(counts[0]) >= 4 and len(counts[40]) == 1
    assert counts[40][0] == counts[0][0] <= 512.0  # the first alert is as fast
    for bad in (-1, 2.5):
        with pytest.raises(InvalidSetting):
            Monitor(store=MemoryStore(), name="pump", refractory=bad)  # type: ignore[arg-type]
