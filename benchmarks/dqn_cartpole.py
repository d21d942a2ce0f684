"""DQN on CartPole-v1, rladapt vs Stable-Baselines3, side by side: success rate and time.

Each (library, seed) run trains for ``--steps`` env steps in its own subprocess (clean torch thread
settings and memory), runs alternate between the libraries (SB3 seed 0, rladapt seed 0, SB3 seed
1, ...) so that load from other processes on a shared machine spreads over both, and each trained
policy plays 20 deterministic episodes (the first reset seeded with 1000). A run succeeds when the mean
return is >= 475.

rladapt: ``DQN(seed=s)`` with its defaults for vector observations (double DQN, 3-step returns,
256x256 MLP, 4 envs). SB3: the rl-baselines3-zoo hyperparameters for CartPole-v1 (below). Both use
one torch thread by default (``--sb3-threads 0`` leaves SB3 at torch's default, which on a busy
2-core machine is several times slower); times are wall-clock and process CPU seconds of the
training call only (not the evaluation).

Usage: ``python benchmarks/dqn_cartpole.py [--seeds 5] [--steps 50000] [--sb3-threads 1]``
"""

from __future__ import annotations

import numpy as np
from side_by_side import run_both, sb3_mean_return, time_ratios, timed_learn

ZOO = dict(  # rl-baselines3-zoo hyperparams/dqn.yml, CartPole-v1
    learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000, gamma=0.99,
    target_update_interval=10, train_freq=256, gradient_steps=128, exploration_fraction=0.16,
    exploration_final_eps=0.04, policy_kwargs=dict(net_arch=[256, 256]),
)
EVAL_EPISODES, EVAL_SEED, SUCCESS = 20, 1000, 475.0


def run_sb3(seed: int, steps: int) -> dict:
    import gymnasium as gym
    from stable_baselines3 import DQN

    model = DQN("MlpPolicy", gym.make("CartPole-v1"), seed=seed, verbose=0, **ZOO)
    wall, cpu = timed_learn(lambda: model.learn(steps))
    return {"wall": wall, "cpu": cpu, "mean": sb3_mean_return(model, "CartPole-v1", EVAL_EPISODES, EVAL_SEED)}


def run_rladapt(seed: int, steps: int) -> dict:
    from rladapt import AutoAdapt
    from rladapt.agents import DQN

    agent = DQN(seed=seed)
    env = AutoAdapt("CartPole-v1", agent)
    wall, cpu = timed_learn(lambda: agent.learn(env, steps, progress=False, run_dir=False))
    result = agent.evaluate(env, episodes=EVAL_EPISODES, seed=EVAL_SEED)
    return {"wall": wall, "cpu": cpu, "mean": result.mean}


def main() -> None:
    results = run_both(__file__, __doc__.splitlines()[0], run_sb3, run_rladapt, seeds=5, steps=50_000)
    if results is None:
        return
    args = results["args"]
    print(f"\nDQN CartPole-v1, {args.steps} steps, {args.seeds} seeds, success = mean of {EVAL_EPISODES} deterministic episodes >= {SUCCESS:g}\n")
    print("| library | successes | mean returns | wall s (mean) | CPU s (mean) |")
    print("| --- | ---: | --- | ---: | ---: |")
    for lib, name in (("rladapt", "rladapt DQN (defaults)"), ("sb3", f"SB3 DQN (zoo, {args.sb3_threads or 'default'} thread(s))")):
        rs = results[lib]
        wins = sum(r["mean"] >= SUCCESS for r in rs)
        means = ", ".join(f"{r['mean']:.0f}" for r in rs)
        print(f"| {name} | {wins}/{len(rs)} | {means} | {np.mean([r['wall'] for r in rs]):.1f} | {np.mean([r['cpu'] for r in rs]):.1f} |")
    print(f"\n{time_ratios(results)}")


if __name__ == "__main__":
    main()
