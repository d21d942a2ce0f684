"""Tabular Q-learning: the grid world, FrozenLake, Taxi with and without masks (fixed seeds)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from tensordict import TensorDict

from rladapt import AutoAdapt, load
from rladapt.agents import QLearning


def test_qlearning_reaches_065_on_the_grid():
    agent = QLearning(seed=0)
    env = AutoAdapt("rladapt/Grid-v0", agent)
    agent.learn(env, 10_000, progress=False, run_dir=False)
    assert agent.q.shape == (12, 4)
    result = agent.evaluate(env, episodes=100)
    assert result.mean >= 0.65, result  # the optimal policy is worth 0.745


def test_qlearning_solves_frozenlake_not_slippery():
    agent = QLearning(seed=0)
    env = AutoAdapt("FrozenLake-v1", agent, env_kwargs={"is_slippery": False})
    agent.learn(env, 3_000, progress=False, run_dir=False)
    assert agent.evaluate(env, episodes=10).mean == 1.0


def test_masks_make_taxi_learn_faster():
    means = {}
    for mask in (None, False):  # None: AutoAdapt finds Taxi's info['action_mask']
        agent = QLearning(seed=0, lr=0.5, exploration_initial_eps=0.1, exploration_final_eps=0.0)
        env = AutoAdapt("Taxi-v4", agent, mask=mask)
        agent.learn(env, 15_000, progress=False, run_dir=False)
        assert agent.use_masks == (mask is None)
        means[mask] = agent.evaluate(env, episodes=20).mean
    assert means[None] > means[False] + 100, means


def test_masks_are_respected_in_acting_exploring_and_the_target():
    agent = QLearning(seed=0, exploration_initial_eps=1.0, exploration_final_eps=1.0)
    env = AutoAdapt("Taxi-v4", agent)
    agent.setup(env.observation_space, env.action_space)
    agent.q.uniform_(-1, 1, generator=torch.Generator().manual_seed(0))
    rng = np.random.default_rng(0)
    masks = torch.as_tensor(rng.random((256, 6)) < 0.4)
    masks[:, 0] |= ~masks.any(-1)  # at least one valid action per row
    states = torch.as_tensor(rng.integers(0, 500, 256))
    for deterministic in (True, False):  # greedy, and epsilon = 1 (all exploration)
        td = TensorDict({"observation": states, "action_mask": masks}, batch_size=[256])
        action = agent.act_batch(td, deterministic=deterministic).get("action")
        assert masks.gather(1, action[:, None]).all()
    # Greedy is the best valid action.
    greedy = agent.q[states].masked_fill(~masks, -np.inf).argmax(-1)
    td = TensorDict({"observation": states, "action_mask": masks}, batch_size=[256])
    assert torch.equal(agent.act_batch(td, deterministic=True).get("action"), greedy)

    # The target's max runs over the valid next actions only.
    agent.q.zero_()
    agent.q[7] = torch.tensor([5.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    step = TensorDict({
        "observation": torch.tensor([3]), "action": torch.tensor([2]), "valid": torch.tensor([True]),
        "next": {"observation": torch.tensor([7]), "reward": torch.tensor([0.0]), "terminated": torch.tensor([False]),
                 "action_mask": torch.tensor([[False, True, True, True, True, True]])},
    }, batch_size=[1])
    agent.store(None, step.unsqueeze(0))  # a batch of one vector step
    assert agent.q[3, 2].item() == pytest.approx(agent.hp.lr * agent.hp.gamma * 1.0)


def test_greedy_ties_are_broken_at_random():
    agent = QLearning(seed=0)
    agent.setup(gym.spaces.Discrete(3), gym.spaces.Discrete(4))
    td = TensorDict({"observation": torch.zeros(400, dtype=torch.int64)}, batch_size=[400])
    actions = agent.act_batch(td, deterministic=True).get("action")
    assert set(actions.tolist()) == {0, 1, 2, 3}  # a zero table: every action is greedy


def test_qlearning_save_and_load_round_trip(tmp_path):
    agent = QLearning(seed=0)
    env = AutoAdapt("FrozenLake-v1", agent, env_kwargs={"is_slippery": False})
    agent.learn(env, 2_000, progress=False, run_dir=False)
    path = agent.save(tmp_path / "q.pt")
    loaded = load(path)
    assert isinstance(loaded, QLearning)
    assert torch.equal(loaded.q, agent.q)
    assert loaded.evaluate(env, episodes=3).mean == agent.evaluate(env, episodes=3).mean
