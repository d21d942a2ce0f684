"""Quick start: adapt CartPole to PPO, train, evaluate, save and load.

Run: python examples/quickstart.py   (RLADAPT_EXAMPLE_STEPS=5000 for a quick smoke run)
"""

import os

import gymnasium as gym

import rladapt
from rladapt import AutoAdapt
from rladapt.agents import PPO

if __name__ == "__main__":
    steps = int(os.environ.get("RLADAPT_EXAMPLE_STEPS", 100_000))
    agent = PPO(seed=0)
    env = AutoAdapt(gym.make("CartPole-v1"), agent)
    print(env.plan)
    agent.learn(env, steps=steps, num_envs=8)
    result = agent.evaluate(env, episodes=10)
    print(f"PPO on CartPole-v1 after {steps:,} steps: mean return {result.mean:.1f} +- {result.std:.1f}")
    agent.save("cartpole.pt")
    again = rladapt.load("cartpole.pt")
    obs, _ = env.reset(seed=0)
    assert again.act(obs) == agent.act(obs)
    print("saved to cartpole.pt and loaded back: same actions")
