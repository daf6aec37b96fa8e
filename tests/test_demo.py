"""The main job on the real embedded model, shortened."""

import math

import pytest
from typer.testing import CliRunner

from lmtwin.cli import app
from lmtwin.demo import demo_twin, run_demo, summarise

pytestmark = pytest.mark.model


def test_demo_stream_with_schema_change(gemma):
    twin = demo_twin(gemma)
    result = run_demo(twin, patients=2, steps=12, tune_after=None)
    assert result.predictions == 24  # 12 days a patient, each predicted before observed
    assert "ra" in twin.schema and twin.schema.version == 4
    assert twin.notes and "radiotherapy" in twin.notes[0].text
    s = summarise(result, [p.name for p in twin.predictors])
    assert set(s["mse"]) == {"persistence", "numeric", "llm", "combined"}
    assert all(math.isfinite(v) for v in s["mse"]["combined"].values())
    assert result.llm_prompt_tokens and max(result.llm_prompt_tokens) < 600


def test_demo_command_writes_plot_and_summary(tmp_path):
    out = tmp_path / "demo"
    res = CliRunner().invoke(
        app, ["demo", "--patients", "2", "--steps", "8", "--out", str(out), "--no-tune"]
    )
    assert res.exit_code == 0, res.output
    assert (out / "trajectories.png").stat().st_size > 10_000
    assert (out / "errors.png").exists()
    text = (out / "summary.md").read_text()
    assert "coverage" in text and "| llm |" in text
