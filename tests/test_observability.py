"""Observability: run directory, callbacks, videos, terminal view, W&B offline round trip, plots."""

from __future__ import annotations

import glob
import io
import json
import os
import re
import struct
import time
from pathlib import Path

import cv2
import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from rladapt import AutoAdapt
from rladapt.agents import A2C, PPO, RandomAgent
from rladapt.agents.base import ActionValues, Agent
from rladapt.callbacks import Callback, CheckpointCallback, EvalCallback, StopOnReward
from rladapt.logging.metadata import redact
from rladapt.logging.plot import plot_runs
from rladapt.logging.terminal import format_action_values


def small_ppo(**kwargs) -> PPO:
    return PPO(seed=0, num_envs=2, n_steps=16, n_epochs=1, **kwargs)


class BigRewardEnv(gym.Env):
    """Five steps of reward 10: the raw return is 50, clipped rewards would sum to 5."""

    metadata = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(2, np.float32), 10.0, self.t >= 5, False, {}


# -------------------------------------------------------------------------------------------
# Run directory
# -------------------------------------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_run_directory_contents(tmp_path):
    agent = small_ppo()
    env = AutoAdapt("CartPole-v1", agent)
    run = tmp_path / "run"
    agent.learn(env, 128, progress=False, run_dir=run, log_every=32,
                callbacks=[EvalCallback(64, episodes=2), CheckpointCallback(64)])
    assert sorted(p.name for p in run.iterdir()) == ["agent.pt", "checkpoints", "config.json", "episodes.jsonl", "metrics.jsonl"]
    config = json.loads((run / "config.json").read_text())
    assert config["agent"] == "PPO" and config["env"] == "CartPole-v1" and config["settings"]["n_steps"] == 16
    assert config["run_dir"] == str(run)
    assert {"python", "rladapt", "gymnasium", "torch", "numpy", "tensordict"} <= set(config["versions"])
    assert config["plan"] == [str(step) for step in env.plan] and "EpisodeStatistics" in config["plan"][1]

    rows = read_jsonl(run / "metrics.jsonl")
    train = [r for r in rows if "train/policy_loss" in r]
    assert [r["step"] for r in train] == [32, 64, 96, 128]
    for key in ("rollout/return_mean", "rollout/length_mean", "time/steps_per_s", "train/value_loss"):
        assert key in train[-1]
    evals = [r for r in rows if "eval/return_mean" in r]
    assert [r["step"] for r in evals] == [64, 128] and all(r["eval/episodes"] == 2 for r in evals)

    episodes = read_jsonl(run / "episodes.jsonl")
    assert len(episodes) == agent.num_episodes > 0
    assert all(set(e) == {"step", "return", "length"} and e["return"] == e["length"] for e in episodes)  # CartPole: 1 per step
    assert [e["step"] for e in episodes] == sorted(e["step"] for e in episodes)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-128.pt", "step-64.pt"]


def test_episode_returns_are_raw_even_when_rewards_are_clipped(tmp_path):
    agent = small_ppo()
    agent.learn(lambda: AutoAdapt(BigRewardEnv(), agent, clip_rewards=True), 64, progress=False, run_dir=tmp_path)
    episodes = read_jsonl(tmp_path / "episodes.jsonl")
    assert episodes and all(e["return"] == 50.0 and e["length"] == 5 for e in episodes)
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert rows[-1]["rollout/return_mean"] == 50.0


def test_redact_hides_secret_looking_keys():
    config = {"lr": 1e-3, "api_key": "abc", "nested": {"WANDB_TOKEN": "x", "password": "y", "keep": [1, {"secret": 2}]}}
    assert redact(config) == {"lr": 1e-3, "api_key": "<redacted>",
                              "nested": {"WANDB_TOKEN": "<redacted>", "password": "<redacted>", "keep": [1, {"secret": "<redacted>"}]}}


# -------------------------------------------------------------------------------------------
# Callbacks
# -------------------------------------------------------------------------------------------


