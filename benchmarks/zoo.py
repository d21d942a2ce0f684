"""rladapt with its defaults on rows of rl-baselines3-zoo's benchmark table, at the zoo's budgets.

One row at a time, seeds from the command line; every seed trains in a subprocess of its own with
nothing but ``Agent(seed=s)`` (per-kind defaults, never per-env settings) and is then evaluated
on 20 deterministic episodes of a fresh env (10 for Atari). The row's score is the mean over
seeds of the per-seed means, with the std of all evaluation episodes pooled, beside the zoo's
``mean +- std`` (one run, its own evaluation). A row passes at or above the zoo's mean minus its std.

Usage::

    python benchmarks/zoo.py --list
    python benchmarks/zoo.py lunarlander-ppo --seeds 0 1 2
    python benchmarks/zoo.py hopper-sac --seeds 0 --budget 200000 --eval-every 50000   # a partial budget, with a curve
    python benchmarks/zoo.py acrobot-dqn --seeds 0 1 2 --json results.jsonl             # append the per-seed results
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Row:
    """One row of the zoo's table: env, agent, budget in env steps, the zoo's score."""

    env: str
    agent: str
    budget: int
    zoo_mean: float
    zoo_std: float | None
    source: str = "rl-baselines3-zoo benchmark.md"

    @property
    def threshold(self) -> float:
        return self.zoo_mean - (self.zoo_std or 0.0)


ROWS: dict[str, Row] = {
    "acrobot-dqn": Row("Acrobot-v1", "dqn", 100_000, -76.6, 11.8),
    "acrobot-a2c": Row("Acrobot-v1", "a2c", 500_000, -83.4, 17.2),
    "acrobot-ppo": Row("Acrobot-v1", "ppo", 1_000_000, -73.5, 18.2),
    "mountaincar-dqn": Row("MountainCar-v0", "dqn", 120_000, -100.9, 9.9),
    "lunarlander-dqn": Row("LunarLander-v3", "dqn", 100_000, 154.4, 79.2),
    "lunarlander-ppo": Row("LunarLander-v3", "ppo", 1_000_000, 242.1, 31.8),
    "lunarlander-a2c": Row("LunarLander-v3", "a2c", 200_000, 155.8, 80.4),
    "pendulum-sac": Row("Pendulum-v1", "sac", 20_000, -157.0, 88.7),
    "pendulum-ppo": Row("Pendulum-v1", "ppo", 100_000, -172.2, 104.2),
    "mountaincarcontinuous-sac": Row("MountainCarContinuous-v0", "sac", 50_000, 94.7, 1.1),
    "mountaincarcontinuous-ppo": Row("MountainCarContinuous-v0", "ppo", 20_000, 88.3, 2.6),
    "bipedalwalker-sac": Row("BipedalWalker-v3", "sac", 500_000, 297.7, 33.1),
    "hopper-sac": Row("Hopper-v5", "sac", 1_000_000, 2325.6, None),
    "halfcheetah-sac": Row("HalfCheetah-v5", "sac", 1_000_000, 9535.5, None),
    "hopper-ppo": Row("Hopper-v5", "ppo", 1_000_000, 2410.4, None),
    "halfcheetah-ppo": Row("HalfCheetah-v5", "ppo", 1_000_000, 5819.1, None),
    "pong-ppo": Row("ALE/Pong-v5", "ppo", 10_000_000, 20.4, None, "CleanRL ppo_atari"),
    "breakout-ppo": Row("ALE/Breakout-v5", "ppo", 10_000_000, 398.0, None, "CleanRL ppo_atari"),
}

SEED_SCRIPT = """
import json, sys, time
import gymnasium as gym
import numpy as np
import torch
import rladapt
from rladapt import AutoAdapt
from rladapt.registry import get_agent
try:
    import ale_py
    gym.register_envs(ale_py)
except ImportError:
    pass

env_id, agent_name, budget, seed, eval_every, episodes = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
settings = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(sys.argv[7]).items()}


def evaluate(agent, n):
    env = AutoAdapt(env_id, agent)
    result = agent.evaluate(env, episodes=n, seed=10_000 + seed)
    env.close()
    return result.returns.tolist()


