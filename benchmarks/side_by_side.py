"""The harness the off-policy benchmarks share (``dqn_cartpole.py``, ``sac_pendulum.py``): every
(library, seed) run in its own subprocess, libraries alternating seed by seed, training timed on
the wall clock and the process's CPU clock, the trained policy evaluated on fixed seeds."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any, Callable

import numpy as np

Run = Callable[[int, int], dict]


def timed_learn(learn: Callable[[], Any]) -> tuple[float, float]:
    """Wall-clock and CPU seconds of ``learn()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    learn()
    return time.perf_counter() - wall, time.process_time() - cpu


def sb3_mean_return(model: Any, env_id: str, episodes: int, seed: int) -> float:
    """Mean return of ``episodes`` deterministic episodes of an SB3 model, the first reset seeded
    with ``seed`` (as ``rladapt``'s ``agent.evaluate(env, episodes, seed=seed)`` does)."""
    import gymnasium as gym

    env, returns = gym.make(env_id), []
    obs, _ = env.reset(seed=seed)
    while len(returns) < episodes:
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action)
            total, done = total + float(reward), terminated or truncated
        returns.append(total)
        obs, _ = env.reset()
    return float(np.mean(returns))


def run_both(script: str, description: str, run_sb3: Run, run_rladapt: Run, seeds: int, steps: int) -> dict[str, list[dict]] | None:
    """Parse the common options; in a child process (``--one``) do one run and print its JSON,
    returning None; in the parent run every (library, seed) in a subprocess of ``script`` and
    return ``{"sb3": [...], "rladapt": [...]}`` (each run: ``wall``, ``cpu``, ``mean``) plus the
    parsed options under ``"args"``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seeds", type=int, default=seeds)
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--sb3-threads", type=int, default=1, help="torch threads for SB3 (0: torch's default)")
    parser.add_argument("--one", choices=["sb3", "rladapt"], help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:  # a child process: one run, JSON on the last line
        import torch

        threads = args.sb3_threads if args.one == "sb3" else 1
        if threads:
            torch.set_num_threads(threads)
        print(json.dumps((run_sb3 if args.one == "sb3" else run_rladapt)(args.seed, args.steps)))
        return None

    results: dict[str, Any] = {"sb3": [], "rladapt": [], "args": args}
    for seed in range(args.seeds):
        for lib in ("sb3", "rladapt"):
            cmd = [sys.executable, script, "--one", lib, "--seed", str(seed), "--steps", str(args.steps),
                   "--sb3-threads", str(args.sb3_threads)]
            line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            results[lib].append(json.loads(line))
            r = results[lib][-1]
            print(f"{lib:8s} seed {seed}: mean return {r['mean']:8.1f}  wall {r['wall']:7.1f} s  cpu {r['cpu']:7.1f} s", flush=True)
    return results


def time_ratios(results: dict[str, list[dict]]) -> str:
    """rladapt / SB3 mean wall and CPU time, as a line of text."""
    ratio = {k: np.mean([r[k] for r in results["rladapt"]]) / np.mean([r[k] for r in results["sb3"]]) for k in ("wall", "cpu")}
    return f"rladapt / SB3 time: wall {ratio['wall']:.2f}x, CPU {ratio['cpu']:.2f}x"
