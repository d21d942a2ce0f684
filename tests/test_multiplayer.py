"""Turn-based games: PettingZoo AEC games and envs that say whose turn it is get one learner seat,
opponents (random, human, self, snapshot pools, agents, checkpoints) play the others, seats swap
between episodes, rewards are the learner's own, self-play trains every agent (in-process and in
worker processes), evaluation reports win/draw/loss per seat, and a person plays at the terminal."""

from __future__ import annotations

import io
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env
from pettingzoo.classic import connect_four_v3, go_v5, tictactoe_v3

import rladapt.envs  # noqa: F401  (registers rladapt/TicTacToe-v0)
from rladapt import AdaptError, AutoAdapt
from rladapt.agents import A2C, DQN, PPO
from rladapt.checkpoint import CheckpointOpponent
from rladapt.opponents import AgentOpponent, Opponent, SnapshotPool, opponent_seats


class LowestLegal(Opponent):
    """A scripted player: always the legal move with the lowest number (0 without masks)."""

    name = "lowest"

    def act(self, obs: Any, mask: np.ndarray | None, seats: gym.Env) -> int:
        return 0 if mask is None else int(np.flatnonzero(mask)[0])


class Nim(gym.Env):
    """SRL-style two-player Nim: 7 sticks, take 1 to 3, whoever takes the last one wins.
    ``next_player`` says who moves; ``step`` returns one reward per player (a list)."""

    def __init__(self) -> None:
        self.observation_space = spaces.Box(0, 7, (1,), np.float32)
        self.action_space = spaces.Discrete(3)  # take action + 1 sticks
        self.sticks, self.next_player = 7, 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.sticks, self.next_player = 7, 0
        return np.array([self.sticks], np.float32), {}

    def step(self, action: int) -> tuple[np.ndarray, list[float], bool, bool, dict]:
        self.sticks = max(0, self.sticks - (int(action) + 1))
        rewards = [0.0, 0.0]
        if self.sticks == 0:
            rewards[self.next_player], rewards[1 - self.next_player] = 1.0, -1.0
        else:
            self.next_player = 1 - self.next_player
        return np.array([self.sticks], np.float32), rewards, self.sticks == 0, False, {}


class ToPlayNim(gym.Env):
    """The same Nim saying whose turn it is in ``info["to_play"]``, with one scalar reward: the mover's."""

    def __init__(self) -> None:
        self.observation_space = spaces.Box(0, 7, (1,), np.float32)
        self.action_space = spaces.Discrete(3)
        self.sticks, self.turn = 7, 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.sticks, self.turn = 7, 0
        return np.array([self.sticks], np.float32), {"to_play": self.turn}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.sticks = max(0, self.sticks - (int(action) + 1))
        won = self.sticks == 0
        if not won:
            self.turn = 1 - self.turn
        return np.array([self.sticks], np.float32), 1.0 if won else 0.0, won, False, {"to_play": self.turn}


@pytest.mark.parametrize("make", [tictactoe_v3.env, connect_four_v3.env, lambda: go_v5.env(board_size=5)],
                         ids=["tictactoe_v3", "connect_four_v3", "go_v5"])
def test_pettingzoo_board_games_adapt_and_pass_check_env(make: Any) -> None:
    env = AutoAdapt(make(), PPO(seed=0))
    assert env.plan.rules[:2] == ["pettingzoo_turns", "enforce_spaces"]
    assert env.plan.rules[-2:] == ["opponent_seats", "episode_statistics"]
    assert env.plan.step("action_mask").params == {"source": "observation"}  # obs["action_mask"] -> info["action_mask"]
    assert "opponents: random" in str(env.plan) and "seats 0 and 1 in turn" in str(env.plan)
    assert env.family == "board_game"
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert info["action_mask"].dtype == bool and env.observation_space.contains(obs)


