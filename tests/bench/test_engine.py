"""The engine bench's language-model step at toy size, on a scripted backend."""

import numpy as np

from lmtwin.bench import engine
from lmtwin.llm import ScriptedBackend


def test_wide_series_has_15_positive_variables():
    rows = engine.wide_series(steps=40, seed=1)
    assert len(rows) == 40 and len(rows[0]) == 15
    assert min(min(r.values()) for r in rows) > 0
    assert rows == engine.wide_series(steps=40, seed=1)


def test_llm_step_reports_tails_accuracy_and_load():
    backend = ScriptedBackend(lambda prompt: " 1" * 15)  # as many numbers as any query needs
    r = engine.bench_llm(backend, queries=3, wide_queries=2)
    assert r["configs"] == ["after"]  # not the embedded model: nothing to compare it with
    for part, n in (("small", 3), ("wide", 2)):
        x = r[part]["after"]
        assert r[part]["queries"] == n and x["n"] == n
        assert 0 < x["seconds_median"] <= x["seconds_p95"] <= x["seconds_max"]
        assert np.isfinite(x["mse"]) and x["unanswered"] == 0
    assert r["load_average_start"] >= 0
    short = r["wide"][f"after, rows <= {engine.WIDE_ROW_TOKENS} tokens"]
    assert short["prompt_tokens_median"] < r["wide"]["after"]["prompt_tokens_median"]
    text = "\n".join(engine._lm_details(r))
    assert "| 15 variables (2 queries) | after |" in text


def test_history_step_reports_every_seed_and_its_spread():
    h = engine.bench_history(train=30, test=2, steps=20, seeds=(0, 1))
    assert h["seeds"] == [0, 1] and [r["seed"] for r in h["per_seed"]] == [0, 1]
    assert h["n_intervals"] == 2 * 2 * 20 * 2  # seeds x patients x steps x variables
    assert h["coverage_min"] <= h["coverage"] <= h["coverage_max"]
    assert all("errors" not in r and "inside" not in r for r in h["per_seed"])  # not in json
    assert set(h["width_over_sd"]) == {"v", "c"}
    text = engine.report({"date": "now", "quick": True, "history": h})
    assert "(seeds 0, 1; each seed's range)" in text and "| 1 | " in text
