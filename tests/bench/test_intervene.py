"""The closed-loop bench at toy sizes: every policy is scored on the true simulator."""

import numpy as np

from lmtwin.bench import intervene as bi


def test_closed_loop_scores_every_policy_on_the_true_simulators():
    tiny = bi.Settings(horizon=4, replan_every=2, block=2, popsize=4, iterations=2, n_paths=2)
    cancer = bi.run_cancer(bi.cancer_twin(20), [2000], tiny, lambda *a: None)
    assert set(cancer.costs) == {"twin MPC", "protocol", "no treatment", "random, same budget",
                                 "oracle MPC"}
    assert all(np.isfinite(c).all() and len(c) == 1 for c in cancer.costs.values())
    # doing nothing lets the tumour grow: the worst of the five
    assert cancer.costs["no treatment"][0] >= max(
        c[0] for n, c in cancer.costs.items() if n != "no treatment") - 1e-9
    tank = bi.run_tank(bi.tank_twin(10, 40, bi.TANK_NOISE, seed=5), [2000], tiny,
                       lambda *a: None)
    assert tank.costs["twin MPC"][0] < tank.costs["no action"][0]
    lines = bi._loop_table(cancer, "protocol")
    assert any("twin MPC / oracle MPC" in line for line in lines)


def test_random_schedule_spends_the_budget():
    rng = np.random.default_rng(0)
    days = bi._random_schedule(12.0, 5.0, rng)
    assert sum(days) == 12.0 and max(days) <= 5.0 and len(days) == bi.CANCER_DAYS


def test_rollout_bench_measures_speed_and_accuracy_in_one_run():
    res = bi.measure_rollouts(patients=90, n_paths=50, horizon=4, repeats=1, held_out=200,
                              call_paths=2)
    assert res["batch_rate"] > 0 and res["ivf_rate"] > 0 and res["call_rate"] > 0
    assert res["held_out"] == 200 and len(res["load_before"]) == 3
    assert set(res["mae"]) == {"auto (the twin's kind)", "faiss IVF", "exact numpy"}
    # an exact search answers as exact search; every forecast is near the truth
    assert res["vs_exact"]["auto (the twin's kind)"] < 1e-9
    assert all(np.all(np.isfinite(m)) for m in res["mae"].values())
    assert res["mae"]["auto (the twin's kind)"][0] < 5.0  # cm3, one day of tumour growth
    low, _, high = res["v_final"]
    assert low <= high and res["paths"].shape == (50, 5, 2)
    assert "KDTreeIndex" in res["compared"]["auto (the twin's kind)"]  # 5,310 transitions
    assert "FaissIndex" in res["compared"]["faiss IVF"]
