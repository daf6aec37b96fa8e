"""Cooperating agents on a twin: a chemo agent and a radio agent learn on the twin of a
lung-cancer system, and are scored on the true simulator (extra ``agents``).

Run: python examples/06_cooperate.py   (about half a minute on 2 cores)
"""

import numpy as np

from lmtwin import LocalRidge, Persistence, Twin
from lmtwin.cooperate import (
    Crisis,
    Objective,
    Shaping,
    budget,
    cost,
    credit,
    explore,
    greedy,
    level,
    q_learners,
    train,
    uncertainty,
)
from lmtwin.systems.cancer import CANCER_VARIABLES, simulate_patients
from lmtwin.systems.cancer_control import CancerSystem

# 1. A twin of the cancer system, from 20 patients treated under the protocol's policy.
twin = Twin("cancer", variables=CANCER_VARIABLES, predictors=[Persistence(), LocalRidge()])
for i, patient in enumerate(simulate_patients(20, seed=1, steps=40)):
    for t, row in enumerate(patient.rows()):
        twin.observe(row, episode=f"patient-{i}", t=float(t))

# 2. One objective O = w_p P + w_a A + w_c C: the tumour (physical), toxicity and a
#    radiotherapy budget (abstract), the twin's own uncertainty (computational); crisis
#    weights triple w_p while the tumour is above 500 cm3.
objective = Objective(
    [
        level("v", scale=100.0, name="tumour volume"),
        cost({"ca": 0.05}, agents=["chemo"], name="chemo toxicity"),
        cost({"ra": 0.1}, agents=["radio"], name="radio toxicity"),
        budget("ra", total=40.0, agents=["radio"], name="radio budget"),
        uncertainty(["v"], scale=100.0),
    ],
    weights=Crisis({"v": (None, 500.0)}, normal=(1, 1, 1), crisis=(3, 1, 1)),
)

# 3. A PettingZoo Parallel environment on the twin: each agent owns one action; rewards
#    are shaped R_i' = R_i + 0.5 R_j (cooperative).
agents = {"chemo": ["ca"], "radio": ["ra"]}
env = twin.parallel_env(agents, objective, horizon=20, shaping=Shaping(1.0, 0.5),
                        levels={"ca": [0.0, 5.0], "ra": [0.0, 2.0]}, observe_totals=["ra"])
game = env.game
learners = q_learners(game, explore(game, episodes=5), bins=[6, 3, 3], epsilon=0.4)
result = train(env, learners, episodes=80)
print(f"trained on the twin: {result.episodes} episodes in {result.seconds:.1f} s")

# 4. Scored on the TRUE simulator, on held-out patients.
true_game = game.with_dynamics(CancerSystem())
rng = np.random.default_rng(1000)
starts = [CancerSystem.start(rng) for _ in range(20)]
learnt = [true_game.play(greedy(game, learners), s, seed=i).value for i, s in enumerate(starts)]
none = [true_game.play({}, s, seed=i).value for i, s in enumerate(starts)]
print(f"true objective per patient: agents {np.mean(learnt):.1f}, no treatment "
      f"{np.mean(none):.1f} (higher is better)")

# 5. Fair credit: Shapley values over coalitions (only the coalition acts), on the twin
#    with common random numbers; they add up to v(all) - v(none).
c = credit(game, greedy(game, learners), starts[:5])
print("Shapley credit on the twin:", {a: round(v, 1) for a, v in c.values.items()},
      f"(v(all) - v(none) = {c.v_all - c.v_none:.1f})")
