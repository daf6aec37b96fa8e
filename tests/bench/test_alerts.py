"""The detection bench: faults injected as described, events scored as described, the
live Monitor and its replay agree, and a tiny run writes its table and figures."""

from __future__ import annotations

import numpy as np
import pytest

from lmtwin.bench import alerts as bench
from lmtwin.bench.alerts import Event, Outcome, Run, Setting, Size, Stream

TINY = Size(warm_patients=3, test_patients=4, warm_rows=200, test_rows=300)


def test_faults_change_only_their_readings():
    clean = bench.clean_stream("tank", 3, TINY)
    assert len(clean.rows) == 500 and clean.warm == 200
    spike = bench.fault_stream(clean, "spike", 0.2, TINY)
    changed = [i for i, (a, b) in enumerate(zip(clean.rows, spike.rows, strict=True))
               if a[2] != b[2]]
    assert changed == [e.onset for e in spike.events] and len(changed) >= 2
    for e in spike.events:
        assert abs(spike.rows[e.onset][2]["level"] - clean.rows[e.onset][2]["level"]) == \
            np.float64(1.0) or clean.rows[e.onset][2]["level"] < 1.0  # 5 x 0.2, unless at 0
        assert e.until == e.onset + 1 and e.onset >= clean.warm
    stuck = bench.fault_stream(clean, "stuck", 0.2, TINY)
    for e in stuck.events:
        held = {stuck.rows[i][2]["level"] for i in range(e.onset, e.end + 1)}
        assert held == {clean.rows[e.onset - 1][2]["level"]}
    bias = bench.fault_stream(clean, "bias", 0.2, TINY)
    e = bias.events[0]
    offsets = [bias.rows[i][2]["level"] - clean.rows[i][2]["level"] for i in range(e.onset, e.end)]
    assert np.allclose(np.diff(offsets), 0.05)  # a quarter of sigma a reading
    step = bench.fault_stream(clean, "step", 0.2, TINY)
    onset = step.events[0].onset
    assert step.rows[:onset] == clean.rows[:onset] and step.rows[onset:] != clean.rows[onset:]
    cancer = bench.clean_stream("cancer", 3, TINY)
    assert {ep for ep, _, _ in cancer.rows} == {f"p{i}" for i in range(7)}
    changed_patient = bench.fault_stream(cancer, "step", 0.02, TINY)
    assert changed_patient.rows[changed_patient.events[0].onset][1] == 1.0  # a patient's t=1


def test_events_are_scored_by_first_alarm_in_their_window():
    stream = Stream("tank", 0, "stuck", [], [("e", float(i), {}) for i in range(100)], 10,
                    [Event("stuck", 20, 30, 30), Event("stuck", 60, 70, 70)])
    run = Run(stream, np.array([15, 25, 26, 75]), np.array(["x"] * 4), *([np.zeros(4)] * 7),
              alerted={(15, "x"), (25, "x"), (26, "x"), (75, "x")}, seconds=0.0,
              live=Setting("lmtwin", (("alpha", 0.1),)))
    out = bench.score(run, Setting("lmtwin", (("alpha", 0.1),)))
    assert out.delays == [5, None]  # the alarm at 75 is after the second fault ended
    clean = Run(Stream("tank", 0, "none", [], stream.rows, 10), np.arange(10, 100),
                np.array(["x"] * 90), *([np.zeros(90)] * 7), alerted={(50, "x"), (5, "x")},
                seconds=0.0, live=Setting("lmtwin", (("alpha", 0.1),)))
    got = bench.score(clean, Setting("lmtwin", (("alpha", 0.1),)))
    assert got.false_per_1000 == 1000 / 90  # the warm-up alarm does not count
    assert bench._summary([out, got]) == {"detected": 0.5, "delay": 5.0,
                                          "false": 1000 / 90, "worst": 1000 / 90}
    assert isinstance(out, Outcome)


def test_live_monitor_and_replay_agree():
    setting = Setting("lmtwin", (("alpha", 0.02), ("h", 4.0), ("k", 0.5),
                                 ("refractory", 5)))
    clean = bench.clean_stream("tank", 4, TINY)
    run = bench.run_stream(bench.fault_stream(clean, "stuck", 0.25, TINY), setting)
    assert len(run.row) > 0 and run.alerted  # the monitor raised alerts on the twin
    # a score is dated by the reading it judges: the reading before it is its previous
    level = run.variable == "level"
    before = [run.stream.rows[i - 1][2]["level"] for i in run.row[level]]
    assert np.allclose(run.previous[level], before)
    # the exact replay (a Monitor run again on the recorded scores) is the live Monitor,
    # at the live levels and at others
    assert bench._lmtwin(run, dict(setting.params)) == run.alerted
    again = bench.run_stream(run.stream, Setting("lmtwin", (("alpha", 0.0), ("spike", 0.01),
                                                            ("h", 6.0), ("k", 1.0),
                                                            ("refractory", 0))))
    assert bench.alarms(run, again.live) == again.alerted  # type: ignore[arg-type]


def test_tiny_bench_writes_a_report_and_figures(tmp_path):
    results = bench.run(seeds=(10,), tune_seeds=(0,), size=Size(2, 2, 120, 160))
    assert set(results.chosen) == {"lmtwin", "ADWIN", "Page-Hinkley", "3-sigma"}
    assert len(results.outcomes) == 4 * 2 * 5
    paths = bench.figures(results, tmp_path)
    assert [p.name for p in paths] == ["alerts-delays.png", "alerts-example.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
    text = bench.report(results, paths, "python -m lmtwin.bench.alerts")
    assert "| lmtwin |" in text and "### tank" in text and "false alarms / 1,000" in text
    assert "Against the targets" in text
    assert set(results.spikes) == {("cancer", 10), ("tank", 10)}
    assert all(size > 0 and top > 0 for size, top, _ in results.spikes.values())
    assert "The spike's size against the largest fault-free residual" in text


def test_every_lmtwin_setting_tried_is_one_the_monitor_accepts():
    """The grid holds no level the window cannot reach (0.0002 with 2,000 residuals was
    tried before: it could never flag an anomaly, and was chosen for its few alarms)."""
    from lmtwin.intervene.alerts import InvalidSetting, Monitor
    from lmtwin.store import MemoryStore

    tried = [s for s in bench.grid() if s.method == "lmtwin"]
    assert {dict(s.params)["alpha"] for s in tried} == {0.0, bench.ALPHA}
    for setting in tried:
        Monitor(store=MemoryStore(), name="x", window=bench.WINDOW, **dict(setting.params))
    with pytest.raises(InvalidSetting):
        Monitor(store=MemoryStore(), name="x", window=bench.WINDOW, alpha=bench.ALPHA / 2.5)