agent = get_agent(agent_name)(seed=seed, **settings)
curve = []
next_eval = [eval_every]
clock = {"paused": 0.0}


def checkpoint(agent, metrics):
    if eval_every and metrics["step"] >= next_eval[0]:
        t = time.perf_counter()
        curve.append((metrics["step"], float(np.mean(evaluate(agent, 5)))))
        clock["paused"] += time.perf_counter() - t
        next_eval[0] += eval_every


start = time.perf_counter()
agent.learn(AutoAdapt(env_id, agent), budget, progress=False, run_dir=False, callbacks=[checkpoint])
wall = time.perf_counter() - start - clock["paused"]
returns = evaluate(agent, episodes)
print(json.dumps({"seed": seed, "steps": agent.num_timesteps, "train_time_s": wall, "returns": returns,
                  "mean": float(np.mean(returns)), "curve": curve, "settings": agent.settings(resolved=True)}))
"""


def run_seed(row: Row, seed: int, budget: int, eval_every: int, threads: int, settings: dict | None = None) -> dict:
    episodes = 10 if row.env.startswith("ALE/") else 20
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-c", SEED_SCRIPT, row.env, row.agent, str(budget), str(seed), str(eval_every),
                           str(episodes), json.dumps(settings or {})], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"seed {seed} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(name: str, row: Row, budget: int, results: list[dict]) -> str:
    means = [r["mean"] for r in results]
    pooled = [x for r in results for x in r["returns"]]
    score, spread = float(np.mean(means)), float(np.std(pooled))
    zoo = f"{row.zoo_mean:g}" + (f" +- {row.zoo_std:g}" if row.zoo_std is not None else "")
    verdict = "pass" if score >= row.threshold else "short"
    partial = "" if budget == row.budget else f" (budget {budget:,} of {row.budget:,})"
    time_s = statistics.median(r["train_time_s"] for r in results)
    return (f"| {row.env} | {row.agent.upper()} @{row.budget:,}{partial} | {zoo} | {score:.1f} +- {spread:.1f} "
            f"(seeds: {', '.join(f'{m:.1f}' for m in means)}) | {verdict} | {time_s:,.0f} s |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("row", nargs="?", choices=sorted(ROWS))
    parser.add_argument("--list", action="store_true", help="list the rows")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget", type=int, default=None, help="env steps (default: the zoo's budget)")
    parser.add_argument("--eval-every", type=int, default=0, help="also evaluate (5 episodes) every this many steps: a curve")
    parser.add_argument("--threads", type=int, default=1, help="OMP threads of each seed's process")
    parser.add_argument("--json", type=Path, default=None, help="append each seed's result to this JSON-lines file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an agent setting, for sweeps (VALUE in JSON); the table's rows use the defaults only")
    args = parser.parse_args()
    if args.list or args.row is None:
        for name, row in ROWS.items():
            print(f"{name:28s} {row.env:26s} {row.agent:4s} @{row.budget:>10,}  zoo {row.zoo_mean} +- {row.zoo_std}")
        return
    row = ROWS[args.row]
    budget = args.budget or row.budget
    settings = {}
    for pair in args.set:
        key, _, value = pair.partition("=")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    results = []
    for seed in args.seeds:
        t = time.perf_counter()
        result = run_seed(row, seed, budget, args.eval_every, args.threads, settings)
        result.update(row=args.row, budget=budget, wall_s=time.perf_counter() - t, overrides=settings)
        results.append(result)
        print(json.dumps({k: v for k, v in result.items() if k not in ("returns", "settings")}), flush=True)
        if args.json is not None:
            with open(args.json, "a") as f:
                f.write(json.dumps(result) + "\n")
    print("| env | agent @ budget | zoo | rladapt defaults (mean over seeds +- std of episodes) | | train time (median) |")
    print("| --- | --- | ---: | ---: | --- | ---: |")
    print(summary(args.row, row, budget, results) + (f" settings {settings}" if settings else ""))


if __name__ == "__main__":
    main()
