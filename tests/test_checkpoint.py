"""Checkpoints: tensors + JSON, loaded with weights_only, atomic; resume continues; pickles refused."""

from __future__ import annotations

import json
import pickle

import gymnasium as gym
import numpy as np
import pytest
import torch

import rladapt
from rladapt import AutoAdapt
from rladapt.agents import A2C, PPO
from rladapt.checkpoint import CheckpointError, read_checkpoint, space_from_json, space_to_json

torch.set_num_threads(1)


def _obs_batch(env: gym.Env, n: int) -> list:
    env.reset(seed=123)
    return [env.observation_space.sample() for _ in range(n)]


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1", "Taxi-v4"])
def test_save_load_gives_identical_actions(tmp_path, env_id):
    agent = PPO(seed=0, n_steps=32, num_envs=2)
    env = AutoAdapt(env_id, agent)
    agent.learn(env, 256, progress=False, run_dir=False)
    path = agent.save(tmp_path / "agent.pt")
    loaded = rladapt.load(path)
    assert type(loaded) is PPO and loaded.num_timesteps == agent.num_timesteps == 256
    env.observation_space.seed(0)
    for obs in _obs_batch(env, 20):
        a, b = agent.act(obs), loaded.act(obs)
        assert np.array_equal(np.asarray(a), np.asarray(b))
    # Normalisation statistics travel too (Pendulum normalises observations and rewards).
    for (k, v), (k2, v2) in zip(agent.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    assert not list(tmp_path.glob("*.tmp"))  # atomic write leaves no temp file


def test_resume_continues_step_counter_and_optimizer(tmp_path):
    agent = PPO(seed=1, n_steps=32, num_envs=2)
    agent.learn("CartPole-v1", 128, progress=False, run_dir=False)
    agent.save(tmp_path / "a.pt")
    loaded = rladapt.load(tmp_path / "a.pt")
    opt_a, opt_b = agent.optimizer.state_dict(), loaded.optimizer.state_dict()
    assert torch.equal(opt_a["state"][0]["exp_avg"], opt_b["state"][0]["exp_avg"])
    assert torch.equal(agent.generator.get_state(), loaded.generator.get_state())
    loaded.learn("CartPole-v1", 128, progress=False, run_dir=tmp_path / "run", log_every=64)
    assert loaded.num_timesteps == 256 and loaded.num_updates == 4
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [192, 256]
    # Training moved the loaded weights (the optimizer is live).
    assert not torch.equal(agent.params.param, loaded.params.param)


def test_checkpoint_holds_only_tensors_and_json(tmp_path):
    agent = A2C(seed=0, n_steps=4, num_envs=2)
    agent.learn("CartPole-v1", 16, progress=False, run_dir=False)
    agent.save(tmp_path / "a.pt")
    raw = torch.load(tmp_path / "a.pt", weights_only=True)
    assert raw["format"] == "rladapt-checkpoint"
    meta = json.loads(raw["metadata"])
    assert meta["agent"] == "A2C" and meta["settings"]["n_steps"] == 4
    assert meta["counters"]["num_timesteps"] == 16
    assert type(rladapt.load(tmp_path / "a.pt")) is A2C


class Exploit:
    def __reduce__(self):
        return (print, ("this code must never run",))


def test_crafted_pickle_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"format": "rladapt-checkpoint", "version": 1, "payload": Exploit()}, path)
    with pytest.raises(CheckpointError, match="refusing to load"):
        rladapt.load(path)
    assert "must never run" not in capsys.readouterr().out
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(CheckpointError):
        rladapt.load(plain)
    assert "must never run" not in capsys.readouterr().out


def test_other_files_are_not_checkpoints(tmp_path):
    tensors = tmp_path / "tensors.pt"
    torch.save({"weight": torch.zeros(3)}, tensors)
    with pytest.raises(CheckpointError, match="not an rladapt checkpoint"):
        read_checkpoint(tensors)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(CheckpointError):
        rladapt.load(text)
    with pytest.raises(FileNotFoundError):
        rladapt.load(tmp_path / "missing.pt")


def test_spaces_round_trip():
    from gymnasium import spaces

    for space in [
        spaces.Box(0, 255, (4, 84, 84), np.uint8),
        spaces.Box(np.array([-1.0, -2.0]), np.array([1.0, 2.0]), dtype=np.float32),
        spaces.Discrete(5, start=1),
        spaces.MultiDiscrete([3, 4]),
        spaces.MultiBinary(6),
        spaces.Dict({"image": spaces.Box(0, 255, (3, 8, 8), np.uint8), "vector": spaces.Box(-1, 1, (3,))}),
    ]:
        assert space_from_json(json.loads(json.dumps(space_to_json(space)))) == space


@pytest.mark.parametrize("agent_name, env_id", [("PPO", "CartPole-v1"), ("DQN", "CartPole-v1"), ("SAC", "Pendulum-v1")])
def test_agent_pickles_after_learning_and_the_copy_acts_the_same(agent_name, env_id):
    from rladapt import agents

    agent = getattr(agents, agent_name)(seed=0)
    env = AutoAdapt(gym.make(env_id), agent)
    agent.learn(env, 600, progress=False, run_dir=False)
    copy = pickle.loads(pickle.dumps(agent))  # e.g. to hand a trained agent to another process
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        np.testing.assert_array_equal(np.asarray(copy.act(obs)), np.asarray(agent.act(obs)))
    copy.learn(env, 600, progress=False, run_dir=False)
    assert copy.num_timesteps >= 1200


def test_checkpoint_and_adapt_do_not_import_the_agents_yet_a_checkpoint_loads_in_a_fresh_process(tmp_path) -> None:
    import subprocess
    import sys

    agent = A2C(seed=0, n_steps=4, num_envs=2)
    agent.learn("CartPole-v1", 16, progress=False, run_dir=False)
    agent.save(tmp_path / "agent.pt")
    code = (
        "import sys; import rladapt.checkpoint, rladapt.adapt, rladapt.opponents, rladapt.registry\n"
        "assert 'rladapt.agents' not in sys.modules, 'importing checkpoint/adapt/opponents imported every agent'\n"
        f"agent = rladapt.checkpoint.load({str(tmp_path / 'agent.pt')!r})\n"
        "print(type(agent).__module__, type(agent).__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["rladapt.agents.a2c", "A2C"]
