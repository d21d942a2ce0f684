"""DreamerV3 against a model-free agent at the same env steps (sample efficiency).

For each env, each agent learns with rladapt's defaults and is evaluated (``--episodes``
deterministic episodes, fixed seeds) when its env steps pass each of ``--checkpoints``. The
model-free reference is PPO on discrete-action envs and SAC on continuous ones. Wall-clock
seconds of learning (evaluation excluded) are reported too: Dreamer trades CPU time for samples.

Usage::

    python benchmarks/dreamer_sample_efficiency.py [--envs CartPole-v1 Pendulum-v1] [--seeds 0 1 2]
        [--checkpoints 10000 20000 50000] [--episodes 10] [--out figures/dreamer_sample_efficiency.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import gymnasium as gym

from rladapt.callbacks import Callback
from rladapt.registry import get_agent


class ReturnsAt(Callback):
    """Mean evaluation return when the agent's env steps pass each checkpoint."""

    def __init__(self, env_id: str, checkpoints: list[int], episodes: int) -> None:
        self.env_id, self.pending, self.episodes = env_id, sorted(checkpoints), episodes
        self.returns: dict[int, float] = {}
        self.paused = 0.0

    def on_update(self, run, metrics) -> None:
        agent = run.agent
        while self.pending and agent.num_timesteps >= self.pending[0]:
            start = time.perf_counter()
            self.returns[self.pending.pop(0)] = agent.evaluate(self.env_id, episodes=self.episodes, seed=10_000).mean
            self.paused += time.perf_counter() - start


def reference(env_id: str) -> str:
    return "sac" if isinstance(gym.make(env_id).action_space, gym.spaces.Box) else "ppo"


def run(name: str, env_id: str, seed: int, checkpoints: list[int], episodes: int) -> dict:
    agent = get_agent(name)(seed=seed)
    returns = ReturnsAt(env_id, checkpoints, episodes)
    start = time.perf_counter()
    agent.learn(env_id, steps=max(checkpoints), callbacks=[returns], progress=False, run_dir=False)
    for step in returns.pending:  # the last update may end just short of the final checkpoint
        returns.returns[step] = agent.evaluate(env_id, episodes=episodes, seed=10_000).mean
    return {"agent": name, "env": env_id, "seed": seed, "returns": returns.returns,
            "train_s": time.perf_counter() - start - returns.paused}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=["CartPole-v1", "Pendulum-v1"])
    parser.add_argument("--agents", nargs="+", default=None, help="default: dreamer and the env's reference")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--checkpoints", type=int, nargs="+", default=[10_000, 20_000, 50_000])
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows = []
    for env_id in args.envs:
        for name in args.agents or ["dreamer", reference(env_id)]:
            for seed in args.seeds:
                rows.append(run(name, env_id, seed, args.checkpoints, args.episodes))
                row = rows[-1]
                print(f"{env_id} {name} seed {seed}: " + ", ".join(f"{s // 1000}k {r:.1f}" for s, r in sorted(row["returns"].items()))
                      + f" ({row['train_s']:.0f} s)", flush=True)
                if args.out:
                    with open(args.out, "w") as f:
                        json.dump(rows, f, indent=1)
    print("\n| env | agent | " + " | ".join(f"{s // 1000}k" for s in args.checkpoints) + " | train s |")
    print("| --- | --- | " + " | ".join("---:" for _ in args.checkpoints) + " | ---: |")
    for env_id in args.envs:
        for name in args.agents or ["dreamer", reference(env_id)]:
            mine = [row for row in rows if row["env"] == env_id and row["agent"] == name]
            cells = []
            for step in args.checkpoints:
                values = [row["returns"][step] for row in mine]
                spread = statistics.stdev(values) if len(values) > 1 else 0.0
                cells.append(f"{statistics.mean(values):.1f} +- {spread:.1f}")
            seconds = statistics.mean(row["train_s"] for row in mine)
            print(f"| {env_id} | {name} | " + " | ".join(cells) + f" | {seconds:.0f} |")


if __name__ == "__main__":
    main()
