"""Every example runs, on a small budget (``RLADAPT_EXAMPLE_STEPS``), and prints what it promises."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

#: example -> (steps for the smoke run, patterns its output must contain)
CASES = {
    "quickstart.py": (2048, [r"PPO on CartPole-v1 after 2,048 steps: mean return", r"same actions"]),
    "atari_wandb_video.py": (32, [r"AtariPreprocessing", r"step +32: evaluation return", r"videos/step-32/eval-episode-0\.mp4"]),
    "custom_env_dqn.py": (2000, [r"DQN on the shower after", r"     action +Q", r"-> (cool down|stay|heat up)"]),
    "grid_qlearning_terminal.py": (3000, [r"Q-learning on the grid after 3,000 steps", r"  -> (up|right|down|left) +[-+]\d\.\d{3}",
                                          r"episode 1 ended after \d+ steps"]),
    "custom_agent.py": (2000, [r"Expected SARSA, CliffWalking, 2,000 steps: greedy return", r"  -> \d +[-+]\d+\.\d{3}"]),
    "reinforce.py": (4096, [r"REINFORCE with a baseline, CartPole-v1, 4,096 steps: mean return \d"]),
    "masked_game.py": (1024, [r"masks on:\n.*\n.*\n3\. env\.action_masks\(\)", r"masks off:\n1\. observations checked.*\n2\. episode return.*\nafter 1,024 steps: won"]),
    "distributed_workers.py": (1024, [r"workers=0: 1,024 steps in", r"workers=2: 1,024 steps in"]),
    "callbacks_and_plot.py": (1024, [r"stopped at [\d,]+ steps; evaluations: \d+", r"wrote runs/callbacks-example/returns\.png"]),
}


def test_every_example_is_tested():
    assert sorted(p.name for p in EXAMPLES.glob("*.py") if p.name != "distributed_torchrun.py") == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_example_runs(name, tmp_path):
    steps, patterns = CASES[name]
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}  # not the W&B service of this process
    env.update(PYTHONPATH=str(ROOT), RLADAPT_EXAMPLE_STEPS=str(steps), RLADAPT_PLAY_DELAY="0", WANDB_MODE="offline",
               SDL_VIDEODRIVER="dummy")
    done = subprocess.run([sys.executable, str(EXAMPLES / name)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    for pattern in patterns:
        assert re.search(pattern, done.stdout), f"{pattern!r} not in:\n{done.stdout[-3000:]}"
    if name == "atari_wandb_video.py":  # the W&B run was written offline inside the run directory
        assert list(tmp_path.glob("runs/ppo-ALE_Pong-v5-*/wandb/offline-run-*/run-*.wandb"))
