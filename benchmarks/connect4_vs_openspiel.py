"""AlphaZero and MuZero on connect four against OpenSpiel's own MCTSBot (UCT with random
rollouts, 100 simulations): win rates over both seats and CPU time per game.

    python benchmarks/connect4_vs_openspiel.py --cpu-minutes 4 --games 10 --seed 0

Each agent trains for ``--cpu-minutes`` of CPU time (``time.process_time``: the machine is
shared) on PettingZoo's ``connect_four_v3`` through ``rladapt.search.GameEnv``, in the learner's
process; then plays ``--games`` games from each seat against
``open_spiel.python.algorithms.mcts.MCTSBot(connect_four, uct_c=2, max_simulations=100,
RandomRolloutEvaluator(1))``. Both games take a column (0-6) as the action, so one move is
applied to both boards, and the two boards are checked to agree on the end and its winner.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import pyspiel
from open_spiel.python.algorithms import mcts
from pettingzoo.classic import connect_four_v3

from rladapt import AutoAdapt
from rladapt.agents import AlphaZero, MuZero
from rladapt.search import GameEnv, PettingZooGame


def play(player, bot, seat: int) -> tuple[float, float]:
    """One game, ``player`` (``game -> move``) in ``seat``; its result and CPU seconds of the game."""
    start = time.process_time()
    game = PettingZooGame(connect_four_v3.env())
    game.reset()
    state = pyspiel.load_game("connect_four").new_initial_state()
    while not game.is_terminal():
        move = int(player(game)) if game.current_player() == seat else int(bot.step(state))
        game.step(move)
        state.apply_action(move)
    assert state.is_terminal(), "the two boards disagree on the end of the game"
    assert float(state.returns()[seat]) == float(game.outcome()[seat]), "the two boards disagree on the winner"
    return float(game.outcome()[seat]), time.process_time() - start


def train(agent, cpu_minutes: float) -> float:
    env = AutoAdapt(GameEnv.pettingzoo(connect_four_v3.env()), agent)
    start = time.process_time()
    with tempfile.TemporaryDirectory() as run_dir:
        while time.process_time() - start < cpu_minutes * 60:
            agent.learn(env, 1000, progress=False, run_dir=run_dir)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-minutes", type=float, default=4.0)
    parser.add_argument("--games", type=int, default=10, help="games per seat")
    parser.add_argument("--simulations", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    agents = {
        "AlphaZero": AlphaZero(seed=args.seed, simulations=args.simulations, dirichlet_alpha=1.0, temperature_moves=8,
                               games_per_iteration=16, gradient_steps=16, batch_size=256, hidden=(256, 256)),
        "MuZero": MuZero(seed=args.seed, simulations=args.simulations, dirichlet_alpha=1.0, temperature_moves=8,
                         games_per_iteration=16, gradient_steps=16, batch_size=128, hidden=(128,)),
    }
    for name, agent in agents.items():
        train_cpu = train(agent, args.cpu_minutes)
        bot = mcts.MCTSBot(pyspiel.load_game("connect_four"), 2.0, 100,
                           mcts.RandomRolloutEvaluator(1, np.random.RandomState(args.seed)),
                           random_state=np.random.RandomState(args.seed))
        row = {"agent": name, "seed": args.seed, "positions": agent.num_timesteps, "games_trained": agent.num_episodes,
               "train_cpu_s": round(train_cpu, 1)}
        times = []
        for seat in (0, 1):
            results = []
            for _ in range(args.games):
                result, seconds = play(agent.search_player(), bot, seat)
                results.append(result)
                times.append(seconds)
            row[f"seat{seat}"] = {"wins": sum(r > 0 for r in results), "draws": sum(r == 0 for r in results),
                                  "losses": sum(r < 0 for r in results)}
        row["win_rate"] = (row["seat0"]["wins"] + row["seat1"]["wins"]) / (2 * args.games)
        row["cpu_s_per_game"] = round(float(np.mean(times)), 2)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
