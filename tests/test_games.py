"""Search on any restorable game: PettingZoo's go and chess and OpenSpiel's games (through shimmy),
with no registration step: the game is found in the env, rebuilt from its spec, and searched
through get_state/set_state."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from rladapt import AutoAdapt
from rladapt.agents import MCTS, AlphaZero
from rladapt.search.game import GameError, game_for, game_spec, make_game
from rladapt.spec import bind_agent
from rladapt.wrappers.state import get_state, set_state

shimmy = pytest.importorskip("shimmy")
pytest.importorskip("pyspiel")
from pettingzoo.classic import chess_v6, go_v5  # noqa: E402

warnings.filterwarnings("ignore", category=UserWarning)


def hex5():
    return shimmy.OpenSpielCompatibilityV0(game_name="hex", config={"board_size": 5})


def go5():
    return go_v5.env(board_size=5)


def _random_moves(env, rng, count):
    out = []
    for _ in range(count):
        if not env.agents or all(env.terminations[a] or env.truncations[a] for a in env.agents):
            break
        observed = env.observe(env.agent_selection)
        mask = observed["action_mask"] if isinstance(observed, dict) else env.infos[env.agent_selection]["action_mask"]
        env.step(int(rng.choice(np.flatnonzero(mask))))
        after = env.observe(env.agent_selection)
        after = after["observation"] if isinstance(after, dict) else after
        out.append((env.agent_selection, np.asarray(after).tobytes(), dict(env.rewards)))
    return out


@pytest.mark.parametrize("make", [go5, chess_v6.env, hex5], ids=["go5", "chess", "openspiel_hex5"])
def test_state_round_trip_replays_the_same_game(make):
    env = make()
    env.reset(seed=0)
    _random_moves(env, np.random.default_rng(0), 3)
    state = get_state(env)
    first = _random_moves(env, np.random.default_rng(1), 6)
    set_state(env, state)
    assert _random_moves(env, np.random.default_rng(1), 6) == first


@pytest.mark.parametrize("make", [go5, hex5], ids=["go5", "openspiel_hex5"])
def test_a_game_is_rebuilt_from_its_spec_without_registration(make):
    spec = game_spec(make())
    game = make_game(spec)
    original = game_for(make())
    assert (game.num_players, game.num_actions, game.observation_shape) == (2, original.num_actions, original.observation_shape)
    assert game.spec == spec


def test_mcts_on_openspiel_hex_never_plays_an_illegal_move_and_beats_random():
    agent = MCTS(seed=0, simulations=64)  # 32 simulations win 0.8-0.9 of 20 games (seeds 0, 1); 64 win 0.95-1.0
    env = AutoAdapt(hex5(), agent, opponent="random")
    assert agent.evaluate(env, episodes=20).rates()["win"] >= 0.9
    assert agent.config.game == "shimmy.openspiel_compatibility:OpenSpielCompatibilityV0(game_name='hex', config={'board_size': 5})"
    obs, info = env.reset(seed=3)
    done = False
    while not done:
        action = agent.act(obs, mask=info["action_mask"], deterministic=True)
        assert info["action_mask"][action]
        obs, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated


def test_mcts_on_go_5x5_plays_legal_moves_to_the_end():
    agent = MCTS(seed=0, simulations=8)
    env = AutoAdapt(go5(), agent, opponent="random")
    bind_agent(agent, env.observation_space, env.action_space, env=env)  # what learn/evaluate/play do: the game is bound
    obs, info = env.reset(seed=0)
    done, moves = False, 0
    while not done:
        action = agent.act(obs, mask=info["action_mask"], deterministic=True)
        assert info["action_mask"][action]
        obs, _, terminated, truncated, info = env.step(action)
        done, moves = terminated or truncated, moves + 1
    assert moves > 5 and agent.config.game == "pettingzoo.classic.go_v5:env(board_size=5)"


@pytest.mark.slow
def test_mcts_on_go_5x5_beats_random():
    agent = MCTS(seed=0, simulations=32)
    assert agent.evaluate(AutoAdapt(go5(), agent, opponent="random"), episodes=20).rates()["win"] >= 0.9


def test_alphazero_trains_on_a_game_it_has_never_seen():
    agent = AlphaZero(seed=0, simulations=4, games_per_iteration=2, batch_size=16, hidden=(32,))
    agent.learn(AutoAdapt(hex5(), agent), 40, progress=False, run_dir=False)
    assert agent.num_timesteps >= 40 and agent.config.game.startswith("shimmy.openspiel_compatibility:")


def test_an_observation_no_adapted_env_returned_names_the_fix():
    game = game_for(go5())
    with pytest.raises(GameError, match="AutoAdapt"):
        game.from_observation(np.full(game.observation_shape, 0.5, dtype=np.float32))
