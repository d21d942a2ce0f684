"""DQN on CartPole-v1, rladapt vs Stable-Baselines3: wall-clock time and env steps to a mean
evaluation return of 475 (the protocol of ``ppo_cartpole.py``, which ``dqn_cartpole.py``'s fixed
budget does not measure).

rladapt: ``DQN(seed=s, num_threads=1)`` with its defaults. SB3: ``DQN`` with rl-baselines3-zoo's
CartPole-v1 settings (``dqn_cartpole.ZOO``), one torch thread. Every ``--eval-every`` env steps
both are evaluated by the same function (``ppo_cartpole.evaluate``: 10 greedy episodes on a fresh
env, fixed seeds) with the clock paused; a run stops at a mean >= 475 or at the budget. The clock
covers building the agent and env and training. Runs alternate rladapt / SB3 seed by seed, so load
from other processes on a shared machine hits both alike. A run that does not reach 475 counts as
infinitely slow in the medians.

``--fast-ablation`` adds rladapt's defaults with ``fast=False`` (autograd instead of the
hand-written TD gradient of :mod:`rladapt.agents.fast_q`; the same weights) in the same run;
``--denormal-ablation`` adds them with denormal floats left to the CPU's slow path (learn's
:func:`rladapt.numerics.denormals_flushed` replaced by a no-op here; the same weights).

Usage::

    python benchmarks/dqn_time_to_solve.py [--seeds 100 101 ...] [--budget 50000] [--eval-every 2500] [--fast-ablation] [--denormal-ablation]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
from typing import Any
from unittest import mock

import gymnasium as gym
import numpy as np
import torch
from dqn_cartpole import ZOO
from ppo_cartpole import Clock, evaluate, time_to_target_result

ENV_ID, TARGET = "CartPole-v1", 475.0


def run_rladapt(seed: int, budget: int, eval_every: int, fast: bool | None = None, flush: bool = True) -> dict:
    import rladapt.train.loop
    from rladapt import AutoAdapt
    from rladapt.agents import DQN

    clock = Clock()
    agent = DQN(seed=seed, num_threads=1, fast=fast)
    env = AutoAdapt(gym.make(ENV_ID), agent)
    state: dict[str, Any] = {"next": eval_every, "solved": None, "evals": []}

    def callback(agent: DQN, metrics: dict) -> bool:
        if metrics["step"] < state["next"]:
            return True
        state["next"] += eval_every
        score = clock.pause(lambda: evaluate(ENV_ID, lambda obs: agent.act(obs, deterministic=True)))
        state["evals"].append((metrics["step"], round(score, 1)))
        if score >= TARGET:
            state["solved"] = (clock.elapsed(), metrics["step"])
            return False
        return True

    with contextlib.ExitStack() as stack:
        if not flush:
            stack.enter_context(mock.patch.object(rladapt.train.loop, "denormals_flushed", contextlib.nullcontext))
        agent.learn(env, budget, progress=False, run_dir=False, callbacks=[callback])
    name = ("rladapt DQN (defaults)" if fast is None else "rladapt DQN (fast=False)") + ("" if flush else ", denormals kept")
    return time_to_target_result(name, seed, clock, agent.num_timesteps, state)


def run_rladapt_autograd(seed: int, budget: int, eval_every: int) -> dict:
    return run_rladapt(seed, budget, eval_every, fast=False)


def run_rladapt_denormals_kept(seed: int, budget: int, eval_every: int) -> dict:
    return run_rladapt(seed, budget, eval_every, flush=False)


def run_sb3(seed: int, budget: int, eval_every: int) -> dict:
    from stable_baselines3 import DQN as SB3DQN
    from stable_baselines3.common.callbacks import BaseCallback

    clock = Clock()
    model = SB3DQN("MlpPolicy", gym.make(ENV_ID), seed=seed, device="cpu", verbose=0, **ZOO)
    state: dict[str, Any] = {"next": eval_every, "solved": None, "evals": []}

    class EvalEvery(BaseCallback):
        def _on_step(self) -> bool:
            step = self.model.num_timesteps
            if step >= state["next"]:
                state["next"] += eval_every
                act = lambda obs: self.model.predict(obs, deterministic=True)[0]  # noqa: E731
                score = clock.pause(lambda: evaluate(ENV_ID, act))
                state["evals"].append((step, round(score, 1)))
                if score >= TARGET:
                    state["solved"] = (clock.elapsed(), step)
            return state["solved"] is None

    model.learn(budget, callback=EvalEvery())
    return time_to_target_result("sb3 DQN (zoo)", seed, clock, model.num_timesteps, state)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(100, 120)))
    parser.add_argument("--budget", type=int, default=50_000)
    parser.add_argument("--eval-every", type=int, default=2_500)
    parser.add_argument("--fast-ablation", action="store_true",
                        help="also run rladapt with fast=False (autograd TD gradient)")
    parser.add_argument("--denormal-ablation", action="store_true",
                        help="also run rladapt with denormals left to the CPU's slow path")
    args = parser.parse_args()
    runs = [run_rladapt, run_sb3] + [run_rladapt_autograd] * args.fast_ablation + [run_rladapt_denormals_kept] * args.denormal_ablation
    torch.set_num_threads(1)
    results: list[dict] = []
    for seed in args.seeds:
        for run in runs:
            r = run(seed, args.budget, args.eval_every)
            results.append(r)
            print(json.dumps({k: v for k, v in r.items() if k != "evals"}), flush=True)
            print(f"  evaluations (step, mean return): {r['evals']}", flush=True)
    print(f"\n{ENV_ID}, target {TARGET}, budget {args.budget}, evaluation every {args.eval_every} steps, seeds {args.seeds}")
    print("| library | seeds solved | median time to target (s) | median steps to target | training steps/s (median) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    medians = {}
    for name in dict.fromkeys(r["lib"] for r in results):
        rs = [r for r in results if r["lib"] == name]
        times = [r["time_to_target_s"] if r["solved"] else float("inf") for r in rs]
        steps = [r["steps_to_target"] if r["solved"] else float("inf") for r in rs]
        medians[name] = statistics.median(times)
        print(f"| {name} | {sum(r['solved'] for r in rs)}/{len(rs)} | {medians[name]:.2f} | {statistics.median(steps):,.0f} | "
              f"{statistics.median(r['steps_per_s'] for r in rs):,.0f} |")
    names = list(medians)
    if np.isfinite(medians[names[1]]):
        for name in names[:1] + names[2:]:
            print(f"{name} / {names[1]} median time to target: {medians[name] / medians[names[1]]:.2f}x")


if __name__ == "__main__":
    main()
