"""Agents written only against the public API inherit everything: in-process collection, worker
processes and torchrun ranks, masks, the run directory, checkpoints that load in a fresh process.

The two agents are the examples (``examples/custom_agent.py``: tabular Expected SARSA, 35 lines;
``examples/reinforce.py``: REINFORCE with a learned baseline, 35 lines), and the tabular
Q-learning of ``docs/custom_agents.md``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import pytest
import torch

from rladapt import AutoAdapt
from rladapt.callbacks import Callback
from rladapt.checkpoint import CheckpointError

from counting import CountInvalid  # tests/counting.py
from launch import ROOT, torchrun  # tests/launch.py

EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(EXAMPLES))  # worker processes inherit the path and import the agents' module

from custom_agent import ExpectedSarsa  # noqa: E402
from reinforce import Reinforce  # noqa: E402

torch.set_num_threads(1)


def agent_lines(path: Path, first: str, last: str | None = None) -> int:
    """Lines of code from the line starting with ``first`` to the one before ``last`` (or the
    end), blank lines and comments left out."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first))
    stop = next((i for i, line in enumerate(lines) if last and line.startswith(last)), len(lines))
    return sum(1 for line in lines[start:stop] if line.strip() and not line.strip().startswith("#"))


def test_the_custom_agents_are_short():
    assert agent_lines(EXAMPLES / "custom_agent.py", "@dataclass", 'if __name__') <= 40
    assert agent_lines(EXAMPLES / "reinforce.py", "@dataclass", 'if __name__') <= 40


def cliff_walking(agent):
    return AutoAdapt("CliffWalking-v1", agent, env_kwargs={"max_episode_steps": 200})


@pytest.mark.parametrize("workers", [0, 2])
def test_expected_sarsa_learns_cliff_walking_in_process_and_in_workers(workers):
    agent = ExpectedSarsa(seed=0)
    env = cliff_walking(agent)
    agent.learn(env, 16_000, workers=workers, progress=False, run_dir=False)
    assert agent.num_timesteps == 16_000 and agent.num_updates == 2_000  # 8 envs by default
    # The greedy path reaches the goal (random: about -10,000 in 200 steps; the optimum: -13).
    assert agent.evaluate(env, episodes=1).mean >= -17


@pytest.mark.parametrize("workers", [0, 2])
def test_reinforce_learns_cartpole_in_process_and_in_workers(workers):
    agent = Reinforce(seed=0)
    env = AutoAdapt("CartPole-v1", agent)
    agent.learn(env, 40_960, workers=workers, progress=False, run_dir=False)
    assert agent.evaluate(env, episodes=10).mean >= 150  # random: about 22


class ValidActionsOnly(Callback):
    """Checks every collected step, wherever it was collected: the action was valid."""

    def __init__(self) -> None:
        self.checked = 0

    def on_step(self, run, step):
        valid = step["valid"]
        chosen = step["action_mask"].gather(-1, step["action"].long().unsqueeze(-1)).squeeze(-1)
        assert bool(chosen[valid].all()), "an invalid action was taken"
        self.checked += int(valid.sum())


@pytest.mark.parametrize("agent_class", [ExpectedSarsa, Reinforce])
def test_custom_agents_never_take_an_invalid_action_on_the_masked_game(agent_class):
    CountInvalid.invalid.clear()
    agent = agent_class(seed=0)
    tabular = {"observation_bins": 3} if "index" in agent.spec.observations else {}  # cells are -1, 0, 1

    def make_env():
        return AutoAdapt(CountInvalid(gym.make("rladapt/TicTacToe-v0")), agent, **tabular)

    check = ValidActionsOnly()
    agent.learn(make_env, 2_048, progress=False, run_dir=False, callbacks=[check])
    agent.learn(make_env, 2_048, workers=2, progress=False, run_dir=False, callbacks=[check])
    assert agent.use_masks and check.checked > 3_000
    env = make_env()
    agent.evaluate(env, episodes=20)
    assert not CountInvalid.invalid  # in this process: the first learn call and the evaluation


