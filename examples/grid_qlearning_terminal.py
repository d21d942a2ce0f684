"""Grid world with tabular Q-learning, then watch it play in the terminal.

The 4x3 grid of Russell & Norvig: reach G (+1), avoid P (-1); moves slip sideways 20% of the time.
After training, agent.play prints every step: the board, the Q-value of each action (up, right,
down, left), the chosen one marked "->", the reward and whether the episode ended.

Run: python examples/grid_qlearning_terminal.py   (RLADAPT_EXAMPLE_STEPS=3000 for a quick run)
     rladapt eval runs/qlearning-rladapt_Grid-v0-*/ --render ansi     does the same from the CLI
"""

import os

from rladapt import AutoAdapt
from rladapt.agents.qlearning import QLearning

if __name__ == "__main__":
    steps = int(os.environ.get("RLADAPT_EXAMPLE_STEPS", 30_000))
    agent = QLearning(seed=0)
    env = AutoAdapt("rladapt/Grid-v0", agent)  # Discrete(12) cells: a table needs no adaptation
    print(env.plan)
    agent.learn(env, steps)
    result = agent.evaluate(env, episodes=100)
    print(f"Q-learning on the grid after {steps:,} steps: return {result.mean:.3f} (optimal policy: about 0.745)\n")
    agent.play(env, episodes=1, delay=float(os.environ.get("RLADAPT_PLAY_DELAY", 0.3)))
