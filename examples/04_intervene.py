"""Intervene: what if I do this, what should I do, when will it cross the limit?

A twin learns a tank from noisy readings of random valve settings, then compares two
plans on the same noise, finds the valve plan that holds the level near 30 cm, and
estimates when the level reaches 25 cm with the valve 80% open. The plan is then run on
the true tank: a plan is only good if it is good on the real system.

Run: .venv/bin/python examples/04_intervene.py
"""

import numpy as np

from lmtwin import LocalRidge, Persistence, Twin
from lmtwin.intervene import Constraints, Objective
from lmtwin.systems.tank import TANK_VARIABLES, tank_step

rng = np.random.default_rng(0)
twin = Twin("tank", variables=TANK_VARIABLES, predictors=[Persistence(), LocalRidge()],
            store="tank.db")
for episode in range(20):  # readings of the true tank under random valve settings
    level, valve = rng.uniform(0, 40), 0.0
    for t in range(60):
        if t % 5 == 0:
            valve = float(rng.uniform(0, 1))
        twin.observe({"level": level, "valve": valve}, episode=f"run-{episode}", t=float(t))
        level = float(tank_step(level, valve, noise=0.5, rng=rng))

now = {"level": 12.0}
hold = Objective({"level": 1.0}, setpoints={"level": 30.0}, action_costs={"valve": 0.5})

# what if: shut versus half open, on the same 300 noise paths
plans = {"shut": [{"valve": 0.0}] * 20, "half open": [{"valve": 0.5}] * 20}
whatif = twin.compare(now, plans, horizon=20, n_paths=300, objective=hold, seed=1)
for name, o in whatif.outcomes.items():
    print(f"{name:>9}: objective {o.mean:7.1f}  90% interval [{o.lower:.1f}, {o.upper:.1f}]")
print(f"P(half open beats shut) = {whatif.beats['half open']['shut']:.2f}")

# what should I do: the best valve plan, opening at most 16 units over 20 steps
best = twin.optimise(now, hold, horizon=20, constraints=Constraints(budget={"valve": 16.0}),
                     n_paths=8, popsize=10, iterations=12, block=2, seed=0)
print(f"optimal plan: expected objective {best.expected:.1f} "
      f"[{best.lower:.1f}, {best.upper:.1f}]; valve", [round(s["valve"], 2) for s in best.plan])

# scored on the true tank, not on the twin
level, cost = now["level"], 0.0
for step in best.plan:
    level = float(tank_step(level, step["valve"], noise=0.5, rng=rng))
    cost += (level - 30.0) ** 2 / 20 + 0.5 * step["valve"]
print(f"the plan on the true tank: objective {cost:.1f}, final level {level:.1f} cm")

# when will it cross: the level reaching 25 cm with the valve 80% open
eta = twin.time_to("level", 25.0, [{"valve": 0.8}] * 30, horizon=30, state=now)
print(f"level >= 25 cm in {eta.median:g} steps (90%: {eta.lower:g}-{eta.upper:g}), "
      f"P(within 30 steps) = {eta.probability:.2f}")
twin.close()