def test_seats_swap_between_episodes_so_the_learner_moves_first_and_second() -> None:
    env = AutoAdapt(tictactoe_v3.env(), PPO(seed=0))
    seats, marks = [], []
    obs, info = env.reset(seed=3)
    for _ in range(4):
        seats.append(info["seat"])
        marks.append(int(obs.sum()))  # marks on the board when the learner first moves
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(int(np.flatnonzero(info["action_mask"])[0]))
            done = terminated or truncated
        obs, info = env.reset()
    assert seats == [0, 1, 0, 1]
    assert marks == [0, 1, 0, 1]  # second seat: the opponent has moved already
    fixed = AutoAdapt(tictactoe_v3.env(), PPO(seed=0), seat=1)
    assert [fixed.reset(seed=s)[1]["seat"] for s in range(3)] == [1, 1, 1]


def test_rewards_and_outcomes_are_the_learners_own() -> None:
    # The scripted opponent (seat 0) plays squares 0, 1, 2, a line; the learner (seat 1) plays 8 and 7 and loses.
    env = AutoAdapt(tictactoe_v3.env(), PPO(seed=0), opponent=LowestLegal(), seat=1)
    env.reset(seed=0)
    _, reward, terminated, _, _ = env.step(8)
    assert (reward, terminated) == (0.0, False)
    _, reward, terminated, _, info = env.step(7)
    assert (reward, terminated, info["outcome"], info["episode"]["r"]) == (-1.0, True, "loss", -1.0)
    # As seat 0 the learner completes 6, 7, 8 before the opponent's 0, 1, 2.
    env = AutoAdapt(tictactoe_v3.env(), PPO(seed=0), opponent=LowestLegal(), seat=0)
    env.reset(seed=0)
    rewards = [env.step(a)[1] for a in (6, 7)]
    _, reward, terminated, _, info = env.step(8)
    assert rewards == [0.0, 0.0] and (reward, terminated, info["outcome"]) == (1.0, True, "win")


def test_srl_next_player_env_with_per_player_rewards_gets_a_seat() -> None:
    env = AutoAdapt(Nim(), PPO(seed=0), opponent=LowestLegal(), seat=1)
    assert env.plan.step("next_player_turns") is not None
    env.reset(seed=0)  # the opponent took 1: 6 left
    obs, reward, terminated, _, info = env.step(2)  # take 3: 3 left; the opponent takes 1: 2 left
    assert obs.tolist() == [2.0] and not terminated
    _, reward, terminated, _, info = env.step(1)  # take the last 2
    assert (reward, terminated, info["outcome"]) == (1.0, True, "win")


def test_to_play_env_with_a_scalar_reward_is_zero_sum_from_the_learners_side() -> None:
    env = AutoAdapt(ToPlayNim(), PPO(seed=0), opponent=LowestLegal(), seat=0)
    assert env.plan.step("turn_info") is not None and "zero-sum" in str(env.plan)
    env.reset(seed=0)
    assert env.step(2)[1] == 0.0  # 7 -> 4, the opponent takes 1: 3
    _, reward, terminated, _, info = env.step(1)  # 3 -> 1, the opponent takes the last one
    assert (reward, terminated, info["outcome"], info["episode"]["r"]) == (-1.0, True, "loss", -1.0)


def test_rladapt_tictactoe_plays_two_seats_without_its_fixed_opponent() -> None:
    env = AutoAdapt(gym.make("rladapt/TicTacToe-v0", opponent=None), DQN(seed=0), opponent=LowestLegal(), seat=1)
    assert env.plan.step("turn_info") is not None and env.plan.step("opponent_seats") is not None
    obs, info = env.reset(seed=0)
    assert obs.tolist() == [-1, 0, 0, 0, 0, 0, 0, 0, 0]  # the opponent's X in the corner, from the learner's side
    for cell in (3, 4):
        obs, reward, terminated, _, info = env.step(cell)
    assert (reward, terminated, info["outcome"]) == (-1.0, True, "loss")  # X completed 0, 1, 2
    check_env(AutoAdapt(gym.make("rladapt/TicTacToe-v0", opponent=None), DQN(seed=0)), skip_render_check=True)
    # Its fixed-opponent mode is unchanged: no seats.
    assert AutoAdapt(gym.make("rladapt/TicTacToe-v0"), DQN(seed=0)).plan.step("opponent_seats") is None


