"""Collection over torch.distributed ranks (``workers="distributed"``), launched with ``torchrun``:
1 learner and 2 collector ranks on this machine, over loopback.

Each test starts ``torchrun`` in its own session and, after it exits, checks that no process of that
session is left (no orphaned rank or helper).
"""

from __future__ import annotations

import json
import re
import textwrap

import pytest

from launch import ROOT, torchrun  # tests/launch.py


@pytest.mark.slow
def test_torchrun_one_learner_two_collectors_solve_cartpole(tmp_path):
    result_file = tmp_path / "result.json"
    run = torchrun(ROOT / "examples" / "distributed_torchrun.py", "--steps", "100000", "--result", str(result_file),
                   timeout=600)
    assert run.returncode == 0, run.stdout[-4000:]
    result = json.loads(result_file.read_text())
    assert result["steps"] <= 100_096  # whole iterations of 256 steps, as in-process
    assert result["mean"] >= 475, (result, run.stdout[-2000:])


SMOKE = """
import json, sys
import gymnasium as gym
import numpy as np
from rladapt import AutoAdapt
from rladapt.agents import DQN, PPO
from rladapt.collect import WorkerError, distributed


class Raising(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        if self.t == 25:
            raise ValueError("boom on a collector rank")
        return np.zeros(2, np.float32), 1.0, False, False, {}


if __name__ == "__main__":
    out = {}
    dqn = DQN(seed=0, learning_starts=256)
    rows = []
    dqn.learn("CartPole-v1", 2048, workers="distributed", progress=False, run_dir=False,
              callbacks=[lambda agent, metrics: rows.append(metrics)])
    if distributed.is_learner():
        out["dqn_steps"], out["dqn_replay"] = dqn.num_timesteps, len(dqn.replay)
        out["dqn_episodes"], out["lag"] = dqn.num_episodes, rows[-1]["collect/policy_lag"]
    ppo = PPO(seed=0, num_envs=4, n_steps=16)
    try:
        ppo.learn(Raising, 4096, workers="distributed", progress=False, run_dir=False)
        out["error"] = None
    except WorkerError as error:
        out["error"], out["env_index"], out["rank"] = str(error), error.env_index, error.worker
    if distributed.is_learner():
        with open(sys.argv[1], "w") as f:
            json.dump(out, f)
"""


def test_torchrun_off_policy_chunks_and_a_rank_env_error(tmp_path):
    script, result_file = tmp_path / "smoke.py", tmp_path / "out.json"
    script.write_text(textwrap.dedent(SMOKE))
    run = torchrun(script, str(result_file), timeout=300)
    assert run.returncode == 0, run.stdout[-4000:]
    out = json.loads(result_file.read_text())
    assert out["dqn_steps"] >= 2048 and out["dqn_episodes"] > 0 and out["lag"] == 0.0
    assert 0 < out["dqn_replay"] <= out["dqn_steps"]
    assert out["env_index"] in (0, 2) and out["rank"] == 1 + out["env_index"] // 2, out
    assert out["error"].startswith(f"env {out['env_index']} (in collector rank {out['rank']}) raised "
                                   "ValueError: boom on a collector rank in step()")
    # The rank's traceback: the env's own frame, in the script's file. Each rank builds its envs from
    # what its own script passed to learn (nothing is pickled), so the source line is there too.
    assert re.search(r'File ".*smoke\.py", line \d+, in step\n', out["error"]), out["error"]
    assert 'raise ValueError("boom on a collector rank")' in out["error"]
