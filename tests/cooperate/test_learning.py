"""Learners: the textbook Q update, learning on the twin scored on the true system,
learning that goes on as the twin updates, Stable-Baselines3 through the Gymnasium env."""

from __future__ import annotations

import numpy as np
import pytest

from lmtwin.cooperate import (
    Discretiser,
    Objective,
    QLearner,
    Shaping,
    TwinParallelEnv,
    cost,
    explore,
    greedy,
    level,
    q_learners,
    train,
    train_sb3,
    twin_game,
)
from lmtwin.systems.cancer_control import CancerSystem
from tests.cooperate.test_cooperate import AGENTS, LEVELS, cancer_twin


def test_discretiser_bins_each_dimension():
    d = Discretiser([np.array([1.0, 2.0]), np.array([0.5])])
    assert d.n_states == 6
    assert d(np.array([0.0, 0.0])) == 0
    assert d(np.array([1.5, 0.7])) == 3
    assert d(np.array([9.0, 0.7])) == 5
    fitted = Discretiser.from_samples(np.arange(100.0)[:, None], bins=4)
    assert len(fitted.edges[0]) == 3


def test_q_update_is_the_textbook_one():
    d = Discretiser([np.array([0.5])])
    q = QLearner(d, n_actions=2, lr=0.5, gamma=0.9)
    q.q_[1] = [2.0, 1.0]
    q.learn(np.array([0.0]), 1, 1.0, np.array([1.0]), done=False)
    assert q.q_[0, 1] == pytest.approx(0.5 * (1.0 + 0.9 * 2.0))
    q.learn(np.array([0.0]), 0, 1.0, np.array([1.0]), done=True)
    assert q.q_[0, 0] == pytest.approx(0.5 * 1.0)  # no bootstrap after the last step


def cancer_objective() -> Objective:
    return Objective([
        level("v", scale=100.0),
        cost({"ca": 0.02}, agents=["chemo"], name="chemo toxicity"),
        cost({"ra": 0.05}, agents=["radio"], name="radio toxicity"),
    ])


def test_agents_trained_on_the_twin_treat_well_on_the_true_system():
    tw = cancer_twin(patients=12, steps=25)
    game = twin_game(tw, cancer_objective(), AGENTS, horizon=10, levels=LEVELS,
                     shaping=Shaping(1.0, 0.5))
    learners = q_learners(game, explore(game, episodes=5), bins=5, epsilon=0.5)
    result = train(TwinParallelEnv(game), learners, episodes=60)
    assert result.episodes == 60 and len(result.returns) == 60
    true = game.with_dynamics(CancerSystem())
    rng = np.random.default_rng(11)
    starts = [CancerSystem.start(rng) for _ in range(10)]
    learnt = np.mean([true.play(greedy(game, learners), s, seed=i).value
                      for i, s in enumerate(starts)])
    untreated = np.mean([true.play({}, s, seed=i).value for i, s in enumerate(starts)])
    assert learnt > untreated


def test_learning_goes_on_as_the_twin_updates():
    tw = cancer_twin(patients=10, steps=20)
    game = twin_game(tw, cancer_objective(), AGENTS, horizon=5, levels=LEVELS)
    env = TwinParallelEnv(game)
    learners = q_learners(game, explore(game, episodes=3), bins=4)
    train(env, learners, episodes=5)
    table = learners["chemo"].q_.copy()
    n, starts = len(tw.retriever), len(game.starts)
    for t, row in enumerate(cancer_twin(patients=1, steps=20).history()):
        tw.observe(row.values, episode="new", t=float(t))
    assert len(tw.retriever) > n
    assert len(game.starts) == starts + 1  # resets now draw the new episode's start too
    train(env, learners, episodes=5, seed=100)  # the same env, now on the updated twin
    assert learners["chemo"].episodes_ == 10
    assert not np.array_equal(table, learners["chemo"].q_)


@pytest.mark.parametrize("algorithm", ["PPO", "DQN"])
def test_stable_baselines3_learns_through_the_gymnasium_env(algorithm):
    tw = cancer_twin(patients=8, steps=20)
    env = tw.env(cancer_objective(), agents=AGENTS, horizon=8,
                 levels=LEVELS if algorithm == "DQN" else None)
    options = ({"n_steps": 32, "batch_size": 16, "n_epochs": 1} if algorithm == "PPO"
               else {"learning_starts": 16, "buffer_size": 200})
    model = train_sb3(env, algorithm, steps=64, **options)
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(action if algorithm == "PPO" else int(action))
    with pytest.raises(ValueError):
        train_sb3(env, "A2C")
