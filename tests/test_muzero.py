"""MuZero: its unrolled targets, the tree's min-max scaling and rewards on edges, a short
learning run, and checkpoints that resume a run exactly."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from rladapt import AutoAdapt, load
from rladapt.agents import MuZero
from rladapt.agents.nets import ConvEncoder
from rladapt.cli import main
from rladapt.agents.muzero import scalar_to_support, support_to_scalar, unroll_targets
from rladapt.search import GameEnv, RandomPlayer, TicTacToeGame, play_match
from rladapt.search.tree import LatentNode, MinMaxStats, _select_puct, best_move, search, search_model

GAME = {
    "reward": np.array([1.0, 0.0, 2.0], dtype=np.float32),
    "root_value": np.array([5.0, 6.0, 7.0], dtype=np.float32),
    "search_policy": np.array([[1.0, 0.0], [0.25, 0.75], [0.0, 1.0]], dtype=np.float32),
    "action": np.array([0, 1, 1]),
}


def test_unroll_targets_equal_a_hand_computation_with_bootstrap_discount_and_padding():
    out = unroll_targets(GAME, 0, 3, 2, 0.9, False, np.random.default_rng(0))
    # z_0 = r0 + 0.9 r1 + 0.9^2 v2; z_1 = r1 + 0.9 r2 (the game ends before the bootstrap); z_2 = r2
    np.testing.assert_allclose(out["value"], [1 + 0 + 0.81 * 7, 0 + 0.9 * 2, 2.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(out["reward"], [0.0, 1.0, 0.0, 2.0])  # the reward of the move into each position
    np.testing.assert_allclose(out["policy"][:3], GAME["search_policy"])
    np.testing.assert_array_equal(out["policy_mask"], [1, 1, 1, 0])
    np.testing.assert_array_equal(out["action"], [0, 1, 1])

    late = unroll_targets(GAME, 1, 3, 2, 0.9, False, np.random.default_rng(0))
    np.testing.assert_allclose(late["value"], [1.8, 2.0, 0.0, 0.0], rtol=1e-6)  # zero past the end
    np.testing.assert_allclose(late["reward"], [0.0, 0.0, 2.0, 0.0])
    np.testing.assert_array_equal(late["policy_mask"], [1, 1, 0, 0])
    np.testing.assert_array_equal(late["policy"][2:], 0.0)
    assert late["action"][:2].tolist() == [1, 1] and 0 <= late["action"][2] < 2  # past the end: any action


def test_unroll_targets_of_two_players_take_the_sign_of_the_player_to_move():
    out = unroll_targets(GAME, 0, 1, 2, 1.0, True, np.random.default_rng(0))
    # z_0 = r0 - r1 + v2 (v2 is the same player's again); z_1 = r1 - r2
    np.testing.assert_allclose(out["value"], [1 - 0 + 7, 0 - 2])
    monte_carlo = unroll_targets(GAME, 0, 0, 100, 1.0, True, np.random.default_rng(0))
    np.testing.assert_allclose(monte_carlo["value"], [1 - 0 + 2])


def test_two_hot_support_round_trips_values():
    values = torch.tensor([-300.0, -1.0, 0.0, 0.4, 1.0, 37.5, 300.0])
    two_hot = scalar_to_support(values, 20)
    assert torch.allclose(two_hot.sum(-1), torch.ones(len(values)))
    assert torch.allclose(support_to_scalar(two_hot.clamp_min(1e-12).log(), 20), values, rtol=1e-3, atol=1e-3)


def _node(value_sum: list[float], prior: list[float]) -> LatentNode:
    node = LatentNode(None, [0, 1], np.asarray(prior))
    node.visits, node.value_sum, node.total = [1, 1], value_sum, 2
    return node


def test_min_max_scaling_lets_the_prior_decide_between_returns_close_for_their_range():
    node = _node([101.0, 100.0], [0.1, 0.9])
    assert _select_puct(node, 1.25) == 0  # raw returns: a difference of 1 outweighs any prior
    bounds = MinMaxStats()
    for value in (0.0, 200.0, 101.0, 100.0):
        bounds.update(value)
    assert bounds.normalize(100.0) == pytest.approx(0.5)
    assert _select_puct(node, 1.25, bounds) == 1  # scaled to [0, 1]: 0.505 vs 0.5, the prior decides


def test_alphazero_puct_with_min_max_scaling_still_takes_a_win_in_one():
    game = TicTacToeGame()
    for move in (0, 3, 1, 4):  # X on 0 and 1, O on 3 and 4: X to move wins at 2
        game.step(move)
    uniform = lambda g: (np.full(9, 1 / 9), np.zeros(2))  # noqa: E731
    root = search(game, 40, "puct", 1.5, evaluate=uniform, scale_values=True)
    assert best_move(root) == 2 and game.legal_actions().sum() == 5  # the game is left at the root


def test_search_in_a_model_follows_the_rewards_on_its_edges():
    def dynamics(state, action):  # move 1 pays 1, move 0 nothing; the values know nothing
        return state, float(action == 1), np.full(2, 0.5), 0.0

    root = search_model(None, np.full(2, 0.5), dynamics, 50, discount=0.9)
    assert root.visits[1] > root.visits[0]
    assert root.reward == [0.0, 1.0]
    masked = search_model(None, np.full(2, 0.5), dynamics, 10, allowed=np.array([True, False]))
    assert masked.actions == [0]
    with pytest.raises(ValueError, match="allows no move"):
        search_model(None, np.full(2, 0.5), dynamics, 10, allowed=np.array([False, False]))


def _net_wins(agent: MuZero) -> int:
    """Wins minus losses against random play over 20 games in each seat."""
    results = [play_match(TicTacToeGame(), agent.search_player(), RandomPlayer(1), 20, seat=seat, seed=0) for seat in (0, 1)]
    return sum(r.wins - r.losses for r in results)


def test_muzero_learns_tictactoe_against_random_play_in_1500_positions():
    untrained = MuZero(seed=0, simulations=16)
    untrained.learn("rladapt/TicTacToe-v0", 1, progress=False)
    agent = MuZero(seed=0, simulations=16, games_per_iteration=8, gradient_steps=16, batch_size=64)
    agent.learn("rladapt/TicTacToe-v0", 1500, progress=False)
    before, after = _net_wins(untrained), _net_wins(agent)
    assert after >= before + 15 and after > 0, (before, after)  # seed 0: -13 before, +15 after


def test_muzero_resumed_from_a_training_state_checkpoint_ends_as_the_straight_run(tmp_path):
    """Self-play games start from the opening, so a run resumed from its checkpoint (replay,
    priorities, optimizer, RNGs) is the straight run exactly: the same weights at the end."""
    settings = dict(seed=3, simulations=4, games_per_iteration=2, gradient_steps=2, batch_size=8)
    total = 200
    straight = MuZero(**settings).learn("rladapt/TicTacToe-v0", total, progress=False, run_dir=tmp_path / "straight")
    crashed = MuZero(**settings)
    crashed.learn("rladapt/TicTacToe-v0", total, progress=False, run_dir=tmp_path / "run", checkpoint_every=100,
                  callbacks=[lambda agent, metrics: False if agent.num_timesteps >= 130 else None])
    resumed = load(tmp_path / "run" / "checkpoint.pt")
    assert resumed.unfinished_run is not None and 100 <= resumed.num_timesteps < crashed.num_timesteps
    assert 0 < len(resumed.replay) == resumed.num_timesteps
    resumed.learn("rladapt/TicTacToe-v0", total - resumed.num_timesteps, progress=False)
    assert resumed.num_timesteps == straight.num_timesteps and resumed.training_steps == straight.training_steps
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_muzero_plays_pettingzoo_connect_four_in_worker_processes_with_board_game_defaults(tmp_path):
    from pettingzoo.classic import connect_four_v3

    agent = MuZero(seed=0, simulations=4, games_per_iteration=4, gradient_steps=2, batch_size=16)
    env = AutoAdapt(GameEnv.pettingzoo(connect_four_v3.env()), agent)
    agent.learn(env, 100, workers=2, progress=False, run_dir=tmp_path / "run")
    assert agent.hp.game == "connect_four_v3" and agent.num_episodes >= 4
    assert (agent.hp.discount, agent.hp.td_steps, agent.hp.temperature_moves) == (1.0, 1 << 30, 4)
    rows = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert rows and "train/reward_loss" in rows[-1]
    obs, info = env.reset(seed=0)
    assert info["action_mask"][agent.act(obs, info["action_mask"])]


def test_muzero_reads_image_observations_through_a_cnn():
    env = gym.wrappers.AddRenderObservation(gym.make("CartPole-v1", render_mode="rgb_array"))
    agent = MuZero(seed=0, simulations=4, games_per_iteration=1, gradient_steps=2, batch_size=8)
    agent.learn(AutoAdapt(env, agent), 30, progress=False)
    assert isinstance(agent.net.representation[0], ConvEncoder) and agent.training_steps > 0
    assert agent.hp.discount == 0.997 and agent.hp.game is None


def test_muzero_says_single_player_envs_play_in_the_learners_process():
    with pytest.raises(ValueError, match="workers=0"):
        MuZero(seed=0).learn("CartPole-v1", 10, workers=2, progress=False)


def test_cli_trains_muzero_by_its_lowercase_name(tmp_path):
    assert main(["train", "rladapt/TicTacToe-v0", "--agent", "muzero", "--steps", "40", "--seed", "0", "--no-progress",
                 "--run-dir", str(tmp_path / "run"), "--set", "simulations=4", "--set", "batch_size=8"]) == 0
    assert isinstance(load(tmp_path / "run" / "agent.pt"), MuZero)
