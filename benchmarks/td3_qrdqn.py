"""TD3 and QR-DQN on rl-baselines3-zoo rows, rladapt (defaults) beside SB3 / sb3-contrib (zoo settings).

Each (library, seed) run trains in its own subprocess (clean torch thread settings and memory),
libraries alternating seed by seed (SB3 seed 0, rladapt seed 0, SB3 seed 1, ...) so that load from
other processes on a shared machine spreads over both; training is timed on the wall clock and the
process's CPU clock; each trained policy plays deterministic episodes from a first reset seeded
with 1000 (50 on Pendulum, whose start states vary, 20 elsewhere).

rladapt: ``TD3(seed=s)`` / ``QRDQN(seed=s)`` with nothing set (the per-kind defaults). SB3: ``TD3``
and sb3-contrib ``QRDQN`` with the zoo's hyperparameters for the row (``ZOO`` below, from
rl-baselines3-zoo ``hyperparams/td3.yml`` and ``qrdqn.yml``), one torch thread.

Usage::

    python benchmarks/td3_qrdqn.py --list
    python benchmarks/td3_qrdqn.py pendulum-td3 --seeds 3
    python benchmarks/td3_qrdqn.py acrobot-qrdqn --seeds 1 --libs rladapt --steps 50000 --json out.jsonl
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from side_by_side import sb3_mean_return, timed_learn

EVAL_SEED = 1000


@dataclass(frozen=True)
class Row:
    """One zoo row: env, algorithm, budget, the zoo's score, SB3's zoo settings."""

    env: str
    algo: str  # "td3" or "qrdqn"
    budget: int
    zoo_mean: float
    zoo_std: float | None
    zoo: dict[str, Any] = field(default_factory=dict)
    episodes: int = 20


_TD3_ZOO = dict(gamma=0.98, buffer_size=200_000, learning_starts=10_000, noise="normal", noise_std=0.1,
                gradient_steps=-1, train_freq=(1, "episode"), learning_rate=1e-3, net_arch=[400, 300])

ROWS: dict[str, Row] = {
    "pendulum-td3": Row("Pendulum-v1", "td3", 20_000, -151.9, 90.2, _TD3_ZOO, episodes=50),
    "mountaincarcontinuous-td3": Row("MountainCarContinuous-v0", "td3", 300_000, 93.5, None,
                                     dict(noise="ornstein-uhlenbeck", noise_std=0.5, gradient_steps=1, train_freq=1,
                                          learning_rate=1e-3, batch_size=256, net_arch=[400, 300])),
    "lunarlandercontinuous-td3": Row("LunarLanderContinuous-v3", "td3", 300_000, 207.0, None, _TD3_ZOO),
    "cartpole-qrdqn": Row("CartPole-v1", "qrdqn", 50_000, 500.0, 0.0,
                          dict(learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000, gamma=0.99,
                               target_update_interval=10, train_freq=256, gradient_steps=128, exploration_fraction=0.16,
                               exploration_final_eps=0.04, net_arch=[256, 256], n_quantiles=10)),
    "acrobot-qrdqn": Row("Acrobot-v1", "qrdqn", 100_000, -69.1, None,
                         dict(learning_rate=6.3e-4, batch_size=128, buffer_size=50_000, learning_starts=0, gamma=0.99,
                              target_update_interval=250, train_freq=4, gradient_steps=-1, exploration_fraction=0.12,
                              exploration_final_eps=0.1, net_arch=[256, 256], n_quantiles=25)),
    "lunarlander-qrdqn": Row("LunarLander-v3", "qrdqn", 100_000, 70.2, None,
                             dict(learning_rate="lin_1.5e-3", batch_size=128, buffer_size=100_000, learning_starts=10_000,
                                  gamma=0.995, target_update_interval=1, train_freq=256, gradient_steps=-1,
                                  exploration_fraction=0.24, exploration_final_eps=0.18, net_arch=[256, 256],
                                  n_quantiles=170)),
}


def run_sb3(row: Row, seed: int, steps: int) -> dict:
    import gymnasium as gym

    settings = dict(row.zoo)
    arch = settings.pop("net_arch")
    env = gym.make(row.env)
    if row.algo == "td3":
        from stable_baselines3 import TD3
        from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise

        dim = env.action_space.shape[0]
        kind, std = settings.pop("noise"), settings.pop("noise_std")
        noise_cls = NormalActionNoise if kind == "normal" else OrnsteinUhlenbeckActionNoise
        settings["action_noise"] = noise_cls(mean=np.zeros(dim), sigma=std * np.ones(dim))
        if isinstance(settings.get("train_freq"), tuple):
            settings["train_freq"] = tuple(settings["train_freq"])
        model = TD3("MlpPolicy", env, seed=seed, verbose=0, policy_kwargs=dict(net_arch=arch), **settings)
    else:
        from sb3_contrib import QRDQN

        quantiles = settings.pop("n_quantiles")
        lr = settings.pop("learning_rate")
        if isinstance(lr, str):  # the zoo's "lin_<lr>": linear decay to 0
            start = float(lr.removeprefix("lin_"))
            lr = lambda remaining: remaining * start  # noqa: E731
        model = QRDQN("MlpPolicy", env, seed=seed, verbose=0, learning_rate=lr,
                      policy_kwargs=dict(net_arch=arch, n_quantiles=quantiles), **settings)
    wall, cpu = timed_learn(lambda: model.learn(steps))
    return {"wall": wall, "cpu": cpu, "mean": sb3_mean_return(model, row.env, row.episodes, EVAL_SEED)}


def run_rladapt(row: Row, seed: int, steps: int) -> dict:
    from rladapt import AutoAdapt
    from rladapt.agents import QRDQN, TD3

    agent = (TD3 if row.algo == "td3" else QRDQN)(seed=seed)
    env = AutoAdapt(row.env, agent)
    wall, cpu = timed_learn(lambda: agent.learn(env, steps, progress=False, run_dir=False))
    result = agent.evaluate(env, episodes=row.episodes, seed=EVAL_SEED)
    return {"wall": wall, "cpu": cpu, "mean": result.mean}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("row", nargs="?", choices=sorted(ROWS))
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None, help="env steps (default: the zoo's budget)")
    parser.add_argument("--libs", nargs="+", default=["sb3", "rladapt"], choices=["sb3", "rladapt"])
    parser.add_argument("--json", default=None, help="append each run's result to this JSON-lines file")
    parser.add_argument("--one", choices=["sb3", "rladapt"], help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.list or args.row is None:
        for name, row in ROWS.items():
            print(f"{name:28s} {row.env} {row.algo} @{row.budget:,}: zoo {row.zoo_mean}")
        return
    row = ROWS[args.row]
    steps = args.steps or row.budget

    if args.one:  # a child process: one run, JSON on the last line
        import torch

        torch.set_num_threads(1)
        print(json.dumps((run_sb3 if args.one == "sb3" else run_rladapt)(row, args.seed, steps)))
        return

    results: dict[str, list[dict]] = {lib: [] for lib in args.libs}
    for seed in range(args.seeds):
        for lib in args.libs:
            cmd = [sys.executable, __file__, args.row, "--one", lib, "--seed", str(seed), "--steps", str(steps)]
            line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            r = {**json.loads(line), "row": args.row, "lib": lib, "seed": seed, "steps": steps}
            results[lib].append(r)
            print(f"{lib:8s} seed {seed}: mean return {r['mean']:8.1f}  wall {r['wall']:7.1f} s  cpu {r['cpu']:7.1f} s", flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(r) + "\n")

    zoo = f"{row.zoo_mean:g}" + (f" +- {row.zoo_std:g}" if row.zoo_std is not None else "")
    print(f"\n{row.env} {row.algo.upper()} @{steps:,} (zoo {zoo} @{row.budget:,}), {args.seeds} seed(s), "
          f"{row.episodes} deterministic episodes each\n")
    print("| library | returns per seed | mean | wall s (mean) | CPU s (mean) |")
    print("| --- | --- | ---: | ---: | ---: |")
    for lib, rs in results.items():
        name = f"rladapt {row.algo.upper()} (defaults)" if lib == "rladapt" else f"SB3 {row.algo.upper()} (zoo, 1 thread)"
        per_seed = ", ".join(f"{r['mean']:.1f}" for r in rs)
        print(f"| {name} | {per_seed} | {np.mean([r['mean'] for r in rs]):.1f} | "
              f"{np.mean([r['wall'] for r in rs]):.1f} | {np.mean([r['cpu'] for r in rs]):.1f} |")
    if len(results) == 2:
        ratio = {k: np.mean([r[k] for r in results["rladapt"]]) / np.mean([r[k] for r in results["sb3"]]) for k in ("wall", "cpu")}
        print(f"\nrladapt / SB3 time: wall {ratio['wall']:.2f}x, CPU {ratio['cpu']:.2f}x")


if __name__ == "__main__":
    main()
