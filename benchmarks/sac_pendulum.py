"""SAC on Pendulum-v1, rladapt vs Stable-Baselines3, side by side: final return and time.

Each (library, seed) run trains for ``--steps`` env steps in its own subprocess (clean torch thread
settings and memory), runs alternate between the libraries (SB3 seed 0, rladapt seed 0, SB3 seed
1, ...) so that load from other processes on a shared machine spreads over both, and each trained
policy plays 50 deterministic episodes (the first reset seeded with 1000).

rladapt: ``SAC(seed=s)`` with its defaults for continuous control (128x128 MLPs, fused twin critics,
one backward pass and one Adam step per gradient step, 4 envs, update-to-data ratio 1). SB3: the
rl-baselines3-zoo hyperparameters for Pendulum-v1 (``learning_rate=1e-3``, otherwise SB3's SAC
defaults: 256x256 MLPs, batch 256, ``train_freq=1``, ``gradient_steps=1``). Both use one torch
thread by default (``--sb3-threads 0`` leaves SB3 at torch's default); times are wall-clock and
process CPU seconds of the training call only.

Usage: ``python benchmarks/sac_pendulum.py [--seeds 3] [--steps 20000] [--sb3-threads 1]``
"""

from __future__ import annotations

import numpy as np
from side_by_side import run_both, sb3_mean_return, time_ratios, timed_learn

ZOO = dict(learning_rate=1e-3)  # rl-baselines3-zoo hyperparams/sac.yml, Pendulum-v1
EVAL_EPISODES, EVAL_SEED = 50, 1000  # Pendulum's start states vary: 10 episodes are too noisy


def run_sb3(seed: int, steps: int) -> dict:
    import gymnasium as gym
    from stable_baselines3 import SAC

    model = SAC("MlpPolicy", gym.make("Pendulum-v1"), seed=seed, verbose=0, **ZOO)
    wall, cpu = timed_learn(lambda: model.learn(steps))
    return {"wall": wall, "cpu": cpu, "mean": sb3_mean_return(model, "Pendulum-v1", EVAL_EPISODES, EVAL_SEED)}


def run_rladapt(seed: int, steps: int) -> dict:
    from rladapt import AutoAdapt
    from rladapt.agents import SAC

    agent = SAC(seed=seed)
    env = AutoAdapt("Pendulum-v1", agent)
    wall, cpu = timed_learn(lambda: agent.learn(env, steps, progress=False, run_dir=False))
    result = agent.evaluate(env, episodes=EVAL_EPISODES, seed=EVAL_SEED)
    return {"wall": wall, "cpu": cpu, "mean": result.mean}


def main() -> None:
    results = run_both(__file__, __doc__.splitlines()[0], run_sb3, run_rladapt, seeds=3, steps=20_000)
    if results is None:
        return
    args = results["args"]
    print(f"\nSAC Pendulum-v1, {args.steps} steps, {args.seeds} seeds, final return = mean of {EVAL_EPISODES} deterministic episodes\n")
    print("| library | final returns | mean | wall s (mean) | CPU s (mean) |")
    print("| --- | --- | ---: | ---: | ---: |")
    for lib, name in (("rladapt", "rladapt SAC (defaults)"), ("sb3", f"SB3 SAC (zoo, {args.sb3_threads or 'default'} thread(s))")):
        rs = results[lib]
        finals = ", ".join(f"{r['mean']:.0f}" for r in rs)
        print(f"| {name} | {finals} | {np.mean([r['mean'] for r in rs]):.1f} | {np.mean([r['wall'] for r in rs]):.1f} | "
              f"{np.mean([r['cpu'] for r in rs]):.1f} |")
    print(f"\n{time_ratios(results)}")


if __name__ == "__main__":
    main()