class Counter(Callback):
    def __init__(self, stop_on: str | None = None, after: int = 1) -> None:
        self.counts: dict[str, int] = {}
        self.episode_steps: list[int] = []
        self.stop_on, self.after = stop_on, after

    def _count(self, hook: str):
        self.counts[hook] = self.counts.get(hook, 0) + 1
        if hook == self.stop_on and self.counts[hook] >= self.after:
            return False
        return None

    def on_learn_start(self, run):
        return self._count("on_learn_start")

    def on_step(self, run, step):
        assert step["observation"].shape[0] == 2
        return self._count("on_step")

    def on_episode_end(self, run, episode):
        assert episode.length > 0 and run.step - 32 < episode.step <= run.step  # it ended in this batch
        self.episode_steps.append(episode.step)
        return self._count("on_episode_end")

    def on_update(self, run, metrics):
        assert metrics["step"] == run.agent.num_timesteps == run.step
        return self._count("on_update")

    def on_eval(self, run, result):
        return self._count("on_eval")

    def on_learn_end(self, run):
        self._count("on_learn_end")


def test_each_callback_fires_the_right_number_of_times(tmp_path):
    agent = small_ppo()
    counter = Counter()
    calls = []
    agent.learn("CartPole-v1", 160, progress=False, run_dir=tmp_path,
                callbacks=[counter, EvalCallback(64, episodes=1), lambda a, m: calls.append(m["step"])])
    # 160 steps = 5 iterations of 16 vector steps of 2 envs; evaluations at 64 and 128, and at the end (160).
    assert counter.counts == {"on_learn_start": 1, "on_step": 80, "on_episode_end": agent.num_episodes,
                              "on_update": 5, "on_eval": 3, "on_learn_end": 1}
    assert calls == [32, 64, 96, 128, 160]  # plain functions still work, after every iteration
    assert len(read_jsonl(tmp_path / "episodes.jsonl")) == agent.num_episodes


@pytest.mark.parametrize("hook", ["on_step", "on_episode_end", "on_update"])
def test_a_callback_can_stop_training(hook):
    agent = small_ppo()
    counter = Counter(stop_on=hook, after=2)
    agent.learn("CartPole-v1", 10_000, progress=False, run_dir=False, callbacks=[counter])
    assert agent.num_timesteps < 10_000
    assert counter.counts["on_learn_end"] == 1
    if hook == "on_update":
        assert agent.num_timesteps == 64  # stops right after the second iteration


def test_stop_on_reward_and_checkpoints(tmp_path):
    agent = small_ppo()
    stop = StopOnReward(5, window=3)  # every CartPole episode lasts at least 8 steps
    checkpoints = CheckpointCallback(32, keep=1)
    agent.learn("CartPole-v1", 10_000, progress=False, run_dir=tmp_path, callbacks=[stop, checkpoints])
    # Reached at an episode's end; training stops at the end of that iteration (32 env steps).
    assert stop.reached_at is not None and stop.reached_at <= agent.num_timesteps < stop.reached_at + 32
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == [f"step-{agent.num_timesteps}.pt"]
    assert list(checkpoints.saved) == [tmp_path / "checkpoints" / f"step-{agent.num_timesteps}.pt"]

    agent = small_ppo()
    evals = EvalCallback(32, episodes=1)
    stop = StopOnReward(1, source="eval")
    agent.learn("CartPole-v1", 10_000, progress=False, run_dir=False, callbacks=[evals, stop])
    assert agent.num_timesteps == 32 and len(evals.results) == 1


def test_callback_arguments_are_checked():
    with pytest.raises(ValueError, match="every"):
        EvalCallback(0)
    with pytest.raises(ValueError, match="source"):
        StopOnReward(1, source="train")
    with pytest.raises(TypeError, match="callback"):
        small_ppo().learn("CartPole-v1", 32, progress=False, run_dir=False, callbacks=[42])


# -------------------------------------------------------------------------------------------
# Video
# -------------------------------------------------------------------------------------------


def mp4_frames(path: Path) -> tuple[int, int, int]:
    """(frames, height, width) read back with OpenCV."""
    capture = cv2.VideoCapture(str(path))
    frames, shape = 0, None
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames, shape = frames + 1, frame.shape
    capture.release()
    assert shape is not None, f"{path} has no readable frame"
    return frames, shape[0], shape[1]


