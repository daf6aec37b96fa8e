"""Merging a new twin and baselines run with an older report kept without per-seed
metrics (``suite._graft``), and the step-by-step comparison on seed-independent data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lmtwin.bench import report, suite
from lmtwin.bench.tasks import Sizes

TINY = Sizes(patients=(8, 4, 3), test_steps=6)


def _cfg(**kw) -> suite.Config:  # type: ignore[no-untyped-def]
    base = dict(seeds=[10, 11, 12], sizes=TINY, tasks=["cancer-untreated"],
                baselines=["persistence", "knn"], min_residuals=3, check_every=2,
                patience=2, select_trajectories=4, quick=True)
    base.update(kw)
    return suite.Config(**base)  # type: ignore[arg-type]


def _legacy(tmp_path: Path) -> Path:
    """An older full run whose results.json kept no per-seed metrics, with a language
    model sample and a scenario to lend."""
    suite.run(_cfg(), None, [], tmp_path / "old", "old")
    path = tmp_path / "old" / "results.json"
    old = json.loads(path.read_text())
    task = old["tasks"]["cancer-untreated"]
    del task["per_seed"]
    task["methods"]["lmtwin[frozen]"]["mse"]["mean"] = 123.0  # the old library's twin
    task["lm"] = {"seeds": 3, "steps_per_seed": 1, "mse": {}, "calibration_calls": [1] * 3,
                  "fallbacks": 0}
    old["scenarios"] = {"drift": {"title": "drifting dynamics", "seeds": [10], "summary": {}}}
    old["date"] = "2026-01-01 00:00"
    old["grids"] = {"lmtwin_k": [1]}
    path.write_text(json.dumps(old))
    return tmp_path / "old"


def test_new_parts_replace_the_twin_and_an_old_run_lends_only_what_they_lack(
        tmp_path: Path) -> None:
    old = _legacy(tmp_path)
    suite.run(_cfg(baselines=["persistence"], twin=False), None, [], tmp_path / "base", "b")
    suite.run(_cfg(baselines=[]), None, [], tmp_path / "twin", "t")
    suite.merge([old, tmp_path / "base", tmp_path / "twin"], tmp_path / "m")
    results = json.loads((tmp_path / "m" / "results.json").read_text())
    r = results["tasks"]["cancer-untreated"]
    new_twin = json.loads((tmp_path / "twin" / "results.json").read_text())["tasks"][
        "cancer-untreated"]["methods"]["lmtwin[frozen]"]["mse"]["mean"]
    # the twin is the new run's, never the old library's
    assert r["methods"]["lmtwin[frozen]"]["mse"]["mean"] == pytest.approx(new_twin)
    assert "from_run" not in r["methods"]["lmtwin[frozen]"]
    # knn was not rerun: lent, marked, out of the ratios' pool (no per-seed metrics)
    assert r["methods"]["knn[frozen]"]["from_run"] == "2026-01-01 00:00"
    assert "from_run" not in r["methods"]["persistence[frozen]"]
    assert r["lent"] == {"knn": "2026-01-01 00:00"}
    assert r["ratios"]["frozen"]["best_baseline"] == "persistence[frozen]"
    assert r["ratios"]["frozen"]["seeds"] == 3 and r["ratios"]["frozen"]["ratio"] > 0
    assert all("knn" in s for s in r["settings"]) and all("lmtwin" in s for s in r["settings"])
    assert r["lm"]["run_date"] == "2026-01-01 00:00"
    assert results["date"] > "2026-01-01 00:00"
    assert results["parts"][0]["date"] == "2026-01-01 00:00"
    assert results["grids"]["lmtwin_k"] == suite.GRIDS["lmtwin_k"]  # the newest part's
    text = (tmp_path / "m" / "report.md").read_text()
    for piece in ("knn (run 2026-01-01 00:00)", "kept from the run of 2026-01-01 00:00",
                  "This table is from the run of 2026-01-01 00:00",
                  "Scenarios drift: from the run of 2026-01-01 00:00", "Merged "):
        assert piece in text, piece
    # an old run on other seeds cannot lend its rows
    wrong = json.loads((old / "results.json").read_text())
    wrong["tasks"]["cancer-untreated"]["seeds"] = [1, 2, 3]
    (tmp_path / "wrong").mkdir()
    (tmp_path / "wrong" / "results.json").write_text(json.dumps(wrong))
    with pytest.raises(suite.LmtwinError, match="different seeds"):
        suite.merge([tmp_path / "wrong", tmp_path / "twin"], tmp_path / "m2")
    # ... but one kept for its language-model sample only lends that, saying where from
    wrong["tasks"]["cancer-untreated"].update(methods={}, settings=[],
                                              info={"patients": [500, 500, 500]})
    wrong["kept"] = True
    (tmp_path / "wrong" / "results.json").write_text(json.dumps(wrong))
    suite.merge([tmp_path / "base", tmp_path / "twin", tmp_path / "wrong"], tmp_path / "m3")
    lent = json.loads((tmp_path / "m3" / "results.json").read_text())
    assert lent["tasks"]["cancer-untreated"]["lm"]["run_seeds"] == [1, 2, 3]
    assert "lent" not in lent["tasks"]["cancer-untreated"]
    text = (tmp_path / "m3" / "report.md").read_text()
    assert "(seeds 1..3, 500 patients per split; its steps are of that run's" in text
    assert "scenarios only, not rerun: `old`" in text  # listed, not counted in the time
    time = text[text.index("## Time"):]
    assert time.count("| cancer-untreated |") == 2 and "scenario drift |" not in time


def test_seed_independent_data_get_a_paired_comparison_over_steps() -> None:
    truth = np.arange(6.0)[:, None]
    twin = truth + np.array([0, 1, 1, 1, 1, 1])[:, None]
    best = truth + np.array([0, 2, 2, 0, 2, 2])[:, None]
    r = {"deterministic": True, "ratios": {"frozen": {"best_baseline": "b[frozen]"}},
         "plot": {"truth": truth.tolist(), "methods": {
             "lmtwin[frozen]": {"pred": twin.tolist()}, "b[frozen]": {"pred": best.tolist()}}}}
    line = report.step_lines(r)[0]
    # squared errors: twin 1 on every step, best 4, 4, 0, 4, 4 (mean 3.2)
    assert "lmtwin[frozen] / b[frozen] 0.312" in line
    assert "better of the two on 4 of 5 steps" in line
    # a third of the resamples miss the step where the baseline is exact: ratio 1 / 4
    assert "95% interval 0.25 to" in line
    assert report.step_lines({**r, "deterministic": False}) == []


def test_the_validation_scores_behind_the_chosen_settings_are_stated() -> None:
    r = {"ratios": {"frozen": {"best_baseline": "parroting[frozen]"}}, "settings": [
        {"lmtwin": {"setting": {"k": 64}, "validation_nmse": {"16": 0.5, "64": 0.1}},
         "parroting": {"setting": [4, 4], "validation_nmse": {"(1, 1)": 0.9,
                                                              "(4, 4)": 0.2}}},
        {"lmtwin": {"setting": {"k": 16}, "validation_nmse": {"16": 0.3, "64": 0.4}},
         "parroting": {"setting": [1, 1], "validation_nmse": {"(1, 1)": 0.4,
                                                              "(4, 4)": 0.6}}}]}
    line = report.validation_lines(r)[0]
    assert "numeric learner 0.2, parroting 0.3." in line
    # a best baseline chosen without a validation score (a network): nothing to say
    r["ratios"]["frozen"]["best_baseline"] = "dynode[frozen]"
    assert report.validation_lines(r) == []


def test_a_network_on_the_first_seeds_only_merges_beside_the_others(tmp_path: Path) -> None:
    """A costly method run on the first seeds only (its own part) joins a run on more
    seeds: its rows say how many seeds back them; a part on other seeds is refused."""
    suite.run(_cfg(seeds=[10, 11, 12, 13], baselines=["persistence"]), None, [],
              tmp_path / "all", "all")
    suite.run(_cfg(seeds=[10, 11, 12], baselines=["knn"], twin=False), None, [],
              tmp_path / "few", "few")
    suite.merge([tmp_path / "few", tmp_path / "all"], tmp_path / "m")
    r = json.loads((tmp_path / "m" / "results.json").read_text())["tasks"]["cancer-untreated"]
    assert r["seeds"] == [10, 11, 12, 13]
    assert r["methods"]["knn[frozen]"]["seeds"] == 3
    assert r["methods"]["lmtwin[frozen]"]["seeds"] == 4
    assert [("knn" in s) for s in r["settings"]] == [True, True, True, False]
    assert [s["seed"] for s in r["settings"]] == [10, 11, 12, 13]
    text = (tmp_path / "m" / "report.md").read_text()
    assert "(knn on 3 seeds)" in text and "4 seeds (10..13)" in text
    # the time section: both parts, their sum against the target, where the time went
    assert "## Time" in text and "The parts took" in text and "over the target" not in text
    assert "Where the time went" in text and "lmtwin " in text
    assert "not run: ridge, sindy, parroting, dynode, gru, transformer" in text
    assert "GRU (the protocol's" in text  # why a cancer task has no GRU rows
    assert "knn on 1 more seeds of cancer-untreated" in text  # the seeds it lacks, costed
    suite.run(_cfg(seeds=[11, 12], baselines=["ridge"], twin=False), None, [],
              tmp_path / "other", "other")
    with pytest.raises(suite.LmtwinError, match="different seeds"):
        suite.merge([tmp_path / "all", tmp_path / "other"], tmp_path / "m2")
