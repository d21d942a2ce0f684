"""TensorBoard logging: the event file read back holds the metrics of ``metrics.jsonl``, name for
name and env step for env step; the config as text and hyperparameters; the CLI flag; errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from rladapt.agents import PPO
from rladapt.callbacks import EvalCallback
from rladapt.cli import main
from rladapt.logging import make_logger
from rladapt.logging.tensorboard import TensorBoardLogger


def read_events(directory: Path) -> EventAccumulator:
    events = EventAccumulator(str(directory), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return events


def numeric_rows(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """``metrics.jsonl`` as ``{metric: [(step, value), ...]}`` (numbers only)."""
    series: dict[str, list[tuple[int, float]]] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        step = row.pop("step")
        for key, value in row.items():
            if isinstance(value, (int, float)):
                series.setdefault(key, []).append((step, float(value)))
    return series


def test_event_file_holds_the_metrics_of_the_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    PPO(seed=0).learn("CartPole-v1", 2000, progress=False, run_dir=run_dir, logger="tensorboard", log_every=512,
                      callbacks=[EvalCallback(every=1000, episodes=2)])
    expected = numeric_rows(run_dir)
    assert {"rollout/return_mean", "train/policy_loss", "eval/return_mean", "time/steps_per_s"} <= set(expected)
    assert len(expected["rollout/return_mean"]) >= 3

    events = read_events(run_dir / "tensorboard")
    assert set(events.Tags()["scalars"]) == set(expected)
    for tag, rows in expected.items():
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == [step for step, _ in rows], tag
        assert [s.value for s in scalars] == pytest.approx([value for _, value in rows], rel=1e-6), tag


def test_config_is_logged_as_text_and_hyperparameters(tmp_path):
    run_dir = tmp_path / "run"
    PPO(seed=0, n_steps=16, num_envs=2).learn("CartPole-v1", 64, progress=False, run_dir=run_dir, logger="tensorboard")
    events = read_events(run_dir / "tensorboard")
    (config_text,) = events.Tensors("config/text_summary")
    text = config_text.tensor_proto.string_val[0].decode()
    assert '"agent": "PPO"' in text and '"n_steps": 16' in text
    start = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(start).session_start_info.hparams
    assert hparams["agent"].string_value == "PPO" and hparams["n_steps"].number_value == 16
    assert hparams["hidden"].string_value == "[64, 64]"  # a list: as JSON text


def test_without_a_run_directory_the_files_go_under_runs_tensorboard(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    PPO(seed=0, n_steps=16, num_envs=2).learn("CartPole-v1", 64, progress=False, run_dir=False, logger="tensorboard")
    (directory,) = (tmp_path / "runs" / "tensorboard").iterdir()
    assert directory.name.startswith("ppo-CartPole-v1-")
    assert "rollout/return_mean" in read_events(directory).Tags()["scalars"]


def test_an_explicit_directory_and_a_list_of_loggers(tmp_path):
    logger = TensorBoardLogger(tmp_path / "tb", log_hparams=False)
    PPO(seed=0, n_steps=16, num_envs=2).learn("CartPole-v1", 64, progress=False, run_dir=tmp_path / "run",
                                              logger=[logger, "tensorboard"])
    assert "rollout/return_mean" in read_events(tmp_path / "tb").Tags()["scalars"]
    assert "rollout/return_mean" in read_events(tmp_path / "run" / "tensorboard").Tags()["scalars"]


def test_cli_train_with_tensorboard(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = main(["train", "CartPole-v1", "--steps", "64", "--num-envs", "2", "--set", "n_steps=16", "--tensorboard",
                 "--run-dir", str(run_dir), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert set(read_events(run_dir / "tensorboard").Tags()["scalars"]) == set(numeric_rows(run_dir))


def test_unknown_logger_names_the_options():
    with pytest.raises(ValueError, match="unknown logger 'tensorbord'.*'wandb', 'tensorboard'"):
        make_logger("tensorbord", None)
    with pytest.raises(TypeError, match="log_config"):
        make_logger(object(), None)


def test_missing_tensorboard_package_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # what an uninstalled package looks like
    with pytest.raises(ImportError, match=r"pip install rladapt\[tensorboard\]"):
        TensorBoardLogger()
