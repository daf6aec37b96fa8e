from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lmtwin.bench.tasks import (
    TASKS,
    MissingData,
    Sizes,
    UnknownTask,
    load_task,
    simulate_covid,
    simulate_plankton,
)
from lmtwin.errors import LmtwinError

TINY = Sizes(patients=(3, 2, 2), covid_trajectories=1, covid_population=2000,
             test_trajectories=1, test_steps=5)


def test_cancer_variants_are_nested() -> None:
    full = load_task("cancer", 10, TINY)
    chemo = load_task("cancer-chemo", 10, TINY)
    untreated = load_task("cancer-untreated", 10, TINY)
    assert (full.states, full.actions) == (["v", "c"], ["ca", "ra"])
    assert (chemo.states, chemo.actions) == (["v", "c"], ["ca"])
    assert (untreated.states, untreated.actions) == (["v"], [])
    assert len(full.train) == 3 and len(full.test) == 2
    traj = full.train[0]
    assert traj.states.shape == (61, 2) and traj.actions.shape == (60, 2)
    # doses as the protocol's policy gives them; chemo concentration follows dc = -c/2 + ca
    assert set(np.unique(traj.actions[:, 0])) <= {0.0, 5.0}
    assert np.allclose(traj.states[1:, 1], np.maximum(traj.states[:-1, 1] * 0.5
                                                      + traj.actions[:, 0], 0))
    assert np.all(untreated.train[0].states[:, 0] > 0)
    # seeds change the data; the same seed gives the same data
    assert not np.allclose(load_task("cancer", 11, TINY).train[0].states, traj.states)
    assert np.allclose(load_task("cancer", 10, TINY).train[0].states, traj.states)


def test_hare_lynx_chronological_split() -> None:
    task = load_task("hare-lynx", 10, TINY)
    assert [len(s[0].states) for s in (task.train, task.val, task.test)] == [63, 14, 14]
    assert task.info["test_years"] == "1922-1935"
    assert task.deterministic and task.actions == []


def test_plankton_simulation_reproduces_the_csv() -> None:
    task = load_task("plankton", 10, TINY)
    assert [len(s[0].states) for s in (task.train, task.val, task.test)] == [70, 15, 16]
    assert task.info["max_abs_gap_simulation_vs_csv"] < 1e-3
    assert np.allclose(simulate_plankton(100)[0], [1.0, 1.5, 0.25])


def test_covid_fractions() -> None:
    (traj,) = simulate_covid(1, seed=3, population=2000)
    assert traj.states.shape == (60, 4)
    assert np.allclose(traj.states.sum(axis=1), 1.0, atol=0.02)  # S + (E-I) + I + (R+D)
    assert np.all(traj.states >= 0)


def test_unknown_task_names_the_choices() -> None:
    with pytest.raises(UnknownTask) as err:
        load_task("cancer-radio", 10, TINY)
    assert isinstance(err.value, LmtwinError)
    for name in TASKS:
        assert name in str(err.value)


def test_missing_data_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(MissingData) as err:
        load_task("hare-lynx", 10, TINY, data_dir=tmp_path)
    assert "hare_lynx.csv" in str(err.value) and "--data-dir" in str(err.value)


def test_covid_simulations_are_kept_for_the_next_run(tmp_path: Path) -> None:
    tiny = Sizes(covid_trajectories=1, covid_population=2000)
    first = load_task("covid", 10, tiny, cache=tmp_path)
    assert len(list(tmp_path.glob("covid-*.npz"))) == 3  # train, validation, test
    again = load_task("covid", 10, tiny, cache=tmp_path)
    for a, b in zip(first.train + first.val + first.test, again.train + again.val + again.test,
                    strict=True):
        assert np.array_equal(a.states, b.states) and a.actions.shape == b.actions.shape
