"""Exact resume after a crash: training-state checkpoints, learn(env, remaining), rladapt train --resume,
and runs SIGKILLed at random moments (during a checkpoint write among them)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import rladapt
from rladapt import AutoAdapt
from rladapt.agents import DQN, PPO
from rladapt.callbacks import Callback, CheckpointCallback
from rladapt.checkpoint import read_checkpoint
from rladapt.cli import main
from rladapt.logging.run_dir import JsonlAppender, truncate_jsonl

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parent.parent


def read_rows(path: Path) -> list[dict]:
    """Every line of a .jsonl file, parsed; fails on a torn line."""
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), f"torn last line in {path}: {data[-80:]!r}"
    return [json.loads(line) for line in data.splitlines()]


def test_jsonl_rows_are_whole_and_truncation_drops_later_and_torn_rows(tmp_path):
    path = tmp_path / "metrics.jsonl"
    out = JsonlAppender(path)
    for step in (10, 20, 30):
        out.write({"step": step, "loss": 0.5})
    assert [r["step"] for r in read_rows(path)] == [10, 20, 30]  # written through at once, no buffer
    out.close()
    with open(path, "ab") as f:
        f.write(b'{"step": 40, "lo')  # what a kill in the middle of a buffered write would leave
    assert truncate_jsonl(path, 20) == 2
    assert [r["step"] for r in read_rows(path)] == [10, 20]
    assert truncate_jsonl(tmp_path / "missing.jsonl", 5) == 0


class Recorder(Callback):
    """What the uninterrupted run does: parameters and schedules after each iteration, and the
    batch collected in the iteration after ``watch``."""

    def __init__(self, watch: int | None = None) -> None:
        self.watch, self.batch = watch, None
        self.params: dict[int, torch.Tensor] = {}
        self.lr: dict[int, float] = {}
        self.epsilon: dict[int, float] = {}
        self.replay_len: dict[int, int] = {}

    def on_step(self, run, step):
        if self.watch is not None and run.agent.num_timesteps == self.watch:  # the first row after watch
            self.batch = step.clone()

    def on_update(self, run, metrics):
        agent, step = run.agent, run.step
        self.params[step] = agent.params.param.detach().clone()
        self.lr[step] = agent.optimizer.param_groups[0]["lr"]
        if hasattr(agent, "epsilon"):
            self.epsilon[step] = agent.epsilon
        if getattr(agent, "replay", None) is not None:
            self.replay_len[step] = len(agent.replay)


def stop_at(step: int):
    return lambda agent, metrics: False if agent.num_timesteps >= step else None


DQN_SETTINGS = dict(seed=0, num_envs=2, learning_starts=64, train_freq=1, gradient_steps=1, batch_size=16,
                    buffer_size=2_000, target_update_interval=50, exploration_fraction=0.5, anneal_lr=True,
                    prioritized="proportional", hidden=(32,))


def test_dqn_first_update_after_resume_equals_the_uninterrupted_run(tmp_path):
    """Truly deterministic: the resumed agent acts on and learns from the same batch the
    uninterrupted run collected right after the checkpoint (its restarted envs would collect
    another), so exploration, sampling (priorities, beta), the target-update count, Adam's moments
    and the lr/epsilon schedules must all match."""
    total, at = 400, 200  # 2 envs x train_freq 1: every even step is an iteration boundary
    agent = DQN(**DQN_SETTINGS)
    record = Recorder(watch=at)
    agent.learn(AutoAdapt("CartPole-v1", agent), total, progress=False, run_dir=tmp_path / "a",
                callbacks=[record, CheckpointCallback(at, directory=tmp_path / "a" / "ckpt", keep=None)])
    resumed = rladapt.load(tmp_path / "a" / "ckpt" / f"step-{at}.pt")
    assert resumed.num_timesteps == at and resumed.unfinished_run is not None
    assert (resumed.run_start, resumed.run_steps) == (0, total)
    assert len(resumed.replay) == record.replay_len[at] and resumed.replay.num_envs == 2
    assert torch.equal(resumed.params.param, record.params[at])
    assert resumed.gradient_steps_done == agent.gradient_steps_done - (total - at) // 2  # one per iteration

    # One iteration as the loop runs it: explore on the collected observation, store, update.
    replay = resumed.make_storage(2, total - at)
    assert replay is resumed.replay  # kept, not rebuilt
    resumed.progress = at / total
    batch = record.batch
    with torch.inference_mode():
        acted = resumed.explore(batch.select("observation").clone())
    assert torch.equal(acted.get("action"), batch.get("action"))  # same epsilon, same generator draws
    resumed.num_timesteps += 2
    resumed.store(replay, batch.unsqueeze(0))
    metrics = resumed.update(replay, at / total)
    assert torch.equal(resumed.params.param, record.params[at + 2])
    assert metrics["train/lr"] == record.lr[at + 2] and metrics["train/epsilon"] == record.epsilon[at + 2]


@pytest.mark.parametrize("make", [
    lambda: PPO(seed=0, num_envs=2, n_steps=32, anneal_lr=True, anneal_clip=True, normalize_observations=True,
                normalize_rewards=True),
    lambda: DQN(**DQN_SETTINGS),
], ids=["ppo", "dqn"])
def test_resumed_run_continues_counters_schedules_and_metrics(tmp_path, make):
    """A run stopped at a checkpoint and resumed with learn(env, remaining) ends with the counters
    and schedule values of a straight run, its log rows on the same steps, and its replay kept.
    (Updates after the resume differ: the envs restart their episodes.)"""
    total, every, stop = 768, 128, 384
    straight = make()
    record = Recorder()
    straight.learn(AutoAdapt("CartPole-v1", straight), total, progress=False, run_dir=tmp_path / "straight",
                   log_every=64, callbacks=[record])

    first = make()
    run_dir = tmp_path / "run"
    first.learn(AutoAdapt("CartPole-v1", first), total, progress=False, run_dir=run_dir, log_every=64,
                checkpoint_every=every, callbacks=[stop_at(stop)])
    assert first.num_timesteps == stop
    metadata, payload = read_checkpoint(run_dir / "checkpoint.pt")
    assert metadata["counters"]["num_timesteps"] == stop
    assert (metadata["schedule"]["run_start"], metadata["schedule"]["run_steps"]) == (0, total)
    assert ("replay" in payload) == isinstance(first, DQN)

    resumed = rladapt.load(run_dir / "checkpoint.pt")
    for (k, v), (k2, v2) in zip(first.state_dict().items(), resumed.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)  # normaliser statistics among them
    assert resumed.np_random.bit_generator.state == first.np_random.bit_generator.state
    if isinstance(resumed, DQN):
        assert len(resumed.replay) == len(first.replay) and resumed.replay.beta == first.replay.beta
        assert np.array_equal(resumed.replay._nt, first.replay._nt)
        assert resumed.epsilon == pytest.approx(record.epsilon[stop])
    rest = Recorder()
    resumed.learn(AutoAdapt("CartPole-v1", resumed), total - stop, progress=False, log_every=64, callbacks=[rest])
    assert resumed.run_dir == run_dir  # went on in its own run directory

    assert resumed.num_timesteps == straight.num_timesteps == total
    assert resumed.num_updates == straight.num_updates
    for step, lr in rest.lr.items():  # the schedules continue over the original run, step by step
        assert lr == pytest.approx(record.lr[step])
        if rest.epsilon:
            assert rest.epsilon[step] == pytest.approx(record.epsilon[step])
    assert sorted(rest.lr) == [s for s in sorted(record.lr) if s > stop]
    if isinstance(resumed, DQN):
        assert resumed.gradient_steps_done == straight.gradient_steps_done
        assert resumed.replay.beta == pytest.approx(straight.replay.beta)
    steps = [r["step"] for r in read_rows(run_dir / "metrics.jsonl")]
    assert steps == [r["step"] for r in read_rows(tmp_path / "straight" / "metrics.jsonl")]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["steps"] == total and config["resumed_at"] == stop


def test_learn_with_other_steps_starts_a_new_run_and_says_so(tmp_path):
    agent = PPO(seed=0, num_envs=2, n_steps=32)
    agent.learn("CartPole-v1", 256, progress=False, run_dir=tmp_path / "run", checkpoint_every=64,
                callbacks=[stop_at(128)])
    resumed = rladapt.load(tmp_path / "run" / "checkpoint.pt")
    with pytest.warns(UserWarning, match=r"learn\(env, 128\) would continue it"):
        resumed.learn("CartPole-v1", 64, progress=False, run_dir=False)
    assert (resumed.run_start, resumed.run_steps) == (128, 64)
    finished = rladapt.load(tmp_path / "run" / "agent.pt")  # saved at the stop, mid-run: resumable too
    assert finished.unfinished_run is not None


def test_cli_resume_continues_to_the_planned_steps(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", "CartPole-v1", "--agent", "dqn", "--steps", "1024", "--num-envs", "2", "--seed", "0",
                 "--checkpoint-every", "256", "--run-dir", str(run_dir), "--no-progress",
                 "--set", "learning_starts=64", "--set", "buffer_size=5000"]) == 0
    # Cut the run back to its checkpoint at 512 as a crash there would have left it.
    agent = rladapt.load(run_dir / "checkpoints" / "step-512.pt")
    assert agent.unfinished_run is not None
    crashed = DQN(seed=0, num_envs=2, learning_starts=64, buffer_size=5000)
    crashed.learn("CartPole-v1", 1024, progress=False, run_dir=tmp_path / "crashed", checkpoint_every=256,
                  callbacks=[stop_at(512)])
    (tmp_path / "crashed" / "agent.pt").unlink()
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "crashed"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "at step 512 of 1,024: 512 steps to go" in out and "the envs restart their episodes" in out
    done = rladapt.load(tmp_path / "crashed" / "agent.pt")
    assert done.num_timesteps == 1024 and done.unfinished_run is None
    assert done.num_updates == rladapt.load(run_dir / "agent.pt").num_updates
    steps = [r["step"] for r in read_rows(tmp_path / "crashed" / "metrics.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == 1024
    # Steps or settings given with --resume are refused, not ignored.
    assert main(["train", "--resume", str(tmp_path / "crashed"), "--steps", "10"]) == 1
    assert "drop --steps" in capsys.readouterr().err
    # Nothing left to resume; a run directory without a checkpoint says why.
    assert main(["train", "--resume", str(tmp_path / "crashed"), "--no-progress"]) == 1
    assert "nothing to resume" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path), "--no-progress"]) == 1
    assert "no config.json" in capsys.readouterr().err


TRAIN_SCRIPT = textwrap.dedent("""
    import sys
    from rladapt.cli import main
    run_dir, resume = sys.argv[1], sys.argv[2] == "resume"
    if resume:
        sys.exit(main(["train", "--resume", run_dir, "--no-progress"]))
    sys.exit(main(["train", "CartPole-v1", "--agent", "dqn", "--steps", "{total}", "--num-envs", "2", "--seed", "0",
                   "--checkpoint-every", "{every}", "--run-dir", run_dir, "--no-progress",
                   "--set", "learning_starts=100", "--set", "buffer_size=300000", "--set", "exploration_fraction=0.5",
                   "--set", "anneal_lr=True", "--set", "hidden=[16]"]))
