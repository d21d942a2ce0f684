"""The agents. Each declares what it accepts (``spec``) and its settings (``Config``).

Write your own on :class:`Agent` (learn from every batch), :class:`OnPolicyAgent` (rollouts with
advantages) or :class:`OffPolicyAgent` (replay); the mask helpers of :mod:`rladapt.agents.masks`
serve every agent.
"""

from rladapt.agents.a2c import A2C
from rladapt.agents.a3c import A3C
from rladapt.agents.alphazero import AlphaZero
from rladapt.agents.base import Agent, AgentConfig
from rladapt.agents.dqn import C51, DQN, QRDQN, Rainbow
from rladapt.agents.dreamer import Dreamer
from rladapt.agents.impala import IMPALA
from rladapt.agents.mcts import MCTS
from rladapt.agents.muzero import MuZero
from rladapt.agents.off_policy import (
    EpsilonGreedyAgent,
    OffPolicyAgent,
    OffPolicyConfig,
    ReplayActorCritic,
    ReplayActorCriticConfig,
)
from rladapt.agents.on_policy import ActorCriticConfig, OnPolicyAgent, OnPolicyConfig
from rladapt.agents.ppo import PPO
from rladapt.agents.qlearning import QLearning
from rladapt.agents.random import RandomAgent
from rladapt.agents.sac import SAC
from rladapt.agents.td3 import DDPG, TD3
from rladapt.types import ActionValues, EvalResult

__all__ = [
    "Agent", "AgentConfig", "ActionValues", "EvalResult", "OnPolicyAgent", "OnPolicyConfig", "ActorCriticConfig",
    "OffPolicyAgent", "OffPolicyConfig", "EpsilonGreedyAgent", "ReplayActorCritic", "ReplayActorCriticConfig",
    "PPO", "A2C", "DQN", "SAC", "QLearning", "RandomAgent",
    "A3C", "IMPALA", "TD3", "DDPG", "QRDQN", "C51", "Rainbow", "MCTS", "AlphaZero",
    "MuZero", "Dreamer",
]
