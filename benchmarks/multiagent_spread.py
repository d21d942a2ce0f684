"""IPPO vs MAPPO on mpe2 ``simple_spread_v3`` (3 agents, 25-step episodes, discrete actions).

Both are rladapt's PPO with its defaults on the adapted parallel env: IPPO is
``AutoAdapt(env, PPO())`` (one policy shared by the three agents, each critic on the agent's own
observation); MAPPO is ``AutoAdapt(env, PPO(), global_state=True)`` (the same actor, the critic on
the env's ``state()``). A random policy is the floor. Every ``--eval-every`` env steps (agent steps:
three per joint step) each run is evaluated on 30 deterministic episodes with fixed seeds; the
return is the mean over the agents of their episode returns (``EvalResult.returns``).

``--throughput``: agent steps/s of PPO's whole learning loop on the same env in-process and with
``workers=2`` (``--repeats`` runs of each, interleaved), no evaluation.

Usage::

    python benchmarks/multiagent_spread.py [--seeds 0 1 2] [--steps 300000] [--eval-every 50000]
    python benchmarks/multiagent_spread.py --throughput [--steps 100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from mpe2 import simple_spread_v3

from rladapt import AutoAdapt
from rladapt.agents import PPO, RandomAgent
from rladapt.callbacks import Callback


class EvalCurve(Callback):
    """Evaluate every ``every`` steps (the clock of the run excludes it)."""

    def __init__(self, env, every: int) -> None:
        self.env, self.every, self.next, self.curve, self.paused = env, every, every, [], 0.0

    def on_update(self, run, metrics) -> None:
        agent = run.agent
        if agent.num_timesteps >= self.next:
            start = time.perf_counter()
            self.curve.append((agent.num_timesteps, agent.evaluate(self.env, episodes=30, seed=10_000).mean))
            self.paused += time.perf_counter() - start
            self.next += self.every


def run(mode: str, seed: int, steps: int, every: int) -> dict:
    agent = PPO(seed=seed)
    env = AutoAdapt(simple_spread_v3.parallel_env(), agent, global_state=mode == "mappo")
    curve = EvalCurve(env, every)
    start = time.perf_counter()
    agent.learn(env, steps=steps, callbacks=[curve], progress=False, run_dir=False)
    seconds = time.perf_counter() - start - curve.paused
    final = agent.evaluate(env, episodes=30, seed=10_000).mean
    return {"mode": mode, "seed": seed, "curve": curve.curve, "final": final, "train_s": seconds,
            "steps_per_s": agent.num_timesteps / seconds}


def throughput(steps: int, repeats: int) -> None:
    rates: dict[int, list[float]] = {0: [], 2: []}
    for repeat in range(repeats):
        for workers in (0, 2):
            agent = PPO(seed=repeat)
            env = AutoAdapt(simple_spread_v3.parallel_env(), agent)
            start = time.perf_counter()
            agent.learn(env, steps=steps, workers=workers, progress=False, run_dir=False)
            rates[workers].append(agent.num_timesteps / (time.perf_counter() - start))
            print(json.dumps({"workers": workers, "repeat": repeat, "steps_per_s": rates[workers][-1]}), flush=True)
    for workers, values in rates.items():
        print(f"workers={workers}: {statistics.mean(values):,.0f} agent steps/s (median {statistics.median(values):,.0f}, {len(values)} runs)")
    print(f"workers=2 / in-process: {statistics.median(rates[2]) / statistics.median(rates[0]):.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=300_000)
    parser.add_argument("--eval-every", type=int, default=50_000)
    parser.add_argument("--json", default=None, help="write every run's row here")
    parser.add_argument("--throughput", action="store_true", help="steps/s in-process vs workers=2 instead")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.throughput:
        throughput(args.steps, args.repeats)
        return
    random = RandomAgent(seed=0)
    floor = random.evaluate(AutoAdapt(simple_spread_v3.parallel_env(), random), episodes=100, seed=10_000).mean
    print(f"random policy: {floor:.2f}")
    rows = []
    for seed in args.seeds:  # interleaved, so that load from other processes hits both alike
        for mode in ("ippo", "mappo"):
            row = run(mode, seed, args.steps, args.eval_every)
            rows.append(row)
            print(json.dumps(row), flush=True)
    for mode in ("ippo", "mappo"):
        finals = [r["final"] for r in rows if r["mode"] == mode]
        rate = statistics.mean(r["steps_per_s"] for r in rows if r["mode"] == mode)
        spread = statistics.stdev(finals) if len(finals) > 1 else 0.0
        print(f"{mode}: final {statistics.mean(finals):.2f} +- {spread:.2f} over {len(finals)} seeds "
              f"(random {floor:.2f}); {rate:,.0f} agent steps/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"random": floor, "rows": rows}, f)


if __name__ == "__main__":
    main()
