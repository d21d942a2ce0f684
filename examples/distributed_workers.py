"""Distributed collection with worker processes: the same training call, workers=2.

Each worker process rebuilds its share of the envs from the adapted env's spec, acts with its own
copy of the policy, and hands whole rollouts to the learner through shared memory; the learner only
updates. Worth it when stepping the env costs more than the network (Atari, MuJoCo, slow
simulators); for CartPole the in-process loop is already fast, so compare the two lines below.
Across machines, see examples/distributed_torchrun.py (workers="distributed").

Run: python examples/distributed_workers.py   (RLADAPT_EXAMPLE_STEPS=2048 for a quick run)
"""

import os
import time

from rladapt import AutoAdapt
from rladapt.agents import PPO

if __name__ == "__main__":  # worker processes import this file: keep the work under this guard
    steps = int(os.environ.get("RLADAPT_EXAMPLE_STEPS", 100_000))
    for workers in (0, 2):
        agent = PPO(seed=0)
        env = AutoAdapt("CartPole-v1", agent)
        start = time.perf_counter()
        agent.learn(env, steps, num_envs=8, workers=workers, progress=False)
        seconds = time.perf_counter() - start
        result = agent.evaluate(env, episodes=10)
        print(f"workers={workers}: {steps:,} steps in {seconds:.1f} s ({steps / seconds:,.0f} steps/s), "
              f"return {result.mean:.1f}")
