"""Cooperating agents on the twin: environments, objectives with dynamic weights, reward
shaping, Shapley credit, learners and linked twins (extra ``agents`` for Gymnasium,
PettingZoo and Stable-Baselines3).

    twin -> TwinDynamics -> Game (agents own actions; objective; shaping)
         -> TwinEnv (Gymnasium) | TwinParallelEnv (PettingZoo) -> learners
         -> credit (Shapley over coalitions) ; the same Game on the true system scores them
"""

from lmtwin.cooperate.credit import (
    CoalitionValue,
    Credit,
    credit,
    exact_shapley,
    sampled_shapley,
    shapley,
)
from lmtwin.cooperate.dynamics import Dynamics, TwinDynamics, predict_next
from lmtwin.cooperate.env import TwinEnv, TwinParallelEnv, episode_starts, twin_game
from lmtwin.cooperate.game import Episode, Game, Outcome, Policy, check_agents
from lmtwin.cooperate.learners import (
    Discretiser,
    QLearner,
    Training,
    explore,
    greedy,
    q_learners,
    train,
    train_sb3,
)
from lmtwin.cooperate.linked import JointRollout, Link, LinkedTwins
from lmtwin.cooperate.objective import (
    Crisis,
    Evaluation,
    Objective,
    Step,
    Term,
    Weights,
    budget,
    check_weights,
    cost,
    level,
    limit,
    uncertainty,
)
from lmtwin.cooperate.shaping import INDEPENDENT, Shaping

__all__ = [
    "INDEPENDENT",
    "CoalitionValue",
    "Credit",
    "Crisis",
    "Discretiser",
    "Dynamics",
    "Episode",
    "Evaluation",
    "Game",
    "JointRollout",
    "Link",
    "LinkedTwins",
    "Objective",
    "Outcome",
    "Policy",
    "QLearner",
    "Shaping",
    "Step",
    "Term",
    "Training",
    "TwinDynamics",
    "TwinEnv",
    "TwinParallelEnv",
    "Weights",
    "budget",
    "check_agents",
    "check_weights",
    "cost",
    "credit",
    "episode_starts",
    "exact_shapley",
    "explore",
    "greedy",
    "level",
    "limit",
    "predict_next",
    "q_learners",
    "sampled_shapley",
    "shapley",
    "train",
    "train_sb3",
    "twin_game",
    "uncertainty",
]
