"""Atari with Weights & Biases and video: PPO on Pong, evaluation videos of the real game screen.

AutoAdapt builds the standard Atari pipeline for the network (no-ops, frame skip with max-pool,
84x84 grayscale, reward clipping, 4 stacked frames) while the videos show the game's own RGB frames
and the logged returns are the raw game score. Everything goes to the run directory
(runs/ppo-ALE_Pong-v5-<time>/: config.json, metrics.jsonl, videos/step-N/*.mp4, agent.pt) and to
W&B: config with the plan, metrics on the env-step axis, the videos, and agent.pt as an artifact.
Without a W&B API key the run is logged offline (upload later with `wandb sync`).

Run: python examples/atari_wandb_video.py   (RLADAPT_EXAMPLE_STEPS=1000 for a quick run)
     ~10M steps to win at Pong; on a laptop CPU start with 1M and watch the videos improve.
"""

import os

import ale_py
import gymnasium as gym

from rladapt import AutoAdapt
from rladapt.agents import PPO
from rladapt.callbacks import EvalCallback
from rladapt.logging.wandb import WandbLogger

gym.register_envs(ale_py)  # the ALE/... env ids

if __name__ == "__main__":
    steps = int(os.environ.get("RLADAPT_EXAMPLE_STEPS", 1_000_000))
    smoke = steps < 10_000  # a quick check (the test suite): short rollouts, games cut at 400 frames
    agent = PPO(seed=0, n_steps=16 if smoke else None)  # None: the Atari default (128)
    env = AutoAdapt("ALE/Pong-v5", agent, env_kwargs={"max_episode_steps": 400} if smoke else None)
    print(env.plan)

    logger = WandbLogger(project="rladapt-atari", tags=["ppo", "pong"], log_checkpoint=True)
    evaluation = EvalCallback(every=max(steps // 5, 1), episodes=1, video=True)  # and once more at the end
    agent.learn(env, steps, num_envs=2 if smoke else 8, logger=logger, callbacks=[evaluation])

    for step, result in evaluation.results:
        print(f"step {step:>9,}: evaluation return {result.mean:+.1f}")
    print("videos:", *map(str, evaluation.videos), sep="\n  ")
