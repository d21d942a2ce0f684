"""Callbacks and learning curves: a custom callback, the built-in ones, and a plot across seeds.

Each seed trains into its own run directory (runs/callbacks-example/seed-N/); rladapt plot (here
plot_runs) averages runs that differ only in their seed and shades the spread across them.

Run: python examples/callbacks_and_plot.py   (RLADAPT_EXAMPLE_STEPS=2048 for a quick run)
     rladapt plot runs/callbacks-example      draws the same PNG from the command line
"""

import os

from rladapt import AutoAdapt
from rladapt.agents import A2C
from rladapt.callbacks import Callback, CheckpointCallback, EvalCallback, StopOnReward
from rladapt.logging.plot import plot_runs


class EpisodePrinter(Callback):
    """Print every 50th training episode: hooks get the run (agent, env step, run directory)."""

    def __init__(self, every: int = 50) -> None:
        self.every, self.episodes = every, 0

    def on_episode_end(self, run, episode):
        self.episodes += 1
        if self.episodes % self.every == 0:
            print(f"  step {episode.step:>7,}: episode {self.episodes}, return {episode.raw_return:.0f}")


if __name__ == "__main__":
    steps = int(os.environ.get("RLADAPT_EXAMPLE_STEPS", 60_000))
    for seed in (0, 1):
        print(f"seed {seed}")
        agent = A2C(seed=seed)
        env = AutoAdapt("CartPole-v1", agent)
        callbacks = [
            EpisodePrinter(),
            EvalCallback(every=max(steps // 4, 1), episodes=5),  # eval/return_mean in metrics.jsonl
            CheckpointCallback(every=max(steps // 2, 1)),  # checkpoints/step-N.pt in the run directory
            StopOnReward(475, source="eval"),  # CartPole is solved at 475: stop there
        ]
        agent.learn(env, steps, callbacks=callbacks, progress=False, run_dir=f"runs/callbacks-example/seed-{seed}")
        print(f"  stopped at {agent.num_timesteps:,} steps; evaluations: "
              + ", ".join(f"{result.mean:.0f}" for _, result in callbacks[1].results))
    print("wrote", plot_runs(["runs/callbacks-example"], "runs/callbacks-example/returns.png"))
