"""The example envs in rladapt.envs: API conformance, dynamics, rewards, masks, seeding."""

from __future__ import annotations

import importlib
import warnings
from collections import Counter
from typing import Callable

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rladapt.envs
from rladapt.envs import ENV_IDS, GridEnv, ShowerEnv, TicTacToeEnv
from rladapt.envs.tictactoe import heuristic_opponent, winner

GRID, SHOWER, TICTACTOE = "rladapt/Grid-v0", "rladapt/Shower-v0", "rladapt/TicTacToe-v0"
MEMORY = "rladapt/MaskedMemory-v0"
NO_VELOCITY = ("rladapt/CartPoleNoVel-v1", "rladapt/PendulumNoVel-v1")


# --------------------------------------------------------------------------- registration, API


def test_every_example_id_is_registered_with_a_string_entry_point() -> None:
    assert set(ENV_IDS) == {GRID, SHOWER, TICTACTOE, MEMORY, *NO_VELOCITY, "rladapt/HybridReach-v0", "rladapt/Reach-v0"}
    for env_id in ENV_IDS:
        spec = gym.spec(env_id)
        assert isinstance(spec.entry_point, str) and spec.entry_point.startswith("rladapt.envs.")
    assert gym.spec(GRID).max_episode_steps == 100
    assert gym.spec(SHOWER).max_episode_steps == 60


def test_registration_is_idempotent_on_reimport() -> None:
    before = {env_id: gym.spec(env_id) for env_id in ENV_IDS}
    importlib.reload(rladapt.envs)  # would raise or warn about re-registration if not skipped
    assert {env_id: gym.spec(env_id) for env_id in ENV_IDS} == before