def test_evaluation_video_and_gif_show_the_env_frames(tmp_path):
    from PIL import Image

    agent = small_ppo()
    env = AutoAdapt("CartPole-v1", agent)
    result = agent.evaluate(env, episodes=2, video_dir=tmp_path, gif=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "eval-episode-0.gif", "eval-episode-0.mp4", "eval-episode-1.gif", "eval-episode-1.mp4"]
    for i, length in enumerate(result.lengths):
        frames, height, width = mp4_frames(tmp_path / f"eval-episode-{i}.mp4")
        assert (frames, height, width) == (length + 1, 400, 600)  # the reset frame, then one per step
        gif = Image.open(tmp_path / f"eval-episode-{i}.gif")
        durations = []
        for index in range(gif.n_frames):  # Pillow merges identical consecutive frames, adding their durations
            gif.seek(index)
            durations.append(gif.info["duration"])
        assert gif.size == (600, 400) and sum(durations) == (length + 1) * 20  # CartPole renders at 50 fps
    assert env.render_mode is None  # the caller's env is untouched: a copy renders the frames


def test_atari_video_is_the_game_screen_not_the_network_input(tmp_path):
    agent = RandomAgent(seed=0)
    env = AutoAdapt("ALE/Pong-v5", PPO(), env_kwargs={"max_episode_steps": 80})
    agent.setup(env.observation_space, env.action_space)
    assert env.observation_space.shape == (4, 84, 84)
    result = agent.evaluate(env, episodes=2, video_dir=tmp_path, video_episodes=1)
    assert [p.name for p in tmp_path.iterdir()] == ["eval-episode-0.mp4"]
    frames, height, width = mp4_frames(tmp_path / "eval-episode-0.mp4")
    # RGB 210x160 screens, one per agent step (episode lengths count the emulator's frames: 4 per step).
    assert (height, width) == (210, 160) and 1 < frames <= result.lengths[0] // 4 + 1


def test_video_needs_an_env_that_renders_frames(tmp_path):
    agent = RandomAgent(seed=0)
    with pytest.raises(ValueError, match="cannot render frames.*render='ansi'"):
        agent.evaluate("rladapt/Grid-v0", episodes=1, video_dir=tmp_path)


# -------------------------------------------------------------------------------------------
# Terminal view
# -------------------------------------------------------------------------------------------


def step_blocks(text: str) -> list[list[str]]:
    """The action-table lines (one per action) of every step printed by play."""
    blocks, current = [], None
    for line in text.splitlines():
        if line.strip().startswith("action "):
            current = []
            blocks.append(current)
        elif current is not None and re.match(r"^(  ->|    ) \S", line):
            current.append(line)
        else:
            current = None
    return blocks


def check_view(text: str, names: list[str]) -> list[list[str]]:
    """Every step lists every action by name with a value (or "masked"), exactly one marked "->"."""
    blocks = step_blocks(text)
    assert blocks, text
    for block in blocks:
        assert len(block) == len(names) and all(line[5:].startswith(name) for line, name in zip(block, names)), block
        assert all(re.search(r"[-+]?\d\.\d{3}", line) or line.endswith("masked") for line in block), block
        assert sum(line.startswith("  ->") for line in block) == 1, block
    assert "reward" in text and "terminated" in text and "truncated" in text
    return blocks


def test_terminal_view_for_ppo_on_grid_marks_the_most_likely_action():
    agent = small_ppo()
    agent.learn("rladapt/Grid-v0", 64, progress=False, run_dir=False)
    out = io.StringIO()
    from rladapt.train import play

    result = play(agent, "rladapt/Grid-v0", episodes=2, max_steps=4, file=out)
    text = out.getvalue()
    assert len(result.returns) == 2 and ". # . P" in text  # the env's own ANSI board
    blocks = check_view(text, ["up", "right", "down", "left"])
    assert "     action  P" in text
    for block in blocks:
        probs = [float(re.findall(r"\d\.\d{3}", line)[0]) for line in block]
        assert abs(sum(probs) - 1) < 0.01
        chosen = next(i for i, line in enumerate(block) if line.startswith("  ->"))
        assert probs[chosen] == max(probs)  # deterministic: the most likely action


