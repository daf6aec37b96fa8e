"""The combination against its best member, per stream (engine step ``combination``)."""

from __future__ import annotations

from lmtwin.bench import engine
from lmtwin.bench.combination import bench_combination, demo_stream, validation_stream


def test_on_the_hare_lynx_validation_stream_the_combination_keeps_up_with_its_best():
    row = validation_stream("hare-lynx", 0, patients=1)
    assert set(row["nmse"]) == {"combined", "persistence", "numeric", "ridge", "knn"}
    assert row["rows"] == 13  # one series, 13 predicted steps
    assert row["combined_over_best"] <= 1.05


def test_a_demo_stream_reports_the_demos_own_measure():
    """A demo twin starts empty: the numeric learner earns weight after 3 scores, and
    persistence carries those steps; the whole stream's ratio shows that cold start
    (1.07x on this seed), the second figure the warm combination."""
    row = demo_stream(None, seed=0, patients=2)
    assert row["kind"] == "demo" and row["best"] in ("persistence", "numeric")
    assert row["combined_over_best"] >= row["after_first_patient"]
    assert row["after_first_patient"] <= 1.05
    # the combination, cold start and all, far from no change at all
    assert row["nmse"]["combined"] < 0.5 * row["nmse"]["persistence"]
    assert row["nmse"]["persistence"] == 1.0  # relative to persistence by definition


def test_the_engine_report_shows_every_stream_and_the_largest_ratio():
    comb = bench_combination(None, quick=True, tasks=("plankton", "hare-lynx"))
    text = engine.report({"date": "d", "quick": True, "combination": comb})
    assert "plankton validation" in text and "demo, seed 0 (2 patients)" not in text
    assert f"{comb['max_ratio']:.3f} | <= 1.05" in text
