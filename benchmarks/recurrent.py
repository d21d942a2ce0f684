"""Recurrent PPO side by side: rladapt ``PPO(recurrent="lstm")`` with its defaults, sb3-contrib's
``RecurrentPPO`` with rl-zoo's settings (``hyperparams/ppo_lstm.yml``), and feed-forward rladapt
``PPO`` for contrast, on rl-zoo's velocity-free rows:

- ``CartPoleNoVel-v1`` (zoo: 500 at 100k): 8 envs, n_steps 32, batch 256, gae_lambda 0.8, gamma
  0.98, 20 epochs, ent_coef 0, learning rate and clip range annealed from 1e-3 and 0.2;
- ``PendulumNoVel-v1`` (zoo: -217.9 +- 140 at 100k): 4 envs, n_steps 1024, gae_lambda 0.95, gamma
  0.9, 10 epochs, lr 1e-3, clip 0.2, gSDE (sample freq 4), VecNormalize (sb3-contrib's default
  batch 128, LSTM 256 units).

Both libraries see the same observations: ``rladapt/CartPoleNoVel-v1`` / ``rladapt/PendulumNoVel-v1``
(rl-zoo zeroes the velocities, these drop them: the same information). After training, each agent
plays 10 deterministic episodes on a fresh env (seeds 10000..10009), carrying its recurrent state
through each episode. Reported: the mean return, the wall time and the process CPU time of
training (single-threaded torch, CPU). One process at a time (the machine is shared).

Usage::

    python benchmarks/recurrent.py --env cartpole --agents rladapt sb3 ff --seeds 0 1 2 [--budget 100000]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import rladapt.envs  # noqa: F401  (registers the velocity-free envs)

ROWS: dict[str, dict[str, Any]] = {
    "cartpole": dict(env="rladapt/CartPoleNoVel-v1", zoo="500 @ 100k",
                     sb3=dict(n_envs=8, normalize=False,
                              kwargs=dict(n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20,
                                          ent_coef=0.0, learning_rate="lin_1e-3", clip_range="lin_0.2"))),
    "pendulum": dict(env="rladapt/PendulumNoVel-v1", zoo="-217.9 +- 140 @ 100k",
                     sb3=dict(n_envs=4, normalize=True,
                              kwargs=dict(n_steps=1024, gae_lambda=0.95, gamma=0.9, n_epochs=10, ent_coef=0.0,
                                          learning_rate=1e-3, clip_range=0.2, use_sde=True, sde_sample_freq=4))),
}


def _schedule(value: Any) -> Any:
    """rl-zoo's ``lin_x``: linear from ``x`` to 0 over training."""
    if isinstance(value, str) and value.startswith("lin_"):
        start = float(value[4:])
        return lambda remaining: remaining * start
    return value


def run_rladapt(env_id: str, seed: int, budget: int, recurrent: str | None) -> dict[str, Any]:
    from rladapt import AutoAdapt
    from rladapt.agents import PPO

    wall, cpu = time.perf_counter(), time.process_time()
    agent = PPO(seed=seed, recurrent=recurrent)
    env = AutoAdapt(gym.make(env_id), agent)
    agent.learn(env, steps=budget, progress=False, run_dir=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    returns = []
    for i in range(10):
        obs, info = env.reset(seed=10_000 + i)
        state, total, done = None, 0.0, False
        while not done:
            if recurrent:
                action, state = agent.act(obs, state=state)
            else:
                action = agent.act(obs)
            obs, reward, terminated, truncated, info = env.step(action)
            total += float(info["episode"]["r"]) if (terminated or truncated) else 0.0
            done = terminated or truncated
        returns.append(total)
    return dict(mean=float(np.mean(returns)), wall=wall, cpu=cpu)


def run_sb3(row: dict[str, Any], seed: int, budget: int) -> dict[str, Any]:
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    settings = row["sb3"]
    wall, cpu = time.perf_counter(), time.process_time()
    venv = make_vec_env(row["env"], n_envs=settings["n_envs"], seed=seed)
    if settings["normalize"]:
        venv = VecNormalize(venv, gamma=settings["kwargs"]["gamma"])
    kwargs = {k: _schedule(v) for k, v in settings["kwargs"].items()}
    model = RecurrentPPO("MlpLstmPolicy", venv, seed=seed, device="cpu", **kwargs)
    model.learn(budget)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if settings["normalize"]:
        venv.training = False
    env, returns = gym.make(row["env"]), []
    for i in range(10):
        obs, _ = env.reset(seed=10_000 + i)
        state, start, total, done = None, np.ones((1,), dtype=bool), 0.0, False
        while not done:
            model_obs = venv.normalize_obs(obs[None]) if settings["normalize"] else obs[None]
            action, state = model.predict(model_obs, state=state, episode_start=start, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action[0])
            total += float(reward)
            start = np.zeros((1,), dtype=bool)
            done = terminated or truncated
        returns.append(total)
    return dict(mean=float(np.mean(returns)), wall=wall, cpu=cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", choices=sorted(ROWS), default="cartpole")
    parser.add_argument("--agents", nargs="+", choices=["rladapt", "sb3", "ff"], default=["rladapt", "sb3", "ff"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budget", type=int, default=100_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    row = ROWS[args.env]
    for seed in args.seeds:  # interleaved, so that the shared machine's load hits every agent alike
        for which in args.agents:
            if which == "sb3":
                result = run_sb3(row, seed, args.budget)
            else:
                result = run_rladapt(row["env"], seed, args.budget, "lstm" if which == "rladapt" else None)
            print(json.dumps(dict(env=row["env"], agent=which, seed=seed, budget=args.budget, **result)), flush=True)


if __name__ == "__main__":
    main()
