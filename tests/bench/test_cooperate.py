"""The cooperate bench end to end at a tiny size: it runs, scores on the truth, reports."""

from __future__ import annotations

import json

from lmtwin.bench.cooperate import Sizes, run


def test_bench_cooperate_runs_and_reports(tmp_path):
    messages: list[str] = []
    results = run(Sizes.tiny(), tmp_path, messages.append)
    md = (tmp_path / "cooperate.md").read_text()
    saved = json.loads((tmp_path / "cooperate.json").read_text())
    assert (tmp_path / "cooperate_results.png").stat().st_size > 0
    assert (tmp_path / "cooperate_learning.png").stat().st_size > 0
    for system, baseline in (("cancer", "protocol policy"), ("microgrid", "hand-written rules")):
        methods = results[system]["methods"]
        assert baseline in methods and len(methods[baseline]["per_start"]) == 3
        assert set(saved[system]["credit"]) == {"twin", "true simulator"}
        assert abs(saved[system]["credit"]["true simulator"]["gap"]) < 1e-6
    assert "kept learning on the updated twin" in results["microgrid"]["drift"]
    assert saved["five_agents"]["exact"]["coalitions"] == 32
    for heading in ("## Cancer", "## Microgrid", "### Drift", "## Shapley credit with five"):
        assert heading in md
    assert any("cancer twin" in m for m in messages)
    # a rerun of one part keeps the others
    run(Sizes.tiny(), tmp_path, messages.append, ["five"])
    again = json.loads((tmp_path / "cooperate.json").read_text())
    assert again["cancer"] == saved["cancer"] and "five_agents" in again
