"""Linked twins: declared links, refused cycles, a disturbance propagating downstream."""

from __future__ import annotations

import numpy as np
import pytest

from lmtwin import LocalRidge, Persistence, Twin, Variable
from lmtwin.cooperate import Link, LinkedTwins
from lmtwin.errors import CyclicLink, InvalidValue, UnknownVariable


def tank_twin(name: str, inflow_role: str) -> Twin:
    """A tank: level' = level + 0.5 * inflow - 0.1 * level (inflow a context or action);
    its outflow is 0.1 * level."""
    twin = Twin(name, variables=[
        Variable("level", "state", "cm", "water level", lower=0.0),
        Variable("inflow", inflow_role, "l/s", "water coming in", lower=0.0, upper=50.0),
    ], predictors=[Persistence(), LocalRidge()])
    rng = np.random.default_rng(len(name))
    for e in range(8):
        level = float(rng.uniform(0, 40))
        for t in range(20):
            inflow = float(rng.uniform(0, 10))
            twin.observe({"level": level, "inflow": inflow}, episode=f"e{e}", t=float(t))
            level = level + 0.5 * inflow - 0.1 * level
    return twin


@pytest.fixture(scope="module")
def tanks() -> dict[str, Twin]:
    return {"up": tank_twin("up", "action"), "down": tank_twin("down", "context"),
            "third": tank_twin("third", "context")}


def test_links_are_checked(tanks):
    with pytest.raises(UnknownVariable):
        LinkedTwins(tanks, [Link("up", "flow", "down", "inflow")])
    with pytest.raises(UnknownVariable):
        LinkedTwins(tanks, [Link("nowhere", "level", "down", "inflow")])
    with pytest.raises(InvalidValue):  # the target must be a context
        LinkedTwins(tanks, [Link("down", "level", "up", "inflow")])
    with pytest.raises(InvalidValue):  # the source must be a state
        LinkedTwins(tanks, [Link("down", "inflow", "third", "inflow")])
    with pytest.raises(InvalidValue):
        Link("up", "level", "down", "inflow", delay=-1)


def test_a_cycle_without_delay_is_refused_and_a_delay_breaks_it(tanks):
    cycle = [Link("down", "level", "third", "inflow"), Link("third", "level", "down", "inflow")]
    with pytest.raises(CyclicLink) as err:
        LinkedTwins(tanks, cycle)
    assert set(err.value.cycle) == {"down", "third"}
    with pytest.raises(CyclicLink):
        LinkedTwins(tanks, [Link("down", "level", "down", "inflow")])
    ok = LinkedTwins(tanks, [cycle[0], Link("third", "level", "down", "inflow", delay=1)])
    assert ok.order.index("down") < ok.order.index("third")


def test_a_disturbance_propagates_downstream_in_a_joint_rollout(tanks):
    # a tank's outflow, 0.2 x its level, is the next tank's inflow
    linked = LinkedTwins(tanks, [Link("up", "level", "down", "inflow", delay=1, gain=0.2),
                                 Link("down", "level", "third", "inflow", delay=0, gain=0.2)])
    starts = {"up": {"level": 10.0}, "down": {"level": 10.0, "inflow": 0.0},
              "third": {"level": 10.0, "inflow": 0.0}}
    plan = {"up": [{"inflow": 2.0}] * 12}

    def shock(t: int, name: str, state: dict[str, float]) -> None:
        if t == 3 and name == "up":
            state["level"] += 30.0  # a surge upstream

    calm = linked.rollout(starts, plan, horizon=12, seed=0)
    hit = linked.rollout(starts, plan, horizon=12, seed=0, shock=shock)
    up_gap = hit.series("up", "level") - calm.series("up", "level")
    down_gap = hit.series("down", "level") - calm.series("down", "level")
    third_gap = hit.series("third", "level") - calm.series("third", "level")
    assert np.allclose(up_gap[:3], 0) and up_gap[3] == pytest.approx(30.0)
    # "down" sees the surge one step later (delay 1); "third" sees "down"'s new level in
    # the same step (delay 0)
    assert np.allclose(down_gap[:4], 0) and down_gap[4] > 1.0
    assert np.allclose(third_gap[:4], 0) and third_gap[4] > 0.1
    assert third_gap[6] > third_gap[4]  # and it keeps coming
    # the links set the contexts: down's inflow at t is 0.2 x up's level at t
    assert hit.series("down", "inflow")[5] == pytest.approx(0.2 * hit.series("up", "level")[5])
    assert hit.series("third", "inflow")[5] == pytest.approx(
        0.2 * hit.series("down", "level")[6])