def test_terminal_view_for_qlearning_on_grid():
    QLearning = pytest.importorskip("rladapt.agents.qlearning").QLearning
    agent = QLearning(seed=0)
    agent.learn("rladapt/Grid-v0", 2000, progress=False, run_dir=False)
    out = io.StringIO()
    from rladapt.train import play

    play(agent, "rladapt/Grid-v0", max_steps=5, file=out)
    blocks = check_view(out.getvalue(), ["up", "right", "down", "left"])
    for block in blocks:
        values = [float(line.split()[-1]) for line in block]
        chosen = next(i for i, line in enumerate(block) if line.startswith("  ->"))
        assert values[chosen] == max(values)  # greedy
        assert all(re.search(r"[-+]\d\.\d{3}$", line) for line in block)  # every action has a value


def test_terminal_view_for_dqn_shows_masked_actions():
    DQN = pytest.importorskip("rladapt.agents.dqn").DQN
    agent = DQN(seed=0)
    out = io.StringIO()
    from rladapt.train import play

    play(agent, "rladapt/TicTacToe-v0", max_steps=3, file=out)
    text = out.getvalue()
    names = ["top-left", "top", "top-right", "left", "centre", "right", "bottom-left", "bottom", "bottom-right"]
    blocks = check_view(text, names)
    assert "masked" not in "".join(blocks[0])  # an empty board: every cell is free
    assert any(sum(line.endswith("masked") for line in block) >= 2 for block in blocks[1:])  # X and O placed
    for block in blocks:
        assert not any(line.startswith("  ->") and line.endswith("masked") for line in block)


def test_terminal_view_without_text_render_or_values(capsys):
    class NoView(Agent):
        """An agent with no per-action view."""

        def setup(self, observation_space, action_space):
            self.observation_space, self.action_space = observation_space, action_space

        def act(self, obs, mask=None, deterministic=True):
            return 0

    NoView().play("CartPole-v1", max_steps=2)  # CartPole renders no text: observations are shown
    text = capsys.readouterr().out
    assert "observation [" in text and "-> action 0" in text and "episode 1 ended after 2 steps" in text


def test_format_action_values():
    text = format_action_values(np.array([0.25, 0.75, 0.0]), "prob", 1, ["a", "bb", "c"], np.array([True, True, False]))
    assert text.splitlines() == ["     action  P", "     a       0.250  #####", "  -> bb      0.750  ###############",
                                 "     c       masked"]
    assert ActionValues(np.zeros(2), "q").kind == "q"


# -------------------------------------------------------------------------------------------
# Weights & Biases (offline)
# -------------------------------------------------------------------------------------------


def wandb_records(run_dir: Path, timeout: float = 30.0) -> list:
    """Every record of the offline W&B run in ``run_dir`` (its LevelDB-style log of protobufs).
    wandb-core writes the file in the background: wait for the final ``exit`` record."""
    deadline = time.monotonic() + timeout
    while True:
        records = _read_wandb_file(run_dir)
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


def _read_wandb_file(run_dir: Path) -> list:
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = glob.glob(str(run_dir / "wandb" / "offline-run-*" / "run-*.wandb"))
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B"
    records, i, pending = [], 7, b""
    while i + 7 <= len(data):
        if 32768 - i % 32768 < 7:  # block padding
            i += 32768 - i % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[i : i + 7])
        chunk, i = data[i + 7 : i + 7 + length], i + 7 + length
        if kind in (1, 4):  # full, or last piece
            record = pb.Record()
            try:
                record.ParseFromString(pending + chunk if kind == 4 else chunk)
            except Exception:  # noqa: BLE001 - a record being written right now
                break
            records.append(record)
            pending = b""
        elif kind in (2, 3):  # first or middle piece
            pending += chunk
    return records


@pytest.fixture
def wandb_service():
    """Stop the wandb-core service a test's runs started: no process outlives the test, and the
    offline run files are complete."""
    yield
    import wandb

    wandb.teardown()


