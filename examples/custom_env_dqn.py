"""A custom gymnasium env, trained with DQN: keep a shower between 37 and 39 degrees.

Writing an env: subclass gymnasium.Env, set observation_space and action_space, implement reset
and step (and render, optionally). Register it so that gym.make(id) can rebuild it: rladapt makes
one copy per parallel env from the id. Check it with gymnasium's env checker, then hand it to any
agent: AutoAdapt reads its spaces and inserts what the agent needs (here: nothing).
(rladapt ships a fuller version of this env as rladapt/Shower-v0.)

Run: python examples/custom_env_dqn.py   (RLADAPT_EXAMPLE_STEPS=3000 for a quick run)
"""

import os

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env

from rladapt import AutoAdapt
from rladapt.agents import DQN
from rladapt.callbacks import StopOnReward


class ShowerEnv(gym.Env):
    """Each second: cool (-1 degree), stay, or heat (+1 degree); the supply drifts by -1, 0 or +1.
    Reward +1 while the water is in [37, 39] degrees, else -1. A shower lasts 60 seconds."""

    metadata = {"render_modes": ["ansi"], "render_fps": 1}
    action_names = ("cool down", "stay", "heat up")  # the terminal view (agent.play) shows these

    def __init__(self, render_mode=None):
        self.observation_space = spaces.Box(0.0, 100.0, shape=(1,), dtype=np.float32)  # temperature
        self.action_space = spaces.Discrete(3)
        self.render_mode = render_mode

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)  # seeds self.np_random
        self.temperature, self.time = 38.0 + self.np_random.uniform(-3, 3), 0
        return np.array([self.temperature], dtype=np.float32), {}

    def step(self, action):
        drift = int(self.np_random.integers(-1, 2))
        self.temperature = float(np.clip(self.temperature + (int(action) - 1) + drift, 0, 100))
        self.time += 1
        reward = 1.0 if 37 <= self.temperature <= 39 else -1.0
        truncated = self.time >= 60  # time is up: truncated, not terminated (the water is still running)
        return np.array([self.temperature], dtype=np.float32), reward, False, truncated, {}

    def render(self):
        return f"t={self.time:2d}s  {self.temperature:5.1f} degrees\n"


gym.register("examples/Shower-v0", entry_point=ShowerEnv)

if __name__ == "__main__":
    steps = int(os.environ.get("RLADAPT_EXAMPLE_STEPS", 30_000))
    check_env(gym.make("examples/Shower-v0").unwrapped)  # gymnasium's checks: spaces, seeding, return types
    agent = DQN(seed=0)
    env = AutoAdapt("examples/Shower-v0", agent)
    print(env.plan)
    # The drift makes a third of the seconds uncomfortable whatever one does: about +20 is the best return.
    agent.learn(env, steps, callbacks=[StopOnReward(19)])  # stop once 20 training showers average 19
    result = agent.evaluate(env, episodes=20)
    print(f"DQN on the shower after {agent.num_timesteps:,} steps: return {result.mean:.1f} +- {result.std:.1f} (best about 20)")
    agent.play(env, max_steps=3)  # the temperature, Q-values of cool/stay/heat, the chosen action
