"""A noisy level sensor fused with the twin's own forecast (data assimilation).

Run: .venv/bin/python examples/03_assimilation.py
"""

import numpy as np

from lmtwin import LocalRidge, Persistence, Twin
from lmtwin.assimilation import Assimilator, Noise
from lmtwin.systems import TANK_VARIABLES, simulate_tank

truth, valves = simulate_tank(150)
readings = truth + np.random.default_rng(0).normal(0.0, 1.0, truth.size)  # sensor sd 1 cm

twin = Twin("tank", variables=TANK_VARIABLES, predictors=[Persistence(), LocalRidge()])
kf = Assimilator(twin, {"level": Noise(sensor=1.0, process=0.05)})
fused = []
for z, valve in zip(readings, valves, strict=True):
    obs = twin.observe({"level": float(z), "valve": float(valve)})  # the store keeps raw
    fused.append(kf.update(obs)["level"])

last = fused[-1]
print(f"last reading {readings[-1]:.2f}, truth {truth[-1]:.2f}, fused {last.mean:.2f} "
      f"± {last.sd:.2f} (twin's forecast {last.prior:.2f}, weight on the reading "
      f"{last.gain:.2f}, prior from {last.source!r})")
means = np.array([f.mean for f in fused])
error = {name: float(np.sqrt(np.mean((x[40:] - truth[40:]) ** 2)))
         for name, x in (("raw readings", readings), ("fused state", means))}
print("RMSE to the truth after 40 readings:", {k: round(v, 3) for k, v in error.items()})
twin.close()
