from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from lmtwin.bench import suite
from lmtwin.bench.harness import TwinMethod, stream
from lmtwin.bench.scenarios import ScenarioSizes, recovery, run_scenario
from lmtwin.bench.tasks import Sizes, load_task

TINY = Sizes(patients=(4, 1, 1), test_trajectories=1, test_steps=6, val_steps=4)


def _cfg(**kw) -> suite.Config:  # type: ignore[no-untyped-def]
    base = dict(seeds=[10, 11], lm_seeds=1, sizes=TINY, k=8, retrievals=["raw"],
                baselines=["persistence", "ridge", "sindy"], min_residuals=3,
                train_steps={"dynode": 5, "gru": 2, "transformer": 2}, quick=True,
                scenario_sizes=ScenarioSizes(warm_patients=3, pre_steps=4, post_steps=6,
                                             refit_every=3, dynode_steps=5))
    base.update(kw)
    return suite.Config(**base)  # type: ignore[arg-type]


def test_bad_inputs_are_reported_and_the_other_tasks_still_run(tmp_path: Path,
                                                               monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "pysindy", None)  # an optional dependency is missing
    cfg = _cfg(tasks=["no-such-task", "hare-lynx", "cancer-untreated"],
               data_dir=tmp_path / "empty")
    out = tmp_path / "out"
    results = suite.run(cfg, None, ["drift", "no-such-scenario"], out, "test")
    tasks = results["tasks"]
    assert "unknown task 'no-such-task'" in tasks["no-such-task"]["error"]
    assert "hare_lynx.csv" in tasks["hare-lynx"]["error"]
    assert "--data-dir" in tasks["hare-lynx"]["error"]
    r = tasks["cancer-untreated"]
    assert "lmtwin[bench]" in r["errors"]["sindy"]
    assert {"persistence", "ridge", "lmtwin[raw]", "lmtwin-numeric[raw]"} <= set(r["methods"])
    assert r["methods"]["ridge"]["seeds"] == 2
    assert r["ratio_to_best_baseline"]["lmtwin[raw]"] > 0
    assert "unknown scenario" in results["scenarios"]["no-such-scenario"]["error"]
    report = (out / "report.md").read_text()
    for text in ("## cancer-untreated", "not run", "| lmtwin[raw]", "drift", "Quick run"):
        assert text in report
    assert (out / "cancer-untreated.png").stat().st_size > 0
    assert (out / "scenarios.png").stat().st_size > 0
    assert json.loads((out / "results.json").read_text())["command"] == "test"


def test_twin_predicts_before_it_observes() -> None:
    from lmtwin.predictors import LocalRidge, Persistence
    from lmtwin.twin import Twin

    task = load_task("cancer-chemo", 10, TINY)
    twin = Twin("t", variables=task.variables, predictors=[Persistence(), LocalRidge()])
    twin.observe_many(task.observations(task.train, "train"))
    method = TwinMethod(twin, task)
    seen: list[int] = []
    real_predict = twin.predict

    def spy(values, episode=None):  # type: ignore[no-untyped-def]
        # the true next row must not be in the store when the prediction is made
        seen.append(len(twin.history(episode=episode)))
        return real_predict(values, episode=episode)

    twin.predict = spy  # type: ignore[method-assign]
    recs = stream(method, task, task.test_set(TINY), "test")
    assert seen == list(range(1, 7))
    assert np.isfinite(np.concatenate(recs["lmtwin[raw]"].pred)).all()


def test_scenario_records_error_curves_across_the_change() -> None:
    sizes = ScenarioSizes(warm_patients=3, pre_steps=4, post_steps=6, refit_every=3,
                          dynode_steps=5)
    out = run_scenario("new-state", None, sizes, baselines=("ridge",))
    assert out["n_pre"] == 4
    assert len(out["curves"]["lmtwin"]) == 10
    assert {"ridge (kept)", "ridge (refitted)", "persistence"} <= set(out["summary"])
    assert out["summary"]["ridge (refitted)"]["refit_seconds"] > 0


def test_recovery_counts_observations_until_back_within_the_factor() -> None:
    curve = [1.0, 1.0, 10.0, 10.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert recovery(curve, 1.0, 2, window=2) == 4
    assert recovery([1.0, 1.0, 9.0, 9.0], 1.0, 2, window=2) is None


@pytest.mark.model
def test_language_model_variants_on_the_real_model(gemma) -> None:  # type: ignore[no-untyped-def]
    sizes = Sizes(test_trajectories=1, test_steps=2, val_steps=2)
    cfg = _cfg(tasks=["hare-lynx"], seeds=[10], sizes=sizes, baselines=["llmtime"])
    r = suite.run_task("hare-lynx", cfg, gemma)
    m = r["methods"]
    assert {"llmtime", "lmtwin[raw]", "lmtwin-llm[raw]"} <= set(m)
    assert m["lmtwin-llm[raw]"]["tokens_per_prediction"]["mean"] > 0
    assert m["llmtime"]["predictions"] == 2
    assert 0.0 <= r["lm_weight_share"]["raw"] <= 1.0


def test_cli_reports_an_unknown_task_and_runs_the_others(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lmtwin.cli import app

    out = tmp_path / "bench"
    result = CliRunner().invoke(app, [
        "bench", "tasks", "--quick", "--tasks", "nope,hare-lynx", "--model", "none",
        "--scenarios", "none", "--baselines", "persistence,ridge", "--seeds", "1",
        "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "unknown task" in result.output and "nope" in result.output
    data = json.loads((out / "results.json").read_text())
    assert "error" in data["tasks"]["nope"]
    assert data["tasks"]["hare-lynx"]["best_baseline"] in ("persistence", "ridge")
    assert (out / "hare-lynx.png").exists()