def test_wandb_offline_round_trip(tmp_path, monkeypatch, wandb_service):
    from rladapt.logging.wandb import WandbLogger

    fake_key = "fakekey" + "0123456789abcdef" * 2 + "0"
    monkeypatch.setenv("WANDB_API_KEY", fake_key)
    monkeypatch.setenv("WANDB_MODE", "offline")
    agent = small_ppo()
    run_dir = tmp_path / "run"
    logger = WandbLogger(project="rladapt-tests", tags=["ci"], log_checkpoint=True)
    agent.learn("CartPole-v1", 64, progress=False, run_dir=run_dir, logger=logger, log_every=32,
                callbacks=[EvalCallback(64, episodes=1, video=True)])

    records = wandb_records(run_dir)
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.project == "rladapt-tests" and list(run.tags) == ["ci"] and run.display_name == "run"
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["agent"] == "PPO" and config["plan"] == json.loads((run_dir / "config.json").read_text())["plan"]

    history = [{item.key or "/".join(item.nested_key): item.value_json for item in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]
    steps = [int(h["_step"]) for h in history]
    assert steps == [32, 64]  # the env-step axis
    assert "train/policy_loss" in history[0] and float(history[1]["eval/return_mean"]) > 0
    video = json.loads(history[1]["eval/video/path"])
    assert video.endswith(".mp4") and json.loads(history[1]["eval/video/_type"]) == "video-file"
    offline_dir = next((run_dir / "wandb").glob("offline-run-*"))
    assert mp4_frames(offline_dir / "files" / video)[1:] == (400, 600)
    artifacts = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
    assert [(a.type, [c.path for c in a.manifest.contents]) for a in artifacts] == [("model", ["agent.pt"])]

    for path in run_dir.rglob("*"):  # no secret anywhere in the run directory
        if path.is_file():
            assert fake_key.encode() not in path.read_bytes(), path


def test_wandb_logger_by_name_logs_offline_without_an_account(tmp_path, monkeypatch, wandb_service):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc login either
    from rladapt.logging.wandb import WandbLogger, has_wandb_credentials

    assert not has_wandb_credentials() and WandbLogger()._mode() == "offline"
    A2C(seed=0, num_envs=2, n_steps=8).learn("CartPole-v1", 16, progress=False, run_dir=tmp_path / "run", logger="wandb")
    history = [r for r in wandb_records(tmp_path / "run") if r.WhichOneof("record_type") == "history"]
    assert len(history) == 1


# -------------------------------------------------------------------------------------------
# Plots
# -------------------------------------------------------------------------------------------


def fake_run(path: Path, agent: str, seed: int, returns: list[float], lr: float = 1e-3) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"agent": agent, "env": "CartPole-v1", "settings": {"seed": seed, "lr": lr}}))
    (path / "metrics.jsonl").write_text("")
    (path / "episodes.jsonl").write_text("".join(
        json.dumps({"step": 100 * (i + 1), "return": r, "length": 10}) + "\n" for i, r in enumerate(returns)))
    return path


def test_plot_png_has_the_requested_size_and_overlays_runs(tmp_path):
    rng = np.random.default_rng(0)
    for seed in (0, 1, 2):
        fake_run(tmp_path / "runs" / f"ppo-{seed}", "PPO", seed, list(np.linspace(10, 400, 60) + rng.normal(0, 20, 60)))
    fake_run(tmp_path / "runs" / "dqn-0", "DQN", 0, list(np.linspace(10, 200, 50)))
    out = plot_runs([tmp_path / "runs"], tmp_path / "plot.png", width=800, height=500)
    image = cv2.imread(str(out))
    assert image.shape == (500, 800, 3)
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 20  # curves, shading and text, not a blank canvas

    alone = plot_runs([tmp_path / "runs" / "dqn-0"], tmp_path / "one.png")  # a single run, default size
    assert cv2.imread(str(alone)).shape == (600, 1000, 3)


def test_plot_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plot_runs([tmp_path / "missing"], tmp_path / "x.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        plot_runs([tmp_path / "empty"], tmp_path / "x.png")
    fake_run(tmp_path / "fresh", "PPO", 0, [])
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_runs([tmp_path / "fresh"], tmp_path / "x.png")
