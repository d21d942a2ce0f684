"""MuZero on CartPole-v1 (CPU time and env steps to a 475 mean over 10 greedy episodes) and on
tic-tac-toe (results against perfect play: rladapt's MinimaxPlayer, both seats).

    python benchmarks/muzero.py cartpole --cpu-minutes 10 --seed 0
    python benchmarks/muzero.py tictactoe --steps 20000 --seed 0

CPU time (``time.process_time``) is quoted: the machine is shared, so wall time is not the
agent's. Training runs in chunks of ``--chunk`` env steps, each followed by an evaluation.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import gymnasium as gym

from rladapt import AutoAdapt
from rladapt.agents import MuZero
from rladapt.search import MinimaxPlayer, RandomPlayer, TicTacToeGame, play_match


def cartpole(args: argparse.Namespace) -> dict:
    agent = MuZero(**{"seed": args.seed, "simulations": args.simulations, "games_per_iteration": 1, "gradient_steps": 16, **args.set})
    env = AutoAdapt(gym.make("CartPole-v1"), agent)
    start, best, rows = time.process_time(), 0.0, []
    with tempfile.TemporaryDirectory() as run_dir:
        while time.process_time() - start < args.cpu_minutes * 60:
            agent.learn(env, args.chunk, progress=False, run_dir=run_dir)
            mean = agent.evaluate(env, episodes=10).mean
            best = max(best, mean)
            rows.append({"steps": agent.num_timesteps, "cpu_s": round(time.process_time() - start, 1), "eval_mean": mean})
            print(json.dumps(rows[-1]), flush=True)
            if mean >= 475:
                break
    return {"env": "CartPole-v1", "seed": args.seed, "settings": args.set, "solved": best >= 475, "best_eval_mean": best, "curve": rows}


def tictactoe(args: argparse.Namespace) -> dict:
    agent = MuZero(**{"seed": args.seed, "simulations": args.simulations, "games_per_iteration": 8, "gradient_steps": 16,
                      "batch_size": 64, **args.set})
    start = time.process_time()
    with tempfile.TemporaryDirectory() as run_dir:
        agent.learn("rladapt/TicTacToe-v0", args.steps, progress=False, run_dir=run_dir)
    train_cpu = time.process_time() - start
    results = {}
    for name, opponent, games in (("minimax", MinimaxPlayer(seed=args.seed), 20), ("random", RandomPlayer(args.seed), 50)):
        for seat in (0, 1):
            r = play_match(TicTacToeGame(), agent.search_player(), opponent, games, seat=seat, seed=args.seed)
            results[f"{name}_seat{seat}"] = {"wins": r.wins, "draws": r.draws, "losses": r.losses}
    return {"env": "tictactoe", "seed": args.seed, "settings": args.set, "steps": agent.num_timesteps, "train_cpu_s": round(train_cpu, 1), **results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=["cartpole", "tictactoe"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--simulations", type=int, default=None)
    parser.add_argument("--cpu-minutes", type=float, default=10.0)
    parser.add_argument("--chunk", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a MuZero setting (JSON value)")
    args = parser.parse_args()
    args.set = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    if args.simulations is None:
        args.simulations = 25 if args.task == "cartpole" else 32
    print(json.dumps(cartpole(args) if args.task == "cartpole" else tictactoe(args)))


if __name__ == "__main__":
    main()
