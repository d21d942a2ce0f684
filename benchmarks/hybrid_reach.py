"""PPO on the hybrid-action env rladapt/HybridReach-v0, rladapt vs Stable-Baselines3: return and time.

The env's action is ``Dict(direction: Discrete(4), strength: Box(0, 1, (1,)))``. rladapt's PPO
takes it as it is (one head per leaf, log-probabilities summed, the direction masked at the
edges) with its defaults (``PPO(seed=s)``). Stable-Baselines3 cannot: its PPO refuses a Dict
action space (the error is recorded in each SB3 run's output, ``sb3_error``). What an SB3 user can
do instead is run the action space flattened into one ``Discrete(28)`` (4 directions x 7
strengths, the strength at bin centers: what rladapt's AutoAdapt does for DQN); that is the SB3
column, with the rl-baselines3-zoo CartPole-v1 PPO settings (8 envs, n_steps 32, batch 256, 20
epochs, lr 1e-3 and clip 0.2 annealed, gamma 0.98, gae_lambda 0.8), no masks. Each (library,
seed) run is its own subprocess, libraries alternating; the trained policy plays 20 deterministic
episodes (first reset seeded with 10,000); times are the training call's wall-clock and process
CPU seconds, one torch thread.

Usage: ``python benchmarks/hybrid_reach.py [--seeds 3] [--steps 40000]``
"""

from __future__ import annotations

import numpy as np
from side_by_side import run_both, time_ratios, timed_learn

ENV_ID = "rladapt/HybridReach-v0"
EVAL_EPISODES, EVAL_SEED = 20, 10_000


def _flat_discrete_env():
    from rladapt import AutoAdapt
    from rladapt.spec import AgentSpec

    import rladapt.envs  # noqa: F401

    return AutoAdapt(ENV_ID, AgentSpec(observations={"vector"}, actions={"discrete"}), mask=False)


def run_sb3(seed: int, steps: int) -> dict:
    import gymnasium as gym
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    import rladapt.envs  # noqa: F401

    try:
        PPO("MlpPolicy", gym.make(ENV_ID), seed=seed, verbose=0)
        error = None
    except Exception as failure:  # what SB3 says about a Dict action space
        error = f"{type(failure).__name__}: {failure}"
    schedule = lambda start: (lambda remaining: remaining * start)  # noqa: E731  (the zoo's lin_ schedules)
    model = PPO("MlpPolicy", make_vec_env(_flat_discrete_env, n_envs=8, seed=seed), seed=seed, verbose=0, n_steps=32,
                batch_size=256, n_epochs=20, gamma=0.98, gae_lambda=0.8, ent_coef=0.0,
                learning_rate=schedule(1e-3), clip_range=schedule(0.2))
    wall, cpu = timed_learn(lambda: model.learn(steps))
    env, returns = _flat_discrete_env(), []
    obs, _ = env.reset(seed=EVAL_SEED)
    while len(returns) < EVAL_EPISODES:
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(int(action))
            total, done = total + float(reward), terminated or truncated
        returns.append(total)
        obs, _ = env.reset()
    return {"wall": wall, "cpu": cpu, "mean": float(np.mean(returns)), "sb3_error": error}


def run_rladapt(seed: int, steps: int) -> dict:
    from rladapt import AutoAdapt
    from rladapt.agents import PPO

    import rladapt.envs  # noqa: F401

    agent = PPO(seed=seed)
    env = AutoAdapt(ENV_ID, agent)
    wall, cpu = timed_learn(lambda: agent.learn(env, steps, progress=False, run_dir=False))
    result = agent.evaluate(env, episodes=EVAL_EPISODES, seed=EVAL_SEED)
    return {"wall": wall, "cpu": cpu, "mean": result.mean, "length": float(result.lengths.mean())}


def main() -> None:
    results = run_both(__file__, __doc__.splitlines()[0], run_sb3, run_rladapt, seeds=3, steps=40_000)
    if results is None:
        return
    args = results["args"]
    print(f"\nPPO {ENV_ID}, {args.steps} steps, {args.seeds} seeds, return = mean of {EVAL_EPISODES} deterministic episodes\n")
    print(f"SB3 on the Dict action space: {results['sb3'][0]['sb3_error']}\n")
    print("| library | returns | mean | wall s (mean) | CPU s (mean) |")
    print("| --- | --- | ---: | ---: | ---: |")
    rows = (("rladapt", "rladapt PPO (defaults), Dict action, per-leaf mask"),
            ("sb3", "SB3 PPO (zoo CartPole settings), flattened to Discrete(28), no mask"))
    for lib, name in rows:
        rs = results[lib]
        returns = ", ".join(f"{r['mean']:.2f}" for r in rs)
        print(f"| {name} | {returns} | {np.mean([r['mean'] for r in rs]):.2f} | "
              f"{np.mean([r['wall'] for r in rs]):.1f} | {np.mean([r['cpu'] for r in rs]):.1f} |")
    print(f"\n{time_ratios(results)}")


if __name__ == "__main__":
    main()
