"""What flushing denormals (``rladapt.numerics.denormals_flushed``, on in every ``learn``) is worth
per agent: the same short run with and without it, side by side, and whether the weights agree.

Every run is a fresh process with one torch thread; "kept" replaces ``learn``'s
``denormals_flushed`` with a no-op (the CPU's default mode). Pairs alternate (flushed, kept,
flushed, kept, ...) so that load from other processes hits both alike. The weights' digest (a
hash of every float tensor of ``agent.state_dict()``) says whether the two modes trained the
same network; they differ only if a value below 1.2e-38 moved a weight.

Usage::

    python benchmarks/denormals.py [--rows dqn-cartpole sac-pendulum ...] [--repeats 2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import time

#: name -> (agent, env id, env steps, settings)
ROWS: dict[str, tuple[str, str, int, dict]] = {
    "dqn-cartpole": ("DQN", "CartPole-v1", 20_000, {}),
    "qrdqn-cartpole": ("QRDQN", "CartPole-v1", 10_000, {}),
    "ppo-cartpole": ("PPO", "CartPole-v1", 40_000, {}),
    "a2c-cartpole": ("A2C", "CartPole-v1", 40_000, {}),
    "sac-pendulum": ("SAC", "Pendulum-v1", 4_000, {}),
    "td3-pendulum": ("TD3", "Pendulum-v1", 6_000, {}),
    "dreamer-cartpole": ("Dreamer", "CartPole-v1", 1_600, {}),
    "muzero-cartpole": ("MuZero", "CartPole-v1", 1_500, {}),
    "alphazero-tictactoe": ("AlphaZero", "rladapt/TicTacToe-v0", 600, {}),
    "ppo-pong": ("PPO", "ALE/Pong-v5", 4_096, {}),
    "dqn-pong": ("DQN", "ALE/Pong-v5", 3_000, {"learning_starts": 1_000}),
}


def child(row: str, flush: bool) -> None:
    import contextlib

    import torch

    import rladapt.train.loop
    from rladapt.registry import get_agent

    torch.set_num_threads(1)
    if not flush:
        rladapt.train.loop.denormals_flushed = contextlib.nullcontext
    name, env_id, steps, settings = ROWS[row]
    if env_id.startswith("ALE/"):
        import ale_py
        import gymnasium as gym

        gym.register_envs(ale_py)
    agent = get_agent(name)(seed=0, **settings)
    start = time.perf_counter()
    agent.learn(env_id, steps, progress=False, run_dir=False)
    seconds = time.perf_counter() - start
    digest = hashlib.sha256()
    for key, value in sorted(agent.state_dict().items()):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            digest.update(key.encode())
            digest.update(value.detach().contiguous().cpu().numpy().tobytes())
    print(json.dumps({"row": row, "flush": flush, "seconds": seconds, "digest": digest.hexdigest()[:16]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", nargs=2, metavar=("ROW", "FLUSH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1] == "1")
        return
    print("| agent, env @ steps | flushed (s) | kept (s) | flushed / kept | same weights |")
    print("| --- | ---: | ---: | ---: | --- |")
    for row in args.rows:
        runs: dict[bool, list[dict]] = {True: [], False: []}
        for _ in range(args.repeats):
            for flush in (True, False):
                out = subprocess.run([sys.executable, __file__, "--child", row, str(int(flush))],
                                     capture_output=True, text=True, check=True).stdout
                runs[flush].append(json.loads(out.strip().splitlines()[-1]))
        fast, slow = (statistics.median(r["seconds"] for r in runs[f]) for f in (True, False))
        same = len({r["digest"] for r in runs[True] + runs[False]}) == 1
        name, env_id, steps, _ = ROWS[row]
        print(f"| {name}, {env_id} @ {steps:,} | {fast:.2f} | {slow:.2f} | {fast / slow:.2f}x | {'yes' if same else 'no'} |",
              flush=True)


if __name__ == "__main__":
    main()