""")
STRAIGHT = dict(seed=0, num_envs=2, learning_starts=100, buffer_size=300_000, exploration_fraction=0.5, anneal_lr=True,
                hidden=(16,))


def test_sigkill_at_random_moments_always_leaves_a_resumable_run(tmp_path):
    """Ten SIGKILLs at moments drawn from a fixed RNG (from the start, or after the start's first
    checkpoint), one of them while checkpoint.pt is being written (a large replay makes the write long enough to
    catch); after each the checkpoint loads, metrics.jsonl and episodes.jsonl have no torn line,
    and the next start resumes from the checkpoint. The run then ends with the counters and
    schedules of a straight run."""
    # A total no start can reach before it is killed, however fast the machine (an idle CI machine
    # trained 12,000 steps between two kills): every kill must land inside the run.
    total, every = 40_000, 400
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT.replace("{total}", str(total)).replace("{every}", str(every)))
    run_dir, checkpoint = tmp_path / "run", tmp_path / "run" / "checkpoint.pt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    rng = np.random.default_rng(7)
    kills, last_step, killed_during_write = 0, -1, False
    while kills < 10 or not killed_during_write:
        assert kills < 14, "no kill landed during a checkpoint write"
        process = subprocess.Popen([sys.executable, str(script), str(run_dir), "resume" if kills else "fresh"],
                                   cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        during_write = kills >= 3 and not killed_during_write
        # Odd kills: any moment from the start (importing, resetting the envs, truncating the log,
        # training); the others: a moment after this start's first checkpoint.
        anytime = kills % 2 == 1 and not during_write
        start_mtime = checkpoint.stat().st_mtime_ns if checkpoint.exists() else None
        started = time.monotonic()
        delay, written_at, deadline = float(rng.uniform(0.0, 0.5)), None, started + 60
        kill_at = started + float(rng.uniform(0.2, 3.5))
        while process.poll() is None and time.monotonic() < deadline:
            if anytime:
                if time.monotonic() >= kill_at:
                    break
                time.sleep(0.005)
                continue
            fresh = checkpoint.exists() and checkpoint.stat().st_mtime_ns != start_mtime
            if during_write:
                if fresh and any(run_dir.glob(".checkpoint.pt.*.tmp")):
                    break  # a checkpoint is being written right now
                time.sleep(0.0005)
                continue
            if fresh and written_at is None:  # this start has written a checkpoint of its own
                written_at = time.monotonic()
            if written_at is not None and time.monotonic() - written_at >= delay:
                break
            time.sleep(0.005)
        assert process.poll() is None, f"the run ended before it was killed: {process.stderr.read().decode()[-2000:]}"
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        process.stderr.close()
        kills += 1
        killed_during_write |= during_write and bool(list(run_dir.glob(".checkpoint.pt.*.tmp")))
        agent = rladapt.load(checkpoint)
        assert agent.num_timesteps >= last_step and agent.unfinished_run is not None
        last_step = agent.num_timesteps
        assert all(r["step"] > 0 for r in read_rows(run_dir / "metrics.jsonl"))
        read_rows(run_dir / "episodes.jsonl")
    result = subprocess.run([sys.executable, str(script), str(run_dir), "resume"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"at step {last_step:,} of {total:,}" in result.stdout
    assert not list(run_dir.glob(".checkpoint.pt.*.tmp"))  # the resumed run cleared the torn write
    done = rladapt.load(run_dir / "agent.pt")
    steps = [r["step"] for r in read_rows(run_dir / "metrics.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == total  # no row twice after all those resumes
    # The counters and schedules of a straight run (same settings, in-process).
    straight = DQN(**STRAIGHT)
    straight.learn("CartPole-v1", total, progress=False, run_dir=False)
    assert done.num_timesteps == straight.num_timesteps == total and done.num_updates == straight.num_updates
    assert done.gradient_steps_done == straight.gradient_steps_done
    assert done.epsilon == straight.epsilon and done.progress == straight.progress
    assert done.optimizer.param_groups[0]["lr"] == straight.optimizer.param_groups[0]["lr"]
    assert done.replay is None  # agent.pt is the small checkpoint


def test_resuming_with_other_num_envs_says_the_replay_starts_empty(tmp_path):
    agent = DQN(**DQN_SETTINGS)
    agent.learn("CartPole-v1", 256, progress=False, run_dir=tmp_path / "run", checkpoint_every=128,
                callbacks=[stop_at(128)])
    resumed = rladapt.load(tmp_path / "run" / "checkpoint.pt")
    assert len(resumed.replay) == len(agent.replay) > 0
    with pytest.warns(UserWarning, match="filled by 2 envs; this run has 4"):
        resumed.learn("CartPole-v1", 128, num_envs=4, progress=False, run_dir=False)
    assert resumed.replay.num_envs == 4 and resumed.num_timesteps == 256


class _OldStyleSave(PPO):
    """A user agent whose ``save`` override predates ``training_state``."""

    saves: list[Path] = []

    def save(self, path):
        self.saves.append(Path(path))
        return super().save(path)


def test_save_override_without_training_state_still_checkpoints_and_warns(tmp_path):
    agent = _OldStyleSave(seed=0)
    checkpoints = CheckpointCallback(every=256, directory=tmp_path / "ckpt")
    with pytest.warns(UserWarning, match="takes no training_state argument"):
        agent.learn(AutoAdapt("CartPole-v1", agent), 512, callbacks=[checkpoints], run_dir=False)
    assert len(_OldStyleSave.saves) == 2 and list(checkpoints.saved) == _OldStyleSave.saves
    assert "training_state" not in read_checkpoint(checkpoints.saved[-1])[0]