def test_a_custom_agent_that_writes_an_undeclared_key_gets_an_error_naming_it():
    class Chatty(ExpectedSarsa):
        def act_batch(self, td, deterministic=False):
            td = super().act_batch(td, deterministic)
            td["extra"] = torch.zeros(td.shape[0])
            return td

    with pytest.raises(ValueError, match=r"undeclared \['extra'\].*out_specs"):
        Chatty(seed=0).learn(cliff_walking(ExpectedSarsa()), 64, progress=False, run_dir=False)


def test_the_number_of_envs_follows_the_workers_when_not_set():
    agent = ExpectedSarsa(seed=0, num_envs=1)
    agent.learn(cliff_walking(agent), 64, workers=3, progress=False, run_dir=False)
    assert agent.num_timesteps == 66 and agent.num_updates == 22  # 3 envs: one per worker
    with pytest.raises(ValueError, match="num_envs=2 is less than workers=3"):
        agent.learn(cliff_walking(agent), 64, num_envs=2, workers=3, progress=False, run_dir=False)


LOAD = """
import json, sys
{imports}
import numpy as np
import rladapt
agent = rladapt.load(sys.argv[1])
print(json.dumps({{"class": type(agent).__module__ + ":" + type(agent).__qualname__, "steps": agent.num_timesteps,
                  "actions": [int(agent.act(s)) for s in range(48)]}}))
"""


def run_loader(checkpoint: Path, imports: str = "", pythonpath: list[Path] = ()) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *map(str, pythonpath)])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(LOAD.format(imports=imports)), str(checkpoint)],
                          env=env, capture_output=True, text=True, timeout=120, cwd=str(checkpoint.parent))


def test_a_custom_agent_loads_in_a_fresh_process_by_import_or_entry_point(tmp_path):
    agent = ExpectedSarsa(seed=0)
    env = cliff_walking(agent)
    agent.learn(env, 4_000, progress=False, run_dir=tmp_path / "run")
    expected = [agent.act(s) for s in range(48)]
    checkpoint = tmp_path / "run" / "agent.pt"

    # Not imported, not registered: refused, naming the module to import; nothing was imported.
    refused = run_loader(checkpoint, pythonpath=[EXAMPLES])
    assert refused.returncode != 0
    assert "custom_agent:ExpectedSarsa" in refused.stderr and "import custom_agent" in refused.stderr
    assert "rladapt.agents" in refused.stderr  # the entry point group, the other way

    # Imported by the loading program: found.
    imported = run_loader(checkpoint, imports="import custom_agent", pythonpath=[EXAMPLES])
    assert imported.returncode == 0, imported.stderr
    out = json.loads(imported.stdout)
    assert out == {"class": "custom_agent:ExpectedSarsa", "steps": agent.num_timesteps, "actions": expected}

    # Registered by an installed package under the entry point group rladapt.agents: found.
    site = tmp_path / "site"
    info = site / "sarsa_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sarsa-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[rladapt.agents]\nexpected_sarsa = custom_agent:ExpectedSarsa\n")
    registered = run_loader(checkpoint, pythonpath=[site, EXAMPLES])
    assert registered.returncode == 0, registered.stderr
    assert json.loads(registered.stdout)["actions"] == expected


def test_a_checkpoint_of_an_unknown_class_is_refused_in_this_process(tmp_path):
    import rladapt

    agent = ExpectedSarsa(seed=0)
    agent.learn(cliff_walking(agent), 64, progress=False, run_dir=False)
    path = agent.save(tmp_path / "a.pt")
    from rladapt import registry

    registered = registry._BY_PATH.pop("custom_agent:ExpectedSarsa")
    try:
        with pytest.raises(CheckpointError, match=r"custom_agent:ExpectedSarsa.*import custom_agent"):
            rladapt.load(path)
    finally:
        registry._BY_PATH["custom_agent:ExpectedSarsa"] = registered
    assert type(rladapt.load(path)) is ExpectedSarsa


