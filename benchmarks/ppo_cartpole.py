"""PPO side by side: rladapt vs Stable-Baselines3, wall-clock time to a target evaluation return.

CartPole-v1 (default): both agents use rl-zoo's CartPole hyperparameters (8 envs, n_steps 32,
batch 256, gae_lambda 0.8, gamma 0.98, 20 epochs, ent_coef 0, learning rate and clip range annealed
linearly from 1e-3 and 0.2 over a 100k-step budget), ``torch.set_num_threads(1)``, CPU. Every
``--eval-every`` steps (after the update at that point) both are evaluated by the same function: 10
deterministic episodes on a fresh env with fixed seeds. The clock covers building the agent and env
and training; it is paused during evaluations. A run stops when the mean evaluation return reaches
475 (or the budget is spent). rladapt runs twice per seed: with its own defaults (``PPO(seed=s)``,
nothing else set) and with the rl-zoo settings spelled out. Runs are interleaved (rladapt defaults,
rladapt zoo, SB3, next seed ...) so that load from other processes on a shared machine hits all alike.

``--fast-ablation``: rladapt's defaults twice, with the fast path of :mod:`rladapt.agents.fast`
(``fast=None``, the default) and without it (``fast=False``), beside SB3: what the fast path buys.

``--lunar``: the same protocol on LunarLander-v3 with rl-zoo's LunarLander settings (16 envs,
n_steps 1024, batch 64, gae_lambda 0.98, gamma 0.999, 4 epochs, ent_coef 0.01, lr 3e-4), target 200.

Usage::

    python benchmarks/ppo_cartpole.py [--seeds 0 1 2] [--budget 100000] [--eval-every 2560]
    python benchmarks/ppo_cartpole.py --fast-ablation --seeds $(seq 0 19)
    python benchmarks/ppo_cartpole.py --lunar [--seeds 0] [--budget 1000000] [--eval-every 32768]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import statistics
import time
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch

# rladapt's value loss is 0.5 * MSE (CleanRL), SB3's the plain MSE: SB3's vf_coef 0.5 is rladapt's 1.0.
CARTPOLE = dict(
    env="CartPole-v1", target=475.0, num_envs=8,
    rladapt=dict(n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0,
                 lr=1e-3, anneal_lr=True, clip_range=0.2, anneal_clip=True, vf_coef=1.0),
    sb3=dict(n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0,
             learning_rate=("lin", 1e-3), clip_range=("lin", 0.2)),
)
LUNAR = dict(
    env="LunarLander-v3", target=200.0, num_envs=16,
    rladapt=dict(n_steps=1024, batch_size=64, gae_lambda=0.98, gamma=0.999, n_epochs=4, ent_coef=0.01,
                 lr=3e-4, anneal_lr=False, clip_range=0.2, anneal_clip=False, vf_coef=1.0),
    sb3=dict(n_steps=1024, batch_size=64, gae_lambda=0.98, gamma=0.999, n_epochs=4, ent_coef=0.01,
             learning_rate=3e-4, clip_range=0.2),
)


def evaluate(env_id: str, act: Callable[[np.ndarray], Any], episodes: int = 10, seed: int = 10_000) -> float:
    """Mean return of ``episodes`` deterministic episodes on a fresh env (same seeds for everyone)."""
    env = gym.make(env_id)
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


class Clock:
    """Wall-clock time with evaluations paused.

    During a paused evaluation every child process of this one is stopped (SIGSTOP, then SIGCONT):
    asynchronous learners (A3C's workers, IMPALA's actors) would otherwise go on learning while
    the clock stands still, and get the evaluation's wall time for free.
    """

    def __init__(self) -> None:
        self.start, self.paused = time.perf_counter(), 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.start - self.paused

    def pause(self, fn: Callable[[], Any]) -> Any:
        t = time.perf_counter()
        children = [p.pid for p in multiprocessing.active_children() if p.pid is not None]
        for pid in children:
            os.kill(pid, signal.SIGSTOP)
        try:
            out = fn()
        finally:
            for pid in children:
                os.kill(pid, signal.SIGCONT)
            self.paused += time.perf_counter() - t
        return out


def run_rladapt(setup: dict, seed: int, budget: int, eval_every: int) -> dict:
    from rladapt import AutoAdapt
    from rladapt.agents import PPO

    clock = Clock()
    if setup.get("defaults"):  # rladapt's own defaults: PPO() with no settings
        agent = PPO(seed=seed, num_threads=1, **setup.get("extra", {}))
    else:
        agent = PPO(seed=seed, num_envs=setup["num_envs"], num_threads=1, **setup["rladapt"])
    env = AutoAdapt(gym.make(setup["env"]), agent)
    state: dict[str, Any] = {"next": eval_every, "solved": None, "evals": []}

    def callback(agent: PPO, metrics: dict) -> bool:
        if metrics["step"] < state["next"]:
            return True
        state["next"] += eval_every
        score = clock.pause(lambda: evaluate(setup["env"], agent.act))
        state["evals"].append((metrics["step"], round(score, 1)))
        if score >= setup["target"]:
            state["solved"] = (clock.elapsed(), metrics["step"])
            return False
        return True

    agent.learn(env, budget, progress=False, run_dir=False, callbacks=[callback])
    return time_to_target_result("rladapt", seed, clock, agent.num_timesteps, state)


def run_sb3(setup: dict, seed: int, budget: int, eval_every: int) -> dict:
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    def schedule(value: Any) -> Any:
        if isinstance(value, tuple):
            start = value[1]
            return lambda progress_remaining: progress_remaining * start
        return value

    clock = Clock()
    kwargs = {k: schedule(v) for k, v in setup["sb3"].items()}
    env = make_vec_env(setup["env"], n_envs=setup["num_envs"], seed=seed)
    model = SB3PPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **kwargs)
    state: dict[str, Any] = {"next": eval_every, "solved": None, "evals": []}

    class EvalAfterUpdate(BaseCallback):
        def _on_rollout_start(self) -> None:  # called after each update, like rladapt's callbacks
            step = self.model.num_timesteps
            if step < state["next"] or state["solved"]:
                return
            state["next"] += eval_every
            act = lambda obs: self.model.predict(obs, deterministic=True)[0]  # noqa: E731
            score = clock.pause(lambda: evaluate(setup["env"], act))
            state["evals"].append((step, round(score, 1)))
            if score >= setup["target"]:
                state["solved"] = (clock.elapsed(), step)

        def _on_step(self) -> bool:
            return state["solved"] is None

    model.learn(budget, callback=EvalAfterUpdate())
    return time_to_target_result("sb3", seed, clock, model.num_timesteps, state)


def time_to_target_result(name: str, seed: int, clock: Clock, steps: int, state: dict) -> dict:
    """One run's row: solved or not, time and env steps to the target, training time and speed."""
    elapsed = clock.elapsed()
    solved = state["solved"]
    time_to, steps_to = solved if solved else (None, None)
    return {
        "lib": name, "seed": seed, "solved": solved is not None, "time_to_target_s": time_to, "steps_to_target": steps_to,
        "train_time_s": elapsed, "steps": steps, "steps_per_s": steps / elapsed, "evals": state["evals"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget", type=int, default=None, help="env steps (default 100k; 1M with --lunar)")
    parser.add_argument("--eval-every", type=int, default=None, help="env steps between evaluations")
    parser.add_argument("--lunar", action="store_true", help="LunarLander-v3 instead of CartPole-v1")
    parser.add_argument("--only", choices=["rladapt", "sb3"], default=None)
    parser.add_argument("--fast-ablation", action="store_true",
                        help="rladapt's defaults with the fast path (fast=None) and without (fast=False), and SB3")
    args = parser.parse_args()
    setup = LUNAR if args.lunar else CARTPOLE
    budget = args.budget or (1_000_000 if args.lunar else 100_000)
    eval_every = args.eval_every or (32_768 if args.lunar else 2_560)
    torch.set_num_threads(1)

    # rladapt twice: with its defaults (PPO(seed=...), the row the target applies to) and with
    # rl-zoo's settings spelled out (the same settings SB3 gets).
    defaults = dict(setup, defaults=True)
    runners = [("rladapt (defaults)", lambda s, *a: run_rladapt(defaults, *a)), ("rladapt (zoo settings)", run_rladapt),
               ("sb3", run_sb3)]
    if args.fast_ablation:  # the same defaults, the torch path only: what the fast path buys
        torch_only = dict(defaults, extra={"fast": False})
        runners[1] = ("rladapt (defaults, fast=False)", lambda s, *a: run_rladapt(torch_only, *a))
    results: list[dict] = []
    for seed in args.seeds:
        for name, run in runners:
            if args.only and not name.startswith(args.only):
                continue
            r = dict(run(setup, seed, budget, eval_every), lib=name)
            results.append(r)
            print(json.dumps({k: v for k, v in r.items() if k != "evals"}), flush=True)
            print(f"  evaluations (step, mean return): {r['evals']}", flush=True)

    print(f"\n{setup['env']}, target {setup['target']}, budget {budget}, evaluation every {eval_every} steps")
    print("| library | seeds solved | median time to target (s) | median steps to target | training steps/s (median) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    medians = {}
    for name, _ in runners:
        rs = [r for r in results if r["lib"] == name]
        if not rs:
            continue
        times = [r["time_to_target_s"] if r["solved"] else float("inf") for r in rs]
        steps = [r["steps_to_target"] if r["solved"] else float("inf") for r in rs]
        medians[name] = statistics.median(times)
        print(f"| {name} | {sum(r['solved'] for r in rs)}/{len(rs)} | {statistics.median(times):.2f} | "
              f"{statistics.median(steps):,.0f} | {statistics.median(r['steps_per_s'] for r in rs):,.0f} |")
    if "sb3" in medians and np.isfinite(medians["sb3"]):
        for name in medians:
            if name != "sb3":
                print(f"{name} / SB3 median time to target: {medians[name] / medians['sb3']:.2f}x")


if __name__ == "__main__":
    main()
