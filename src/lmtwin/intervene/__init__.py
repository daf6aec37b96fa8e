"""Intervene: batched rollouts, what-if, optimal actions and time to threshold.

    twin + state + plan(s) -> rollout (N paths x H steps, batched, calibrated noise,
                              common random numbers)
                           -> compare (what-if) | optimise / MPC (CMA-ES) | time_to
    twin.observe -> each scored reading -> Monitor: anomaly and drift alerts (alerts)
"""

from lmtwin.intervene.alerts import Alert, DriftDetector, Monitor
from lmtwin.intervene.optimise import MPC, OptimalPlan, optimise
from lmtwin.intervene.plans import MAX_HORIZON, MAX_PATHS, Constraints, Objective
from lmtwin.intervene.rollout import Rollout, rollout, uniforms
from lmtwin.intervene.timeto import TimeTo, time_to
from lmtwin.intervene.whatif import Comparison, Outcome, compare, simulate

__all__ = [
    "MAX_HORIZON",
    "MAX_PATHS",
    "MPC",
    "Alert",
    "Comparison",
    "Constraints",
    "DriftDetector",
    "Monitor",
    "Objective",
    "OptimalPlan",
    "Outcome",
    "Rollout",
    "TimeTo",
    "compare",
    "optimise",
    "rollout",
    "simulate",
    "time_to",
    "uniforms",
]
