"""Asynchronous actor-critic side by side: A3C and IMPALA against rladapt's PPO and SB3's A2C.

``--cartpole`` (default): wall-clock time and env steps to a mean evaluation return of 475 on
CartPole-v1, per seed, for

- ``A3C(seed=s)`` with ``workers=2`` (rladapt's defaults: 8 envs over the workers, 12-step returns),
- ``IMPALA(seed=s)`` with ``workers=2`` (defaults: 8 envs, unroll 16, V-trace),
- ``PPO(seed=s)`` in-process and with ``workers=2`` (defaults),
- Stable-Baselines3's ``A2C`` with rl-zoo's CartPole-v1 settings (8 envs, ``ent_coef=0``, the rest
  SB3's defaults: n_steps 5, lr 7e-4, RMSprop, gamma 0.99).

Every ``--eval-every`` env steps (after the iteration at that point) each is evaluated by the same
function: 10 deterministic episodes on a fresh CartPole-v1 with fixed seeds; the clock is paused
during evaluations; a run stops at the target (or at ``--budget``). Runs are interleaved by seed so
that load from other processes on a shared machine hits all alike.

``--pong``: ALE/Pong-v5 through the Atari pipeline (AutoAdapt, ale-py's C++ vector env in the
workers), 2 workers, ``--pong-steps`` env steps each for IMPALA and PPO(workers=2): env steps/s,
the actors' busy fraction (``collect/actor_busy``: not waiting for the learner to free a slot), the
learner's busy fraction (time inside ``update`` over the run's time), and IMPALA's policy lag.
``--curve GAME --curve-steps N``: IMPALA's training return every log row on that game.

Usage::

    python benchmarks/async_ac.py --cartpole --seeds 0 1 2 [--budget 300000] [--eval-every 10000] [--a3c-ablation]
    python benchmarks/async_ac.py --pong [--pong-steps 30000]
    python benchmarks/async_ac.py --curve ALE/Breakout-v5 --curve-steps 200000
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ppo_cartpole import Clock, evaluate, time_to_target_result  # the time-to-475 harness

TARGET = 475.0
#: ``--a3c-ablation``: A3C with its vector row before 2026-12-07 (the paper's 5-step returns, Adam at 7e-4).
PREVIOUS_A3C = "A3C workers=2, n_steps 5, lr 7e-4"


def run_rladapt(name: str, seed: int, budget: int, eval_every: int) -> dict:
    from rladapt import AutoAdapt
    from rladapt.agents import A3C, IMPALA, PPO

    cls, workers, settings = {"A3C workers=2": (A3C, 2, {}), "IMPALA workers=2": (IMPALA, 2, {}),
                              "PPO in-process": (PPO, 0, {}), "PPO workers=2": (PPO, 2, {}),
                              PREVIOUS_A3C: (A3C, 2, dict(n_steps=5, lr=7e-4))}[name]
    clock = Clock()
    agent = cls(seed=seed, **settings)
    env = AutoAdapt(gym.make("CartPole-v1"), agent)
    state: dict[str, Any] = {"next": eval_every, "solved": None, "evals": []}

    def callback(agent: Any, metrics: dict) -> bool:
        if metrics["step"] < state["next"]:
            return True
        state["next"] += eval_every
        score = clock.pause(lambda: evaluate("CartPole-v1", agent.act))
        state["evals"].append((metrics["step"], round(score, 1)))
        if score >= TARGET:
            state["solved"] = (clock.elapsed(), metrics["step"])
            return False
        return True

    agent.learn(env, budget, workers=workers, progress=False, run_dir=False, callbacks=[callback])
    return time_to_target_result(name, seed, clock, agent.num_timesteps, state)


def run_sb3_a2c(name: str, seed: int, budget: int, eval_every: int) -> dict:
    from stable_baselines3 import A2C as SB3A2C
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    clock = Clock()
    env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
    model = SB3A2C("MlpPolicy", env, seed=seed, device="cpu", verbose=0, ent_coef=0.0)
    state: dict[str, Any] = {"next": eval_every, "solved": None, "evals": []}

    class EvalAfterUpdate(BaseCallback):
        def _on_rollout_start(self) -> None:
            step = self.model.num_timesteps
            if step < state["next"] or state["solved"]:
                return
            state["next"] += eval_every
            score = clock.pause(lambda: evaluate("CartPole-v1", lambda obs: self.model.predict(obs, deterministic=True)[0]))
            state["evals"].append((step, round(score, 1)))
            if score >= TARGET:
                state["solved"] = (clock.elapsed(), step)

        def _on_step(self) -> bool:
            return state["solved"] is None

    model.learn(budget, callback=EvalAfterUpdate())
    return time_to_target_result(name, seed, clock, model.num_timesteps, state)


def cartpole(seeds: list[int], budget: int, eval_every: int, a3c_ablation: bool = False) -> None:
    torch.set_num_threads(1)
    runners = [("A3C workers=2", run_rladapt), ("IMPALA workers=2", run_rladapt), ("PPO in-process", run_rladapt),
               ("PPO workers=2", run_rladapt), ("SB3 A2C (zoo)", run_sb3_a2c)]
    if a3c_ablation:
        runners.insert(1, (PREVIOUS_A3C, run_rladapt))
    results = []
    for seed in seeds:
        for name, run in runners:
            r = run(name, seed, budget, eval_every)
            results.append(r)
            print(json.dumps({k: v for k, v in r.items() if k != "evals"}), flush=True)
            print(f"  evaluations (step, mean return): {r['evals']}", flush=True)
    print(f"\nCartPole-v1, target {TARGET}, budget {budget}, evaluation every {eval_every} steps, seeds {seeds}")
    print("| agent | seeds solved | median time to target (s) | median steps to target | time ratio to SB3 A2C |")
    print("| --- | ---: | ---: | ---: | ---: |")
    medians = {}
    for name, _ in runners:
        rs = [r for r in results if r["lib"] == name]
        solved = [r for r in rs if r["solved"]]
        t = statistics.median(r["time_to_target_s"] for r in solved) if solved else None
        s = statistics.median(r["steps_to_target"] for r in solved) if solved else None
        medians[name] = (t, s, len(solved), len(rs))
    sb3 = medians["SB3 A2C (zoo)"][0]
    for name, (t, s, k, n) in medians.items():
        ratio = f"{t / sb3:.2f}x" if t and sb3 else "-"
        print(f"| {name} | {k}/{n} | {t and round(t, 1)} | {s} | {ratio} |")


class Timed:
    """Wraps an agent's ``update`` to add up the learner's time inside it."""

    def __init__(self, agent: Any) -> None:
        self.seconds, update = 0.0, agent.update

        def timed(*args: Any) -> Any:
            t = time.perf_counter()
            out = update(*args)
            self.seconds += time.perf_counter() - t
            return out

        agent.update = timed


def pong(steps: int) -> None:
    import ale_py

    from rladapt import AutoAdapt
    from rladapt.agents import IMPALA, PPO

    gym.register_envs(ale_py)
    print(f"ALE/Pong-v5, Atari pipeline, 2 workers, {steps} env steps each (after a 2,048-step warm-up run)")
    print("| agent | env steps/s | actors busy | learner busy (in update) | policy lag (mean, max) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for cls in (IMPALA, PPO):
        agent = cls(seed=0)
        env = AutoAdapt("ALE/Pong-v5", agent)
        agent.learn(env, 2_048, workers=2, progress=False, run_dir=False)  # builds, compiles, warms the forkserver
        timer, rows, warm = Timed(agent), [], agent.num_timesteps
        start = time.perf_counter()
        agent.learn(env, steps, workers=2, progress=False, run_dir=False, callbacks=[lambda a, m: rows.append(m)])
        wall = time.perf_counter() - start
        last = rows[-1]
        lags = [m["collect/policy_lag"] for m in rows if "collect/policy_lag" in m]
        lag = f"{np.mean(lags):.2f}, {max(m.get('collect/policy_lag_max', 0) for m in rows):.0f}" if lags else "0 (synchronous)"
        busy = last.get("collect/actor_busy")
        print(f"| {cls.__name__} | {(agent.num_timesteps - warm) / wall:.0f} | "
              f"{'-' if busy is None else f'{busy:.2f}'} | {timer.seconds / wall:.2f} | {lag} |", flush=True)


def curve(game: str, steps: int) -> None:
    import ale_py

    from rladapt import AutoAdapt
    from rladapt.agents import IMPALA

    gym.register_envs(ale_py)
    agent = IMPALA(seed=0)
    env = AutoAdapt(game, agent)
    points, start = [], time.perf_counter()

    def record(agent: Any, metrics: dict) -> None:
        r = metrics.get("rollout/return_mean")
        if r is not None and (not points or metrics["step"] - points[-1][0] >= steps // 20):
            points.append((metrics["step"], round(r, 2), round(time.perf_counter() - start)))
            print(f"  step {metrics['step']}: return {r:.2f} ({points[-1][2]} s)", flush=True)

    agent.learn(env, steps, workers=2, progress=False, run_dir=False, callbacks=[record])
    print(f"{game} IMPALA workers=2: {steps} steps in {time.perf_counter() - start:.0f} s; (step, return, s): {points}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cartpole", action="store_true")
    parser.add_argument("--pong", action="store_true")
    parser.add_argument("--curve", default=None, help="an Atari id: IMPALA's learning curve on it")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget", type=int, default=300_000)
    parser.add_argument("--eval-every", type=int, default=10_000)
    parser.add_argument("--pong-steps", type=int, default=30_000)
    parser.add_argument("--curve-steps", type=int, default=200_000)
    parser.add_argument("--a3c-ablation", action="store_true",
                        help="--cartpole: also A3C with its previous vector row (n_steps 5, lr 7e-4)")
    args = parser.parse_args()
    if args.pong:
        pong(args.pong_steps)
    if args.curve:
        curve(args.curve, args.curve_steps)
    if args.cartpole or not (args.pong or args.curve):
        cartpole(args.seeds, args.budget, args.eval_every, args.a3c_ablation)


if __name__ == "__main__":
    main()
