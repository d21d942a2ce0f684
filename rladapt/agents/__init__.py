"""The agents. Each declares what it accepts (``spec``) and its settings (``Config``)."""

from rladapt.agents.a2c import A2C
from rladapt.agents.base import Agent, AgentConfig, EvalResult, OffPolicyAgent, OnPolicyAgent
from rladapt.agents.dqn import DQN
from rladapt.agents.ppo import PPO
from rladapt.agents.qlearning import QLearning
from rladapt.agents.random import RandomAgent
from rladapt.agents.sac import SAC

__all__ = [
    "Agent", "AgentConfig", "EvalResult", "OnPolicyAgent", "OffPolicyAgent",
    "PPO", "A2C", "DQN", "SAC", "QLearning", "RandomAgent",
]