def test_self_play_dqn_beats_random_from_both_seats_without_illegal_moves() -> None:
    # DQN against a pool of its own past versions (never against random) for 40k steps: ~35 s of CPU.
    agent = DQN(seed=0)
    env = AutoAdapt(tictactoe_v3.env(), agent, opponent=SnapshotPool(every=5_000, latest=0.5, random=0.0))
    agent.learn(env, 40_000, progress=False, run_dir=False)
    result = agent.evaluate(env, episodes=200, opponent="random", seed=1)
    assert result.opponent == "random" and sorted(result.by_seat()) == [0, 1]
    assert all(seat["games"] == 100 for seat in result.by_seat().values())
    assert result.rates()["win"] >= 0.9, result.by_seat()
    for seat, rates in result.by_seat().items():
        assert rates["win"] >= 0.8 and rates["loss"] <= 0.1, (seat, rates)
    # Masks: never an illegal move, from either seat (the agent's moves are checked against the legal ones).
    obs, info = env.reset(seed=2)
    for _ in range(50):
        action = agent.act(obs, info["action_mask"])
        assert info["action_mask"][action]
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            obs, info = env.reset()


def test_self_play_reaches_worker_processes() -> None:
    # The worker's copy of the agent plays the opponent seat: without it "self" would raise there.
    agent = DQN(seed=0, learning_starts=200)
    env = AutoAdapt(tictactoe_v3.env(), agent, opponent="self")
    agent.learn(env, 600, num_envs=2, workers=1, progress=False, run_dir=False)
    assert agent.num_episodes > 0
    result = agent.evaluate(env, episodes=4, opponent="self")
    assert result.opponent == "self" and set(result.seats.tolist()) == {0, 1}


def test_self_play_in_async_subprocess_envs_names_the_fix() -> None:
    agent = PPO(seed=0)
    env = AutoAdapt(tictactoe_v3.env(), agent, opponent="self", seat=1)
    with pytest.raises(Exception, match="vectorization='async' runs envs in subprocesses without the agent: use workers=N"):
        agent.learn(env, 64, num_envs=2, vectorization="async", progress=False, run_dir=False)


def test_snapshot_pool_plays_past_versions_of_an_a2c_learner() -> None:
    agent = A2C(seed=0)
    pool = SnapshotPool(every=256, size=3, latest=0.0, random=0.0)
    env = AutoAdapt(tictactoe_v3.env(), agent, opponent=pool)
    agent.learn(env, 1_024, num_envs=1, progress=False, run_dir=False)
    assert [step for step, _ in pool.snapshots] == [256, 512, 768]  # taken at resets, every 256 steps
    env.reset(seed=0)
    assert [step for step, _ in pool.snapshots] == [512, 768, 1024]  # the newest 3 kept
    assert pool.playing in (512, 768, 1024)  # latest=0: always a snapshot, played by a copy of the agent
    snapshot = dict(pool.snapshots)[pool.playing]
    played = pool._player.state_dict()
    assert all(torch.equal(played[k], v) for k, v in snapshot.items())


def test_human_plays_through_stdin_and_bad_moves_are_refused_with_the_reason() -> None:
    agent = PPO(seed=0)
    env = AutoAdapt(tictactoe_v3.env(), agent)
    moves = io.StringIO("hello\n42\n4\n" + "".join(f"{cell}\n" for cell in range(9)))
    out = io.StringIO()
    result = agent.play(env, human_seat=0, input=moves, file=out)
    text = out.getvalue()
    assert "legal moves: 0, 1, 2, 3, 4, 5, 6, 7, 8" in text and "PPO's view of your moves" in text
    assert "'hello' is not a move" in text and "'42' is not a move" in text
    assert "move 4 (4) is not legal here" in text  # the centre was taken by the first 4
    assert result.seats.tolist() == [1] and result.outcomes[0] in ("win", "draw", "loss")
    assert opponent_seats(env).opponents[0].name == "random"  # the env's own opponent is back
    with pytest.raises(RuntimeError, match="end of input"):
        agent.play(env, human_seat=1, input=io.StringIO(""), file=io.StringIO())


