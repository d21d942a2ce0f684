"""Search on single-player restorable envs (issue 19): MCTS acts on CartPole, Pendulum (discretised)
and Atari by searching in the env itself from the state behind each observation, and the env goes
on exactly as if no search had run."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from rladapt import AutoAdapt
from rladapt.agents import MCTS, AlphaZero, RandomAgent
from rladapt.search.game import ENV_GAME, EnvGame, GameError, game_for
from rladapt.search.tree import search
from rladapt.spec import bind_agent


def _bound(agent, env):
    bind_agent(agent, env.observation_space, env.action_space, env.family, env=env)
    return agent


def test_mcts_balances_cartpole_far_above_random_on_every_seed():
    # 16 simulations of at most 100 random moves per step; 100-step episodes (~1.4 s each).
    # Measured: 100 (the cap) on seeds 0-4; a random policy: about 22.
    for seed in range(3):
        agent = MCTS(simulations=16, seed=seed)
        result = agent.evaluate(gym.make("CartPole-v1", max_episode_steps=100), episodes=1, seed=seed)
        assert result.returns[0] >= 90, (seed, result.returns)
    assert agent.config.game == ENV_GAME  # what checkpoints and workers record: the env the agent acts on
    assert RandomAgent(seed=0).evaluate("CartPole-v1", episodes=10, seed=0).mean < 40


def test_search_leaves_the_live_env_where_it_was():
    """The same seed and actions give the same episode, whether or not a search ran before each
    step: the search steps the env and restores it (episode statistics, time limit and RNG too)."""
    actions = [0, 1, 1, 0, 1, 0, 0, 1] * 4
    searched = AutoAdapt(gym.make("CartPole-v1", max_episode_steps=20), MCTS(simulations=8, seed=0))
    agent = _bound(MCTS(simulations=8, seed=0), searched)
    plain = AutoAdapt(gym.make("CartPole-v1", max_episode_steps=20), MCTS(simulations=8, seed=0))
    obs_a, _ = searched.reset(seed=3)
    obs_b, _ = plain.reset(seed=3)
    for action in actions:
        agent.act(obs_a)  # a search of 8 simulations, each stepping the env and restoring it
        obs_a, reward_a, term_a, trunc_a, info_a = searched.step(action)
        obs_b, reward_b, term_b, trunc_b, info_b = plain.step(action)
        np.testing.assert_array_equal(obs_a, obs_b)
        assert (reward_a, term_a, trunc_a) == (reward_b, term_b, trunc_b)
        if term_a or trunc_a:
            assert info_a["episode"]["r"] == info_b["episode"]["r"] and info_a["episode"]["l"] == info_b["episode"]["l"]
            break
    else:
        pytest.fail("the episode should end within 20 steps")


def test_single_player_search_scales_returns_and_never_solves():
    """A one-player game's outcome is a return of any size, not a win: the tree never marks an
    episode's end as solved (a 'proved win' would stop the search at the first terminal)."""
    env = AutoAdapt(gym.make("CartPole-v1", max_episode_steps=30), MCTS())
    env.reset(seed=0)
    game = game_for(env)
    assert isinstance(game, EnvGame) and game.num_players == 1
    obs, _ = env.reset(seed=0)
    position = game.from_observation(obs)
    root = search(position, 64, "uct", 1.4, playout_moves=10)
    assert root.proven is None and sum(root.visits) == 64
    assert all(child is None or child.proven is None for child in root.children)


def test_mcts_swings_up_a_discretised_pendulum():
    # Pendulum's torque through DiscretizeAction (7 bins); measured over 200 steps, seed 0:
    # -252 with 32 simulations of 30 moves, -125 with 100; a random policy -972 to -1508.
    env = AutoAdapt("Pendulum-v1", MCTS(simulations=32, seed=0, playout_moves=30))
    assert "Discrete(7)" in env.plan.step("discretize_action").change
    agent = MCTS(simulations=32, seed=0, playout_moves=30)
    result = agent.evaluate(gym.make("Pendulum-v1", max_episode_steps=100), episodes=1, seed=0)
    random = RandomAgent(seed=0).evaluate(gym.make("Pendulum-v1", max_episode_steps=100), episodes=5, seed=0)
    assert result.returns[0] > random.mean + 200, (result.returns, random.returns)


def test_mcts_searches_atari_through_ale_clone_state_without_changing_the_frames():
    import ale_py

    gym.register_envs(ale_py)
    # Deterministic ALE (no sticky actions): with repeat_action_probability=0.25 the frames after a
    # restored search drift within ~10 steps even with the ALE's own cloneState(include_rng=True) /
    # restoreState (something of the emulator is not in the state); noted in issue 19.
    kwargs = {"repeat_action_probability": 0.0}
    searched = AutoAdapt("ALE/Breakout-v5", MCTS(simulations=3, seed=0, playout_moves=5), env_kwargs=kwargs)
    assert "cloneState" in searched.plan.step("env_state").change
    agent = _bound(MCTS(simulations=3, seed=0, playout_moves=5), searched)
    plain = AutoAdapt("ALE/Breakout-v5", MCTS(simulations=3, seed=0), env_kwargs=kwargs)
    obs_a, _ = searched.reset(seed=0)
    obs_b, _ = plain.reset(seed=0)
    for step in range(12):
        move = agent.act(obs_a)
        assert 0 <= move < searched.action_space.n
        action = [1, 2, 3][step % 3]  # fire, right, left
        obs_a, reward_a, *_ = searched.step(action)
        obs_b, reward_b, *_ = plain.step(action)
        np.testing.assert_array_equal(obs_a, obs_b)
        assert reward_a == reward_b


def test_alphazero_on_a_single_player_env_names_the_agents_that_fit():
    with pytest.raises(GameError, match="MuZero .* or MCTS"):
        AlphaZero(seed=0).learn("CartPole-v1", 200, progress=False, run_dir=False)


def test_a_search_observation_from_no_adapted_env_is_refused_with_the_reason():
    env = AutoAdapt(gym.make("CartPole-v1"), MCTS())
    agent = _bound(MCTS(simulations=4), env)
    with pytest.raises(GameError, match="no adapted env of this process"):
        agent.act(np.array([9.0, 9.0, 9.0, 9.0], dtype=np.float32))