TORCHRUN = """
import json, sys
sys.path.insert(0, {examples!r})
from custom_agent import ExpectedSarsa
from reinforce import Reinforce
from rladapt import AutoAdapt
from rladapt.collect import distributed

if __name__ == "__main__":
    out = {{}}
    sarsa = ExpectedSarsa(seed=0)
    env = AutoAdapt("CliffWalking-v1", sarsa, env_kwargs={{"max_episode_steps": 200}})
    sarsa.learn(env, 8_000, num_envs=4, workers="distributed", progress=False, run_dir=False)
    reinforce = Reinforce(seed=0, n_steps=64)
    reinforce.learn("CartPole-v1", 16_384, num_envs=4, workers="distributed", progress=False, run_dir=False)
    if distributed.is_learner():
        out["sarsa_steps"], out["sarsa_return"] = sarsa.num_timesteps, sarsa.evaluate(env, episodes=1).mean
        out["reinforce_steps"] = reinforce.num_timesteps
        out["reinforce_return"] = reinforce.evaluate("CartPole-v1", episodes=10).mean
        with open(sys.argv[1], "w") as f:
            json.dump(out, f)
"""


def test_custom_agents_learn_on_torchrun_ranks(tmp_path):
    script, result = tmp_path / "train.py", tmp_path / "out.json"
    script.write_text(textwrap.dedent(TORCHRUN.format(examples=str(EXAMPLES))))
    run = torchrun(script, str(result), timeout=300)
    assert run.returncode == 0, run.stdout[-4000:]
    out = json.loads(result.read_text())
    assert out["sarsa_steps"] == 8_000 and out["reinforce_steps"] == 16_384
    assert out["sarsa_return"] >= -17 and out["reinforce_return"] >= 60, out  # random CartPole: about 22


DOC = ROOT / "docs" / "custom_agents.md"


def doc_agent() -> str:
    """The first Python block of docs/custom_agents.md: the tabular Q-learning agent."""
    return re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)


def test_the_documented_q_learning_agent_fits_in_50_lines_and_gets_everything(tmp_path):
    code = doc_agent()
    assert sum(1 for line in code.splitlines() if line.strip() and not line.strip().startswith("#")) <= 50
    (tmp_path / "doc_qlearning.py").write_text(code)
    sys.path.insert(0, str(tmp_path))  # a module, so worker processes import the class by reference
    import doc_qlearning
    agent = doc_qlearning.TabularQ(seed=0)
    env = AutoAdapt("rladapt/Grid-v0", agent)
    agent.learn(env, 8_000, workers=2, progress=False, run_dir=tmp_path / "run", checkpoint_every=4_000)
    assert agent.evaluate(env, episodes=10).mean > 0.5  # the grid's goal pays 1; the pit -1
    run = tmp_path / "run"
    assert {"config.json", "metrics.jsonl", "episodes.jsonl", "agent.pt", "checkpoint.pt"} <= {p.name for p in run.iterdir()}
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 8_000
    import rladapt

    again = rladapt.load(run / "agent.pt")
    assert torch.equal(again.q, agent.q) and again.num_timesteps == 8_000
    # Masks: on the masked game it never plays an occupied cell.
    CountInvalid.invalid.clear()
    ttt = doc_qlearning.TabularQ(seed=0)
    def game():  # the board's cells are -1, 0, 1: three bins each make one state index
        return AutoAdapt(CountInvalid(gym.make("rladapt/TicTacToe-v0")), ttt, observation_bins=3)

    ttt.learn(game, 2_000, progress=False, run_dir=False)
    ttt.evaluate(game(), episodes=20)
    assert ttt.use_masks and not CountInvalid.invalid
