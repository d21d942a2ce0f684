"""The agent contract as types (rladapt.protocols, rladapt.collect.Collector): every registered
agent, bound to a real env it accepts, satisfies the protocols the loop, the collectors and
acting code annotate it with; every collector the loop can get satisfies the collector protocol."""

from __future__ import annotations

import gymnasium as gym
import pytest
from pettingzoo.classic import tictactoe_v3

from rladapt import AutoAdapt
from rladapt.collect import Collector, EnvSource, make_collector
from rladapt.protocols import ActingAgent, CollectingAgent, LearningAgent, SelfPlayAgent
from rladapt.registry import agent_names, get_agent
from rladapt.search.binding import GameBinding
from rladapt.spec import bind_agent


def _env_for(agent) -> gym.Env:
    """A real env the agent accepts: a board game for the search agents, FrozenLake for tabular
    agents, Pendulum for continuous-only agents, CartPole for the rest."""
    if isinstance(agent, GameBinding):
        return AutoAdapt(tictactoe_v3.env(), agent, opponent="random")
    if agent.spec.observations == {"index"}:
        return AutoAdapt("FrozenLake-v1", agent)
    if "discrete" not in agent.spec.actions:
        return AutoAdapt("Pendulum-v1", agent)
    return AutoAdapt("CartPole-v1", agent)


def _bound(name: str):
    agent = get_agent(name)(seed=0)
    env = _env_for(agent)
    bind_agent(agent, env.observation_space, env.action_space, env=env)
    return agent, env


@pytest.mark.parametrize("name", agent_names())
def test_every_registered_agent_satisfies_the_learning_contract(name):
    agent, _ = _bound(name)
    for protocol in (CollectingAgent, ActingAgent, LearningAgent):
        assert isinstance(agent, protocol), f"{name} is not a {protocol.__name__}"


def test_search_agents_that_play_whole_games_satisfy_the_self_play_contract():
    for name in ("alphazero", "muzero"):
        agent, _ = _bound(name)
        assert isinstance(agent, SelfPlayAgent)
    agent, _ = _bound("ppo")
    assert not isinstance(agent, SelfPlayAgent)  # the protocol tells the flows apart


@pytest.mark.parametrize("name, workers, kind", [("ppo", 0, "VectorCollector"), ("dqn", 1, "WorkerCollector"),
                                                  ("a3c", 2, "A3CCollector"), ("alphazero", 0, "SelfPlayCollector")])
def test_each_collector_the_loop_can_get_satisfies_the_collector_protocol(name, workers, kind):
    agent, env = _bound(name)
    collector = make_collector(agent, EnvSource(env, agent), num_envs=2, workers=workers)
    try:
        assert type(collector).__name__ == kind
        assert isinstance(collector, Collector), kind
    finally:
        collector.close()
