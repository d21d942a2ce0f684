"""PPO on CartPole with collection spread over the ranks of a torch.distributed group.

Rank 0 learns; every other rank steps its share of the envs with its own copy of the policy and
sends whole rollouts to rank 0 (gloo, loopback unless MASTER_ADDR says otherwise). Every rank runs
this same script; ``learn(..., workers="distributed")`` does the right thing on each::

    torchrun --nproc-per-node 3 --master-addr 127.0.0.1 --master-port 29511 \\
        examples/distributed_torchrun.py --steps 100000

(1 learner + 2 collector ranks on this machine; on several machines, run torchrun on each with
``--nnodes``, ``--node-rank`` and a routable ``--master-addr``.)
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from rladapt import AutoAdapt
from rladapt.agents import PPO
from rladapt.collect import distributed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--result", default=None, help="write rank 0's evaluation here (JSON)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    agent = PPO(seed=args.seed)
    env = AutoAdapt(args.env, agent)
    start = time.perf_counter()
    agent.learn(env, args.steps, workers="distributed", progress=False, run_dir=False)
    if distributed.is_learner():
        seconds = time.perf_counter() - start
        result = agent.evaluate(env, episodes=20)
        print(f"{args.env}: {agent.num_timesteps} steps in {seconds:.1f} s, evaluation {result}")
        if args.result:
            with open(args.result, "w") as f:
                json.dump({"mean": result.mean, "steps": agent.num_timesteps, "seconds": seconds}, f)


if __name__ == "__main__":
    main()
