"""Model-free self-play on PettingZoo ``connect_four_v3``: win rate against a random player.

Each run trains one agent (rladapt defaults) with ``AutoAdapt(connect_four_v3.env(), agent,
opponent=...)``: the learner takes seats 0 and 1 in turn, the opponent plays the other. Every
``--eval-every`` learner steps it plays ``--games`` deterministic games against a random player
(half from each seat, fixed seeds); wins count, draws and losses do not.

Usage::

    python benchmarks/selfplay_connect4.py [--agent ppo] [--opponent pool] [--seeds 0 1 2]
        [--steps 500000] [--eval-every 100000] [--games 200] [--set gamma=0.99 ent_coef=0.01]
        [--pool random=0.3] [--out figures/selfplay_connect4.json]

``--set`` overrides the agent's settings, ``--pool`` the ``SnapshotPool`` settings of
``--opponent pool`` (values are read as Python literals).
"""

from __future__ import annotations

import argparse
import ast
import json
import statistics
import time

from pettingzoo.classic import connect_four_v3

from rladapt import AutoAdapt
from rladapt.callbacks import Callback
from rladapt.opponents import SnapshotPool
from rladapt.registry import get_agent


def win_rate(agent, games: int) -> float:
    result = agent.evaluate(connect_four_v3.env(), episodes=games, seed=50_000, opponent="random")
    return result.rates()["win"]


class WinCurve(Callback):
    """Win rate against random every ``every`` learner steps (the run's clock excludes it)."""

    def __init__(self, every: int, games: int) -> None:
        self.every, self.games, self.next, self.curve, self.paused = every, games, every, [], 0.0

    def on_update(self, run, metrics) -> None:
        agent = run.agent
        if agent.num_timesteps >= self.next:
            start = time.perf_counter()
            self.curve.append((agent.num_timesteps, win_rate(agent, self.games)))
            print(f"  {agent.num_timesteps:>8} steps: {self.curve[-1][1]:.3f} wins against random", flush=True)
            self.paused += time.perf_counter() - start
            self.next += self.every


def run(name: str, opponent: str, seed: int, steps: int, every: int, games: int, settings: dict,
        pool: dict) -> dict:
    agent = get_agent(name)(seed=seed, **settings)
    env = AutoAdapt(connect_four_v3.env(), agent, opponent=SnapshotPool(**pool) if opponent == "pool" else opponent)
    curve = WinCurve(every, games)
    start = time.perf_counter()
    agent.learn(env, steps=steps, callbacks=[curve], progress=False, run_dir=False)
    seconds = time.perf_counter() - start - curve.paused
    final = curve.curve[-1][1] if curve.curve and curve.curve[-1][0] >= steps else win_rate(agent, games)
    return {"agent": name, "opponent": opponent, "pool": pool, "settings": settings, "seed": seed, "curve": curve.curve,
            "final": final, "train_s": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", default="ppo")
    parser.add_argument("--opponent", default="pool")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=500_000)
    parser.add_argument("--eval-every", type=int, default=100_000)
    parser.add_argument("--games", type=int, default=200)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="agent settings")
    parser.add_argument("--pool", nargs="*", default=[], metavar="KEY=VALUE", help="SnapshotPool settings")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    def literals(items: list[str], flag: str) -> dict:
        out = {}
        for item in items:
            key, sep, value = item.partition("=")
            if not sep:
                parser.error(f"{flag} takes KEY=VALUE, got {item!r}")
            out[key] = ast.literal_eval(value)
        return out

    settings, pool = literals(args.set, "--set"), literals(args.pool, "--pool")
    if pool and args.opponent != "pool":
        parser.error("--pool applies to --opponent pool")
    rows = []
    for seed in args.seeds:
        print(f"{args.agent} seed {seed}, opponent {args.opponent}", flush=True)
        rows.append(run(args.agent, args.opponent, seed, args.steps, args.eval_every, args.games, settings, pool))
        print(f"  final {rows[-1]['final']:.3f}, {rows[-1]['train_s']:.0f} s", flush=True)
    finals = [row["final"] for row in rows]
    spread = statistics.stdev(finals) if len(finals) > 1 else 0.0
    print(f"{args.agent} / {args.opponent}: {statistics.mean(finals):.3f} +- {spread:.3f} wins over {len(finals)} seeds "
          f"(min {min(finals):.3f})")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
