"""SAC on Pendulum-v1, rladapt vs Stable-Baselines3, side by side: final return and time.

Each (library, seed) run trains for ``--steps`` env steps in its own subprocess (clean torch thread
settings and memory), runs alternate between the libraries (SB3 seed 0, rladapt seed 0, SB3 seed
1, ...) so that load from other processes on a shared machine spreads over both, and each trained
policy plays 50 deterministic episodes (the first reset seeded with 1000).

rladapt: ``SAC(seed=s)`` with its defaults for continuous control (64x64 MLPs, fused twin critics,
one backward pass and one Adam step per gradient step, 4 envs, update-to-data ratio 1). SB3: the
rl-baselines3-zoo hyperparameters for Pendulum-v1 (``learning_rate=1e-3``, otherwise SB3's SAC
defaults: 256x256 MLPs, batch 256, ``train_freq=1``, ``gradient_steps=1``). Both use one torch
thread by default (``--sb3-threads 0`` leaves SB3 at torch's default); times are wall-clock and
process CPU seconds of the training call only.

Usage: ``python benchmarks/sac_pendulum.py [--seeds 3] [--steps 20000] [--sb3-threads 1]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

ZOO = dict(learning_rate=1e-3)  # rl-baselines3-zoo hyperparams/sac.yml, Pendulum-v1
EVAL_EPISODES, EVAL_SEED = 50, 1000  # Pendulum's start states vary: 10 episodes are too noisy


def run_sb3(seed: int, steps: int) -> dict:
    import gymnasium as gym
    from stable_baselines3 import SAC

    model = SAC("MlpPolicy", gym.make("Pendulum-v1"), seed=seed, verbose=0, **ZOO)
    wall, cpu = time.perf_counter(), time.process_time()
    model.learn(steps)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    env, returns = gym.make("Pendulum-v1"), []
    obs, _ = env.reset(seed=EVAL_SEED)
    while len(returns) < EVAL_EPISODES:
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action)
            total, done = total + float(reward), terminated or truncated
        returns.append(total)
        obs, _ = env.reset()
    return {"wall": wall, "cpu": cpu, "mean": float(np.mean(returns))}


def run_rladapt(seed: int, steps: int) -> dict:
    from rladapt import AutoAdapt
    from rladapt.agents import SAC

    agent = SAC(seed=seed)
    env = AutoAdapt("Pendulum-v1", agent)
    wall, cpu = time.perf_counter(), time.process_time()
    agent.learn(env, steps, progress=False, run_dir=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    result = agent.evaluate(env, episodes=EVAL_EPISODES, seed=EVAL_SEED)
    return {"wall": wall, "cpu": cpu, "mean": result.mean}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--sb3-threads", type=int, default=1, help="torch threads for SB3 (0: torch's default)")
    parser.add_argument("--one", choices=["sb3", "rladapt"], help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:  # a child process: one run, JSON on the last line
        import torch

        threads = args.sb3_threads if args.one == "sb3" else 1
        if threads:
            torch.set_num_threads(threads)
        out = (run_sb3 if args.one == "sb3" else run_rladapt)(args.seed, args.steps)
        print(json.dumps(out))
        return

    results: dict[str, list[dict]] = {"sb3": [], "rladapt": []}
    for seed in range(args.seeds):
        for lib in ("sb3", "rladapt"):
            cmd = [sys.executable, __file__, "--one", lib, "--seed", str(seed), "--steps", str(args.steps),
                   "--sb3-threads", str(args.sb3_threads)]
            line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            results[lib].append(json.loads(line))
            r = results[lib][-1]
            print(f"{lib:8s} seed {seed}: mean return {r['mean']:8.1f}  wall {r['wall']:7.1f} s  cpu {r['cpu']:7.1f} s", flush=True)

    print(f"\nSAC Pendulum-v1, {args.steps} steps, {args.seeds} seeds, final return = mean of {EVAL_EPISODES} deterministic episodes\n")
    print("| library | final returns | mean | wall s (mean) | CPU s (mean) |")
    print("| --- | --- | ---: | ---: | ---: |")
    for lib, name in (("rladapt", "rladapt SAC (defaults)"), ("sb3", f"SB3 SAC (zoo, {args.sb3_threads or 'default'} thread(s))")):
        rs = results[lib]
        finals = ", ".join(f"{r['mean']:.0f}" for r in rs)
        print(f"| {name} | {finals} | {np.mean([r['mean'] for r in rs]):.1f} | {np.mean([r['wall'] for r in rs]):.1f} | "
              f"{np.mean([r['cpu'] for r in rs]):.1f} |")
    wall = np.mean([r["wall"] for r in results["rladapt"]]) / np.mean([r["wall"] for r in results["sb3"]])
    cpu = np.mean([r["cpu"] for r in results["rladapt"]]) / np.mean([r["cpu"] for r in results["sb3"]])
    print(f"\nrladapt / SB3 time: wall {wall:.2f}x, CPU {cpu:.2f}x")


if __name__ == "__main__":
    main()
