"""Invalid-action masks on vs off: PPO learns tic-tac-toe against a random opponent, twice.

rladapt/TicTacToe-v0 exposes the free cells through action_masks() (the sb3-contrib convention).
AutoAdapt turns that into info["action_mask"] for agents that use masks; with mask=False the agent
sees no mask, and a move onto an occupied cell ends the game as a loss. Same agent, same budget:
with masks it only has to learn to win; without, it must first learn which moves are legal.

Run: python examples/masked_game.py   (RLADAPT_EXAMPLE_STEPS=2000 for a quick run)
"""

import os

import numpy as np

from rladapt import AutoAdapt
from rladapt.agents import PPO

if __name__ == "__main__":
    steps = int(os.environ.get("RLADAPT_EXAMPLE_STEPS", 50_000))
    for masks in (True, False):
        agent = PPO(seed=0)
        env = AutoAdapt("rladapt/TicTacToe-v0", agent, mask=None if masks else False)  # None: detect the mask
        print(f"\nmasks {'on' if masks else 'off'}:\n{env.plan}")
        agent.learn(env, steps, progress=False)
        result = agent.evaluate(env, episodes=200, deterministic=False)
        wins, losses, draws = (np.mean(result.returns > 0), np.mean(result.returns < 0), np.mean(result.returns == 0))
        print(f"after {steps:,} steps: won {wins:.0%}, lost {losses:.0%} (illegal moves count as losses), drew {draws:.0%}")
    agent.play(env, max_steps=2)  # without masks every cell gets a probability, occupied ones too
