"""The intervene commands as a user runs them, on a twin in a real SQLite file."""

import json

import numpy as np
from typer.testing import CliRunner

from lmtwin import LocalRidge, Persistence, Twin, Variable
from lmtwin.cli import app


def _store(path):
    twin = Twin("plant", variables=[Variable("x", "state", "m", "position"),
                                    Variable("u", "action", "m", "push", lower=0, upper=2)],
                predictors=[Persistence(), LocalRidge()], store=path)
    rng = np.random.default_rng(0)
    x = 5.0
    for t in range(300):
        u = float(rng.choice([0.0, 0.5, 1.0]))
        twin.observe({"x": x, "u": u}, episode="e", t=float(t))
        twin.predict({"x": x}, {"u": u}, episode="e")
        x = 0.9 * x + u + 0.05 * rng.standard_normal()
    twin.close()


def test_whatif_optimise_and_time_to_print_a_table_and_write_a_png(tmp_path):
    db = tmp_path / "plant.db"
    _store(db)
    before = db.stat().st_size
    runner = CliRunner()
    plans = json.dumps({"rest": [{"u": 0.0}] * 6, "push": [{"u": 1.0}] * 6})
    r = runner.invoke(app, ["whatif", str(db), "--twin", "plant", "--plans", plans,
                            "--minimise", "x", "--setpoint", "x=3", "--state", '{"x": 5}',
                            "--paths", "100", "--out", str(tmp_path / "w.png")])
    assert r.exit_code == 0, r.output
    assert "rest" in r.output and "P(beats push)" in r.output
    assert (tmp_path / "w.png").stat().st_size > 1000
    r = runner.invoke(app, ["optimise", str(db), "--twin", "plant", "--minimise", "x",
                            "--setpoint", "x=4", "--horizon", "6", "--budget", "u=2",
                            "--paths", "4", "--iterations", "5", "--state", '{"x": 2}',
                            "--out", str(tmp_path / "o.png")])
    assert r.exit_code == 0, r.output
    assert "optimal plan" in r.output and (tmp_path / "o.png").exists()
    r = runner.invoke(app, ["time-to", str(db), "--twin", "plant", "--variable", "x",
                            "--threshold", "5", "--plan", json.dumps([{"u": 1.0}] * 12),
                            "--state", '{"x": 2}', "--paths", "100",
                            "--out", str(tmp_path / "t.png")])
    assert r.exit_code == 0, r.output
    assert "P(crossing)" in r.output and (tmp_path / "t.png").exists()
    # bad input: a typed error, exit code 1, nothing stored
    r = runner.invoke(app, ["time-to", str(db), "--twin", "plant", "--variable", "u",
                            "--threshold", "1", "--plan", json.dumps([{"u": 1.0}] * 3),
                            "--state", '{"x": 2}'])
    assert r.exit_code == 1 and "SchemaError" in r.output
    r = runner.invoke(app, ["optimise", str(db), "--twin", "plant", "--minimise", "x",
                            "--horizon", "4", "--bound", "u=0:5", "--state", '{"x": 2}'])
    assert r.exit_code == 1 and "upper bound 2" in r.output
    assert db.stat().st_size == before