@pytest.mark.parametrize("env_id", [GRID, SHOWER, TICTACTOE, MEMORY])
def test_check_env_passes_without_warnings_on_the_unwrapped_env(env_id: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(gym.make(env_id).unwrapped)
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize("env_id", [GRID, SHOWER, TICTACTOE, MEMORY, NO_VELOCITY[0]])  # Pendulum: gymnasium warns about its own [-2, 2] actions
def test_check_env_passes_through_gym_make(env_id: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(gym.make(env_id))
    # the only complaint allowed is check_env's note that a wrapped env was passed
    assert [str(w.message) for w in caught if "different from the unwrapped" not in str(w.message)] == []


@pytest.mark.parametrize(
    ("env_id", "n_actions"), [(GRID, 4), (SHOWER, 3), (TICTACTOE, 9)]
)
def test_action_names_are_a_tuple_of_str_one_per_action(env_id: str, n_actions: int) -> None:
    env = gym.make(env_id)
    names = env.unwrapped.action_names
    assert isinstance(names, tuple) and all(isinstance(n, str) for n in names)
    assert len(names) == env.action_space.n == n_actions
    assert len(set(names)) == n_actions


@pytest.mark.parametrize("env_id", [GRID, SHOWER, TICTACTOE])
def test_ansi_render_returns_text_and_no_render_mode_returns_none(env_id: str) -> None:
    env = gym.make(env_id, render_mode="ansi")
    assert env.metadata["render_modes"] == ["ansi"]
    env.reset(seed=0)
    env.step(1)
    assert isinstance(env.render(), str) and env.render().strip()
    plain = gym.make(env_id).unwrapped
    plain.reset(seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert plain.render() is None


@pytest.mark.filterwarnings("ignore:.*not in the possible render_modes")
@pytest.mark.parametrize("env_id", [GRID, SHOWER, TICTACTOE])
def test_unsupported_render_mode_and_bad_action_raise(env_id: str) -> None:
    with pytest.raises(ValueError, match="render_mode"):
        gym.make(env_id, render_mode="rgb_array").unwrapped  # noqa: B018
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(99)


@pytest.mark.parametrize("env_id", [GRID, SHOWER, TICTACTOE])
def test_stepping_a_finished_episode_raises_instead_of_continuing(env_id: str) -> None:
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    done = False
    while not done:
        action = 0 if env_id != TICTACTOE else int(np.flatnonzero(env.action_masks())[0])
        _, _, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset()
    env.step(1)  # usable again after reset


@pytest.mark.parametrize("env_id", [GRID, SHOWER, TICTACTOE])
def test_same_seed_same_actions_give_the_same_trajectory(env_id: str) -> None:
    def rollout(seed: int) -> list[tuple]:
        env = gym.make(env_id)
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        trajectory = [np.asarray(obs).tolist()]
        for _ in range(300):
            if env_id == TICTACTOE:
                action = int(env.np_random.choice(np.flatnonzero(env.unwrapped.action_masks())))
            else:
                action = env.action_space.sample()
            obs, reward, terminated, truncated, _ = env.step(action)
            trajectory.append((np.asarray(obs).tolist(), reward, terminated, truncated))
            if terminated or truncated:
                obs, _ = env.reset()
                trajectory.append(np.asarray(obs).tolist())
        return trajectory

    assert rollout(7) == rollout(7)
    assert rollout(7) != rollout(8)


# --------------------------------------------------------------------------------------- Grid


def grid_at(col: int, row: int, **kwargs) -> GridEnv:
    env = GridEnv(**kwargs)
    env.reset(seed=0, options={"state": env.cell_index(col, row)})
    return env


def test_grid_spaces_and_start_cell() -> None:
    env = gym.make(GRID)
    assert env.observation_space == gym.spaces.Discrete(12)
    assert env.action_space == gym.spaces.Discrete(4)
    assert env.unwrapped.action_names == ("up", "right", "down", "left")
    obs, _ = env.reset(seed=0)
    assert obs == 0  # bottom-left; cells are numbered 4 * row + col from the bottom


def test_grid_cell_numbering_is_row_major_from_the_bottom() -> None:
    env = GridEnv()
    assert env.cell_index(0, 0) == 0 and env.cell_index(3, 0) == 3
    assert env.cell_index(1, 1) == 5  # wall
    assert env.cell_index(3, 1) == 7  # pit
    assert env.cell_index(3, 2) == 11  # goal
    assert all(env.cell_of(env.cell_index(c, r)) == (c, r) for c in range(4) for r in range(3))


def test_grid_intended_move_has_prob_08_and_each_side_slip_01() -> None:
    # From (2, 0) all three outcomes of "up" are distinct cells: up (2, 1), right (3, 0), left (1, 0).
    env = GridEnv()
    start = env.cell_index(2, 0)
    env.reset(seed=123, options={"state": start})
    n = 5000
    counts: Counter[int] = Counter()
    for _ in range(n):
        env.reset(options={"state": start})
        obs, *_ = env.step(0)
        counts[obs] += 1
    assert set(counts) == {env.cell_index(2, 1), env.cell_index(3, 0), env.cell_index(1, 0)}
    assert counts[env.cell_index(2, 1)] / n == pytest.approx(0.8, abs=0.025)
    assert counts[env.cell_index(3, 0)] / n == pytest.approx(0.1, abs=0.02)
    assert counts[env.cell_index(1, 0)] / n == pytest.approx(0.1, abs=0.02)


def test_grid_step_frequencies_match_the_published_model_P_for_every_state_and_action() -> None:
    env = GridEnv()
    env.reset(seed=5)
    n = 1000
    for s in range(12):
        if env.P[s][0] == [(1.0, s, 0.0, True)]:
            continue  # wall and terminal cells
        for a in range(4):
            counts: Counter[int] = Counter()
            for _ in range(n):
                env.reset(options={"state": s})
                counts[env.step(a)[0]] += 1
            expected = {nxt: p for p, nxt, _, _ in env.P[s][a]}
            assert set(counts) <= set(expected), (s, a)
            for nxt, p in expected.items():
                assert counts[nxt] / n == pytest.approx(p, abs=0.05), (s, a, nxt)
            assert sum(p for p, *_ in env.P[s][a]) == pytest.approx(1.0)


def test_grid_bumping_an_edge_or_the_wall_leaves_the_agent_in_place() -> None:
    det = {"slip": 0.0}
    assert grid_at(0, 0, **det).step(3)[0] == 0  # left edge
    assert grid_at(0, 0, **det).step(2)[0] == 0  # bottom edge
    assert grid_at(2, 2, **det).step(0)[0] == 10  # top edge
    assert grid_at(3, 0, **det).step(1)[0] == 3  # right edge
    assert grid_at(0, 1, **det).step(1)[0] == 4  # wall to the right of (0, 1)
    assert grid_at(1, 0, **det).step(0)[0] == 1  # wall above (1, 0)
    assert grid_at(2, 1, **det).step(3)[0] == 6  # wall to the left of (2, 1)
    obs, reward, terminated, truncated, _ = grid_at(1, 2, **det).step(2)  # wall below (1, 2)
    assert (obs, reward, terminated, truncated) == (9, pytest.approx(-0.04), False, False)


def test_grid_noisy_bump_at_start_stays_with_prob_09() -> None:
    # "left" from (0, 0): intended and the downward slip both bump (0.9), upward slip moves (0.1).
    env = GridEnv()
    env.reset(seed=1)
    results = Counter()
    for _ in range(3000):
        env.reset()
        results[env.step(3)[0]] += 1
    assert set(results) == {0, 4}
    assert results[0] / 3000 == pytest.approx(0.9, abs=0.02)


def test_grid_goal_gives_plus_one_pit_minus_one_and_both_terminate() -> None:
    det = {"slip": 0.0}
    assert grid_at(2, 2, **det).step(1) == (11, 1.0, True, False, {})
    assert grid_at(3, 0, **det).step(0) == (7, -1.0, True, False, {})
    assert grid_at(2, 1, **det).step(1) == (7, -1.0, True, False, {})
    obs, reward, terminated, _, _ = grid_at(0, 0, **det).step(0)
    assert (obs, reward, terminated) == (4, pytest.approx(-0.04), False)


def test_grid_truncates_after_100_steps_via_gym_make() -> None:
    env = gym.make(GRID, slip=0.0)
    env.reset(seed=0)
    for t in range(1, 101):
        _, _, terminated, truncated, _ = env.step(3)  # bump the left edge forever
        assert not terminated
        assert truncated == (t == 100)


def test_grid_value_iteration_on_P_gives_the_textbook_values() -> None:
    env = GridEnv()
    v = np.zeros(12)
    for _ in range(200):
        v = np.array(
            [max(sum(p * (r + (0.0 if d else v[n])) for p, n, r, d in env.P[s][a]) for a in range(4)) for s in range(12)]
        )
    # Russell & Norvig fig. 17.3 gives U(start) = 0.705, U(top-left) = 0.812, U(left of goal) = 0.918
    # with a -0.04 charge for each state visited, the start included; per-step rewards skip the
    # start, so every non-terminal value here is exactly 0.04 higher.
    assert v[0] == pytest.approx(0.705 + 0.04, abs=0.002)
    assert v[8] == pytest.approx(0.812 + 0.04, abs=0.002)
    assert v[10] == pytest.approx(0.918 + 0.04, abs=0.002)
    greedy = [max(range(4), key=lambda a: sum(p * (r + (0.0 if d else v[n])) for p, n, r, d in env.P[s][a])) for s in range(12)]
    for s in (0, 1, 2, 3, 4, 6, 8, 9, 10):  # non-terminal, non-wall cells
        assert greedy[s] == OPTIMAL_GRID_POLICY[s], s


# The optimal policy of Russell & Norvig fig. 17.2 (R = -0.04), indexed by cell 4 * row + col.
_U, _R, _D, _L = 0, 1, 2, 3
OPTIMAL_GRID_POLICY = (_U, _L, _L, _L, _U, _U, _U, _U, _R, _R, _R, _U)


def _mean_grid_return(policy: Callable[[int, np.random.Generator], int], episodes: int, seed: int) -> float:
    env = gym.make(GRID)
    rng = np.random.default_rng(seed)
    returns = []
    obs, _ = env.reset(seed=seed)
    for _ in range(episodes):
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs, rng))
            total += reward
            done = terminated or truncated
        returns.append(total)
        obs, _ = env.reset()
    return float(np.mean(returns))


def test_grid_optimal_policy_averages_at_least_065_and_random_does_much_worse() -> None:
    optimal = _mean_grid_return(lambda s, rng: OPTIMAL_GRID_POLICY[s], episodes=200, seed=0)
    random = _mean_grid_return(lambda s, rng: int(rng.integers(4)), episodes=200, seed=0)
    assert optimal >= 0.65
    assert random < optimal - 0.5


# ------------------------------------------------------------------------------------- Shower


def test_shower_spaces() -> None:
    env = gym.make(SHOWER)
    assert env.observation_space == gym.spaces.Box(0.0, 100.0, (1,), np.float32)
    assert np.isfinite(env.observation_space.low).all() and np.isfinite(env.observation_space.high).all()
    assert env.action_space == gym.spaces.Discrete(3)
    assert env.unwrapped.action_names == ("cool down", "stay", "heat up")


@pytest.mark.parametrize("make", [lambda: gym.make(SHOWER), lambda: ShowerEnv()], ids=["gym.make", "unwrapped"])
def test_shower_truncates_at_exactly_60_steps_and_never_terminates(make: Callable[[], gym.Env]) -> None:
    env = make()
    env.reset(seed=0)
    for t in range(1, 61):
        _, _, terminated, truncated, _ = env.step(t % 3)
        assert terminated is False
        assert truncated == (t == 60)


def test_shower_start_temperature_is_38_plus_minus_3() -> None:
    env = ShowerEnv()
    starts = np.array([env.reset(seed=seed)[0][0] for seed in range(500)])
    assert starts.dtype == np.float32
    assert starts.min() >= 35.0 and starts.max() <= 41.0
    assert starts.min() < 35.5 and starts.max() > 40.5  # spread over the whole range, not a constant
    assert abs(starts.mean() - 38.0) < 0.3


def test_shower_reward_is_plus_one_exactly_when_the_new_temperature_is_in_37_39() -> None:
    env = ShowerEnv()
    env.reset(seed=3)
    rng = np.random.default_rng(3)
    seen = set()
    for _ in range(3000):
        obs, reward, terminated, truncated, _ = env.step(int(rng.integers(3)))
        temperature = float(obs[0])
        assert reward == (1.0 if 37.0 <= temperature <= 39.0 else -1.0)
        seen.add(reward)
        if truncated:
            env.reset()
    assert seen == {1.0, -1.0}


def test_shower_action_shifts_by_minus1_0_plus1_and_drift_is_a_uniform_integer_in_minus1_1() -> None:
    env = ShowerEnv()
    obs, _ = env.reset(seed=11)
    drifts: Counter[int] = Counter()
    for step in range(6000):
        action = step % 3
        new_obs, _, _, truncated, _ = env.step(action)
        drift = float(new_obs[0] - obs[0]) - (action - 1)
        assert abs(drift - round(drift)) < 1e-4
        drifts[round(drift)] += 1
        obs = new_obs if not truncated else env.reset()[0]
    assert set(drifts) == {-1, 0, 1}
    for d in (-1, 0, 1):
        assert drifts[d] / 6000 == pytest.approx(1 / 3, abs=0.03)


def test_shower_temperature_is_clipped_to_the_observation_bounds() -> None:
    env = ShowerEnv(episode_length=200)
    env.reset(seed=0)
    for _ in range(200):
        obs, *_ = env.step(2)  # heat up every second: 38 + ~200 would leave [0, 100]
        assert env.observation_space.contains(obs)
    assert obs[0] == 100.0


def test_shower_always_adjusting_towards_38_beats_doing_nothing() -> None:
    def mean_return(policy: Callable[[float], int]) -> float:
        env = gym.make(SHOWER)
        totals = []
        for seed in range(30):
            obs, _ = env.reset(seed=seed)
            total, done = 0.0, False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(policy(float(obs[0])))
                total += reward
                done = terminated or truncated
            totals.append(total)
        return float(np.mean(totals))

    # The drift keeps even a perfect controller out of the band about a third of the time
    # (returns near +20), while leaving the tap alone random-walks away from it.
    controller = mean_return(lambda t: 0 if t > 38.5 else 2 if t < 37.5 else 1)
    idle = mean_return(lambda t: 1)
    assert controller > 15 and controller > idle + 20


# ---------------------------------------------------------------------------------- TicTacToe


def scripted(moves: list[int]) -> Callable[[np.ndarray, np.random.Generator], int]:
    """An opponent that plays ``moves`` in order."""
    remaining = list(moves)
    return lambda board, rng: remaining.pop(0)


def play(env: TicTacToeEnv, actions: list[int]) -> list[tuple]:
    env.reset(seed=0)
    return [env.step(a) for a in actions]


def test_tictactoe_spaces_and_empty_start() -> None:
    env = gym.make(TICTACTOE)
    assert env.observation_space == gym.spaces.Box(-1.0, 1.0, (9,), np.float32)
    assert env.action_space == gym.spaces.Discrete(9)
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.float32 and not obs.any()
    assert info == {"invalid_action": False, "outcome": "ongoing"}


def test_tictactoe_masks_match_the_board_after_every_move() -> None:
    for opponent in ("random", "heuristic"):
        env = gym.make(TICTACTOE, opponent=opponent)
        masks = env.get_wrapper_attr("action_masks")
        rng = np.random.default_rng(0)
        for episode in range(100):
            obs, _ = env.reset(seed=episode)
            assert masks().dtype == np.bool_ and masks().shape == (9,) and masks().all()
            done = False
            while not done:
                mask = masks()
                assert np.array_equal(mask, obs == 0)
                obs, reward, terminated, truncated, info = env.step(int(rng.choice(np.flatnonzero(mask))))
                assert not info["invalid_action"]
                done = terminated or truncated
                if not done:
                    # X moved and O answered: one more of each, the mask lost exactly those two cells
                    assert (obs == 1).sum() == (obs == -1).sum() and np.array_equal(masks(), obs == 0)
            assert masks().all()  # game over: all True so a masked sampler never sees an empty mask


def test_tictactoe_masks_are_fresh_arrays() -> None:
    env = TicTacToeEnv()
    env.reset(seed=0)
    mask = env.action_masks()
    mask[:] = False
    assert env.action_masks().all()


def test_tictactoe_occupied_cell_ends_the_game_with_minus_one_and_invalid_action_flag() -> None:
    env = TicTacToeEnv()
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(4)
    assert (reward, terminated, info["invalid_action"]) == (0.0, False, False)
    before = obs.copy()
    taken_by_opponent = int(np.flatnonzero(obs == -1)[0])
    for cell in (4, taken_by_opponent):  # own mark, then the opponent's
        env.reset(seed=0)
        env.step(4)
        obs, reward, terminated, truncated, info = env.step(cell)
        assert (reward, terminated, truncated) == (-1.0, True, False)
        assert info == {"invalid_action": True, "outcome": "invalid"}
        assert np.array_equal(obs, before)  # the board is left unchanged


def test_tictactoe_agent_completing_a_row_wins_plus_one() -> None:
    env = TicTacToeEnv(opponent=scripted([8, 7]))
    results = play(env, [0, 1, 2])
    assert [r[1:4] for r in results] == [(0.0, False, False), (0.0, False, False), (1.0, True, False)]
    assert results[-1][4]["outcome"] == "win"
    assert winner(env.board) == 1


def test_tictactoe_opponent_completing_a_row_is_a_loss_minus_one() -> None:
    env = TicTacToeEnv(opponent=scripted([6, 7, 8]))
    results = play(env, [0, 1, 5])
    assert [r[1:3] for r in results] == [(0.0, False), (0.0, False), (-1.0, True)]
    assert results[-1][4] == {"invalid_action": False, "outcome": "loss"}
    assert winner(env.board) == -1


def test_tictactoe_full_board_without_a_line_is_a_draw_zero() -> None:
    # X: 0 8 6 5 1, O: 4 2 3 7 -> X X O / O O X / X O X
    env = TicTacToeEnv(opponent=scripted([4, 2, 3, 7]))
    results = play(env, [0, 8, 6, 5, 1])
    assert [r[2] for r in results] == [False, False, False, False, True]
    assert results[-1][1] == 0.0 and results[-1][4]["outcome"] == "draw"
    assert not (env.board == 0).any() and winner(env.board) == 0


def test_tictactoe_winner_detects_all_eight_lines_for_both_players() -> None:
    from rladapt.envs.tictactoe import LINES

    assert len(LINES) == 8
    for line in LINES:
        for player in (1, -1):
            board = np.zeros(9, dtype=np.int8)
            board[list(line)] = player
            assert winner(board) == player
    assert winner(np.array([1, -1, 1, 1, -1, -1, -1, 1, 1], dtype=np.int8)) == 0


def test_tictactoe_games_are_reproducible_with_a_seed() -> None:
    def game(seed: int) -> list[list[float]]:
        env = gym.make(TICTACTOE, opponent="random")
        obs, _ = env.reset(seed=seed)
        boards, done = [obs.tolist()], False
        while not done:
            first_empty = int(np.flatnonzero(env.get_wrapper_attr("action_masks")())[0])
            obs, _, terminated, truncated, _ = env.step(first_empty)
            boards.append(obs.tolist())
            done = terminated or truncated
        return boards

    assert game(42) == game(42)
    assert len({str(game(seed)) for seed in range(20)}) > 1  # the opponent really is random


def test_tictactoe_heuristic_opponent_blocks_an_immediate_win() -> None:
    lines_through_0 = ((1, 2), (3, 6), (4, 8))
    for seed in range(50):
        env = TicTacToeEnv(opponent="heuristic")
        env.reset(seed=seed)
        obs, *_ = env.step(0)
        o_cell = int(np.flatnonzero(obs == -1)[0])
        second, threat = next(line for line in lines_through_0 if o_cell not in line)
        obs, reward, terminated, _, _ = env.step(second)  # X now threatens `threat`
        assert not terminated
        assert obs[threat] == -1, f"seed {seed}: heuristic did not block cell {threat}"


def test_tictactoe_heuristic_prefers_its_own_win_to_blocking() -> None:
    # O (-1) can win at 5, X (+1) threatens 2: the heuristic takes the win.
    board = np.array([1, 1, 0, -1, -1, 0, 1, 0, 0], dtype=np.int8)
    rng = np.random.default_rng(0)
    assert all(heuristic_opponent(board, rng) == 5 for _ in range(20))


def test_tictactoe_heuristic_opponent_beats_random_play_more_often_than_random_opponent() -> None:
    def agent_losses(opponent: str) -> int:
        env = gym.make(TICTACTOE, opponent=opponent)
        rng = np.random.default_rng(0)
        losses = 0
        for episode in range(300):
            env.reset(seed=episode)
            done = False
            while not done:
                action = int(rng.choice(np.flatnonzero(env.get_wrapper_attr("action_masks")())))
                _, _, terminated, truncated, info = env.step(action)
                done = terminated or truncated
            losses += info["outcome"] == "loss"
        return losses

    assert agent_losses("heuristic") > agent_losses("random") + 30


def test_tictactoe_rejects_unknown_opponents_and_illegal_opponent_moves() -> None:
    with pytest.raises(ValueError, match="opponent"):
        TicTacToeEnv(opponent="minimax")
    with pytest.raises(TypeError, match="opponent"):
        TicTacToeEnv(opponent=3)  # type: ignore[arg-type]
    env = TicTacToeEnv(opponent=lambda board, rng: 0)  # always plays the corner the agent takes
    env.reset(seed=0)
    with pytest.raises(ValueError, match="opponent played cell 0"):
        env.step(0)


def test_tictactoe_ansi_render_shows_marks_and_free_cell_numbers() -> None:
    env = TicTacToeEnv(render_mode="ansi", opponent=scripted([8, 7]))
    env.reset(seed=0)
    env.step(0)
    text = env.render()
    assert text.splitlines()[0].split("|")[0].strip() == "X"
    assert "O" in text and "4" in text
    env.step(1)
    env.step(2)
    assert "game over: win" in env.render()


def test_grid_ansi_render_marks_agent_goal_pit_and_wall() -> None:
    env = GridEnv(render_mode="ansi")
    env.reset(seed=0)
    assert env.render().splitlines() == [". . . G", ". # . P", "A . . ."]
