"""Collection over torch.distributed ranks (``workers="distributed"``), launched with ``torchrun``:
1 learner and 2 collector ranks on this machine, over loopback.

Each test starts ``torchrun`` in its own session and, after it exits, checks that no process of that
session is left (no orphaned rank or helper).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_processes(sid: int) -> list[int]:
    """Live processes whose session id is ``sid``."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
                fields = stat[stat.rindex(")") + 2 :].split()
                if int(fields[3]) == sid and fields[0] != "Z":
                    out.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return out


def torchrun(script: Path, *args: str, timeout: float) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "3",
               "--master-addr", "127.0.0.1", "--master-port", str(free_port()), str(script), *args]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        output, _ = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
            process.wait()
    deadline = time.monotonic() + 10
    while session_processes(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert session_processes(process.pid) == [], "processes of the torchrun session outlived it"
    return subprocess.CompletedProcess(command, process.returncode, output)


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
    assert 'in step\n    raise ValueError("boom on a collector rank")' in out["error"]  # the rank's traceback
