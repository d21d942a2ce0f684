"""The agents. Each declares what it accepts (``spec``) and its settings (``Config``)."""

from rladapt.agents.a2c import A2C
from rladapt.agents.base import Agent, AgentConfig, EvalResult, OffPolicyAgent, OnPolicyAgent
from rladapt.agents.ppo import PPO
from rladapt.agents.random import RandomAgent

__all__ = ["Agent", "AgentConfig", "EvalResult", "OnPolicyAgent", "OffPolicyAgent", "PPO", "A2C", "RandomAgent"]