def test_checkpoint_and_agent_opponents_play_legal_moves(tmp_path: Any) -> None:
    trained = PPO(seed=1)
    trained.learn(AutoAdapt(tictactoe_v3.env(), trained), 512, progress=False, run_dir=False)
    path = trained.save(tmp_path / "old.pt")
    agent = PPO(seed=0)
    for opponent in (str(path), trained):
        env = AutoAdapt(tictactoe_v3.env(), agent, opponent=opponent)
        result = agent.evaluate(env, episodes=6)
        assert result.opponent == ("old.pt" if opponent is not trained else "PPO")
        assert set(result.outcomes.tolist()) <= {"win", "draw", "loss"} and np.all(result.lengths >= 3)


def test_a_run_directory_opponent_is_loaded_in_each_worker_process(tmp_path: Any) -> None:
    trained = PPO(seed=1)
    adapted = AutoAdapt(tictactoe_v3.env(), trained)
    trained.setup(adapted.observation_space, adapted.action_space)  # an untrained player: its moves are what matters
    trained.save(tmp_path / "old_run" / "agent.pt")
    agent = PPO(seed=0, num_envs=2, n_steps=32)
    env = AutoAdapt(tictactoe_v3.env(), agent, opponent=str(tmp_path / "old_run"))
    (opponent,) = opponent_seats(env).opponents
    assert isinstance(opponent, CheckpointOpponent) and opponent.name == "old_run" and opponent.agent is None
    agent.learn(env, 256, workers=2, progress=False, run_dir=False)  # only the path travels to the workers
    assert agent.num_timesteps == 256 and agent.num_episodes > 0
    with pytest.raises(TypeError, match="CheckpointOpponent"):
        AgentOpponent(str(tmp_path / "old_run"))
    with pytest.raises(AdaptError, match="does not exist"):
        CheckpointOpponent(tmp_path / "missing")


def test_bad_opponent_specs_get_clear_errors() -> None:
    with pytest.raises(AdaptError, match="neither one of"):
        AutoAdapt(tictactoe_v3.env(), PPO(), opponent="randon")
    with pytest.raises(AdaptError, match="is a class"):
        AutoAdapt(tictactoe_v3.env(), PPO(), opponent=PPO)
    with pytest.raises(AdaptError, match="not understood"):
        AutoAdapt(tictactoe_v3.env(), PPO(), opponent=3)
    with pytest.raises(AdaptError, match="the game has 2 seats"):
        AutoAdapt(tictactoe_v3.env(), PPO(), seat=2)
    with pytest.raises(AdaptError, match="turn-based envs"):
        AutoAdapt("CartPole-v1", PPO(), opponent="self")
    with pytest.raises(ValueError, match="latest is a probability"):
        SnapshotPool(latest=2.0)
    with pytest.raises(RuntimeError, match="not in training"):
        agent = PPO(seed=0)
        agent.learn(AutoAdapt(tictactoe_v3.env(), agent, opponent="human"), 64, num_envs=1, progress=False, run_dir=False)
    with pytest.raises(ValueError, match="turn-based"):
        PPO(seed=0).evaluate("CartPole-v1", episodes=1, opponent="random")


