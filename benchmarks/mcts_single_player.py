"""MCTS on single-player gymnasium envs: search through saved env states, against a random policy.

``MCTS`` needs no training: each move it searches by stepping the live env from a saved state
(``rladapt.wrappers.state``) and restores it. This script measures the returns it reaches and its
time per move, with a uniformly random policy on the same episodes as the reference, on:

- ``CartPole-v1`` cut to ``--cartpole-steps``-step episodes, 16 simulations of random playouts
  (at most 100 moves each);
- ``Pendulum-v1`` (``--pendulum-steps`` steps; AutoAdapt discretises the torque into 7 bins), at
  32 and 100 simulations of 30-move playouts.

Usage::

    python benchmarks/mcts_single_player.py [--seeds 0 1 2 3 4] [--cartpole-steps 100]
        [--pendulum-steps 200] [--out figures/mcts_single_player.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import gymnasium as gym
import torch

from rladapt.agents import MCTS, RandomAgent


def play(agent, env_id: str, steps: int, seed: int) -> tuple[float, float]:
    """One episode of ``steps`` at most from ``seed``: its return and the CPU seconds per move."""
    env = gym.make(env_id, max_episode_steps=steps)
    start = time.process_time()
    result = agent.evaluate(env, episodes=1, seed=seed)
    seconds = time.process_time() - start
    return float(result.returns[0]), seconds / max(1, int(result.lengths[0]))


def rows_for(env_id: str, steps: int, seeds: list[int], settings: list[dict]) -> list[dict]:
    rows = []
    for label, make in [(f"MCTS {s}", lambda seed, s=s: MCTS(seed=seed, **s)) for s in settings] + [
            ("random", lambda seed: RandomAgent(seed=seed))]:
        returns, per_move = [], []
        for seed in seeds:
            ret, seconds = play(make(seed), env_id, steps, seed)
            returns.append(ret)
            per_move.append(seconds)
            print(f"  {env_id} {label} seed {seed}: return {ret:.1f}, {1000 * seconds:.1f} ms CPU per move", flush=True)
        rows.append({"env": env_id, "steps": steps, "agent": label, "seeds": seeds, "returns": returns,
                     "mean": statistics.mean(returns), "min": min(returns),
                     "ms_per_move": 1000 * statistics.median(per_move)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--cartpole-steps", type=int, default=100)
    parser.add_argument("--pendulum-steps", type=int, default=200)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = rows_for("CartPole-v1", args.cartpole_steps, args.seeds, [dict(simulations=16)])
    rows += rows_for("Pendulum-v1", args.pendulum_steps, args.seeds,
                     [dict(simulations=32, playout_moves=30), dict(simulations=100, playout_moves=30)])
    print("\n| env | agent | mean return | min | ms CPU per move (median) |\n| --- | --- | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['env']} ({row['steps']} steps) | {row['agent']} | {row['mean']:.1f} | {row['min']:.1f} | "
              f"{row['ms_per_move']:.1f} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