def test_cli_trains_against_a_pool_evaluates_per_seat_and_lets_a_human_play(tmp_path: Any, monkeypatch: Any, capsys: Any) -> None:
    from rladapt.cli import main

    run = tmp_path / "run"
    assert main(["train", "pettingzoo.classic.tictactoe_v3", "--agent", "dqn", "--opponent", "pool", "--steps", "512",
                 "--seed", "0", "--run-dir", str(run), "--no-progress"]) == 0
    assert "opponents: pool" in capsys.readouterr().out
    assert main(["eval", str(run), "--opponent", "random", "--episodes", "4"]) == 0  # the env from config.json
    assert "vs random, seat 1: win" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(f"{cell}\n" for cell in range(9))))
    assert main(["play", "pettingzoo.classic.tictactoe_v3", "--agent", str(run), "--human", "--seat", "1"]) == 0
    text = capsys.readouterr().out
    assert "your move (seat 1)" in text and "DQN's view of your moves" in text and "vs human, seat 0:" in text


@pytest.mark.slow
def test_self_play_dqn_long_run_wins_against_random_from_both_seats() -> None:
    agent = DQN(seed=0)
    env = AutoAdapt(tictactoe_v3.env(), agent, opponent=SnapshotPool(every=10_000, latest=0.5))
    agent.learn(env, 150_000, progress=False, run_dir=False)
    result = agent.evaluate(env, episodes=400, opponent="random", seed=1)
    assert result.rates()["win"] >= 0.9, result.by_seat()
    assert all(rates["loss"] <= 0.05 for rates in result.by_seat().values()), result.by_seat()


def test_search_agents_play_every_seat_unless_an_opponent_is_named():
    from pettingzoo.classic import tictactoe_v3

    from rladapt.agents.mcts import MCTS

    agent = MCTS(seed=0)
    alone = AutoAdapt(tictactoe_v3.env(), agent)
    assert "every_seat" in [step.rule for step in alone.plan]
    assert "opponent_seats" not in [step.rule for step in alone.plan]
    seated = AutoAdapt(tictactoe_v3.env(), agent, opponent="random")
    assert "opponent_seats" in [step.rule for step in seated.plan]
    result = agent.evaluate(seated, episodes=10)
    assert set(result.by_seat()) == {0, 1}
    assert all(rates["loss"] == 0 for rates in result.by_seat().values())


def test_a_recurrent_learner_plays_itself_with_its_state_threaded_through_each_game():
    agent = PPO(recurrent="gru", seed=0, n_steps=64)
    env = AutoAdapt(tictactoe_v3.env(), agent, opponent="self")
    agent.learn(env, 512, progress=False, run_dir=False)
    result = agent.evaluate(env, episodes=4, opponent="random")
    assert len(result.outcomes) == 4 and set(result.by_seat()) == {0, 1}


def test_learn_and_evaluate_take_a_pettingzoo_aec_game_instance_as_it_is():
    from pettingzoo.classic import tictactoe_v3

    from rladapt.agents import DQN

    agent = DQN(seed=0, learning_starts=50)
    agent.learn(tictactoe_v3.env(), 200, progress=False, run_dir=False)
    result = agent.evaluate(tictactoe_v3.env(), episodes=4, opponent="random")
    assert len(result.outcomes) == 4

@pytest.mark.parametrize("make_agent", [lambda: __import__("rladapt.agents", fromlist=["MCTS"]).MCTS(seed=0, simulations=16),
                                        lambda: PPO(seed=0)], ids=["mcts", "ppo"])
def test_a_person_plays_one_seat_of_three_player_nim_and_the_agent_the_other_two(make_agent):
    from rladapt.envs.nim import NimEnv

    agent = make_agent()
    env = AutoAdapt(NimEnv(num_players=3, render_mode="ansi"), agent)
    out = io.StringIO()
    result = agent.play(env, human_seat=1, input=io.StringIO("7\n" + "take 1\n" * 10), file=out)
    text = out.getvalue()
    assert "'7' is not a move" in text and "your move (seat 1)" in text
    assert "moves (seat 0):" in text and "moves (seat 2):" in text and "returns by seat: 0" in text
    assert result.seats.tolist() == [0] and result.outcomes[0] in ("win", "loss")
