"""The ``rladapt`` command line: every command, its --help, and its error paths (one clear line,
no traceback, a non-zero exit status)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from rladapt.cli import main, parse_steps

ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse: --help (0) and usage errors (2)
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A run directory from ``rladapt train`` (shared by the eval tests)."""
    run = tmp_path_factory.mktemp("cli") / "run"
    code = main(["train", "CartPole-v1", "--agent", "ppo", "--steps", "128", "--num-envs", "2", "--seed", "0",
                 "--set", "n_steps=32", "--set", "hidden=[16,16]", "--set", "n_epochs=1", "--run-dir", str(run),
                 "--video", "--gif", "--checkpoint-every", "64", "--no-progress"])
    assert code == 0
    return run


def test_parse_steps():
    assert [parse_steps(s) for s in ("5000", "100k", "1.5M", "2e5", "200_000", "1G")] == [
        5000, 100_000, 1_500_000, 200_000, 200_000, 1_000_000_000]
    for bad in ("abc", "0", "1.5", "-3k"):
        with pytest.raises(Exception, match="steps"):
            parse_steps(bad)


def test_train_writes_the_run_directory(trained_run, capsys):
    config = json.loads((trained_run / "config.json").read_text())
    assert config["agent"] == "PPO" and config["settings"]["n_steps"] == 32 and config["settings"]["hidden"] == [16, 16]
    assert config["settings"]["seed"] == 0 and config["num_envs"] == 2
    for name in ("agent.pt", "metrics.jsonl", "episodes.jsonl", "checkpoints/step-64.pt", "checkpoints/step-128.pt",
                 "videos/step-128/eval-episode-0.mp4", "videos/step-128/eval-episode-0.gif"):
        assert (trained_run / name).exists(), name


def test_train_prints_the_plan_and_routes_adapt_overrides(tmp_path, capsys):
    code, out, err = run_cli(capsys, "train", "CartPole-v1", "--agent", "a2c", "--steps", "64", "--num-envs", "2",
                             "--set", "n_steps=8", "--set", "frame_stack=2", "--run-dir", str(tmp_path / "run"), "--no-progress")
    assert code == 0, err
    assert "AutoAdapt plan" in out and "stack of 2" in out and "trained 64 steps" in out
    assert json.loads((tmp_path / "run" / "config.json").read_text())["adapt"] == {"frame_stack": 2}


def test_eval_a_run_directory(trained_run, capsys):
    code, out, err = run_cli(capsys, "eval", str(trained_run), "--episodes", "2")
    assert code == 0, err
    assert "PPO on CartPole-v1: return" in out and "over 2 episodes" in out
    code, out, err = run_cli(capsys, "eval", str(trained_run), "--episodes", "2", "--max-episode-steps", "5")
    assert code == 0 and "return 5.00 +- 0.00 over 2 episodes" in out, (out, err)  # CartPole pays 1 a step: 5 steps each
    code, out, err = run_cli(capsys, "eval", str(trained_run), "--episodes", "1", "--max-episode-steps", "3",
                             "--render", "ansi")
    assert code == 0 and "episode 1 ended after 3 steps" in out, (out, err)  # the played episode is cut too


def test_eval_with_video(trained_run, tmp_path, capsys):
    code, out, err = run_cli(capsys, "eval", str(trained_run / "agent.pt"), "--episodes", "1", "--video",
                             "--video-dir", str(tmp_path / "videos"))
    assert code == 0, err
    frame = cv2.VideoCapture(str(tmp_path / "videos" / "eval-episode-0.mp4")).read()[1]
    assert frame.shape == (400, 600, 3)


def test_eval_renders_in_the_terminal(trained_run, capsys):
    code, out, err = run_cli(capsys, "eval", str(trained_run / "checkpoints" / "step-64.pt"), "--episodes", "1",
                             "--render", "ansi")
    assert code == 0, err
    assert "episode 1, step 1" in out and "  -> " in out and "observation [" in out and "reward +1.000" in out


def test_eval_an_explicit_env(trained_run, tmp_path, capsys):
    lone = tmp_path / "lone.pt"
    lone.write_bytes((trained_run / "agent.pt").read_bytes())
    code, out, err = run_cli(capsys, "eval", str(lone), "--episodes", "1")
    assert code == 1 and "pass --env" in err and "Traceback" not in err
    code, out, err = run_cli(capsys, "eval", str(lone), "--env", "CartPole-v1", "--episodes", "1")
    assert code == 0, err


def test_plan(capsys):
    code, out, err = run_cli(capsys, "plan", "ALE/Pong-v5", "--agent", "dqn")
    assert code == 0, err
    assert "AtariPreprocessing" in out and "FrameStack" in out and "observation: Box(0, 255, (4, 84, 84), uint8)" in out
    code, out, err = run_cli(capsys, "plan", "rladapt/TicTacToe-v0", "--agent", "random")
    assert code == 0 and "info['action_mask']" in out


def test_plot(trained_run, tmp_path, capsys):
    code, out, err = run_cli(capsys, "plot", str(trained_run), "--size", "640x480")
    assert code == 0, err
    assert cv2.imread(str(trained_run / "returns.png")).shape == (480, 640, 3)
    code, out, err = run_cli(capsys, "plot", str(trained_run.parent), "--out", str(tmp_path / "all.png"))
    assert code == 0 and cv2.imread(str(tmp_path / "all.png")).shape == (600, 1000, 3)


@pytest.mark.parametrize("argv, message", [
    (["train", "CartPole-v1", "--agent", "bogus"], "unknown agent 'bogus'; choose one of: "),
    (["train", "CartPole-v1", "--steps", "lots"], "not a number of steps"),
    (["train", "CartPole-v1", "--set", "nonsense=1"], "unknown setting 'nonsense' for PPO"),
    (["train", "CartPole-v1", "--set", "lr"], "--set takes key=value"),
    (["train", "CartPole-v1", "--num-envs", "0"], "must be at least 1"),
    (["train", "CartPole-v1", "--workers", "3", "--num-envs", "2", "--steps", "64"], "num_envs=2 is less than workers=3"),
    (["train", "NoSuchEnv-v0", "--steps", "10"], "cannot make env 'NoSuchEnv-v0'"),
    (["train", "CartPole-v1", "--agent", "dqn", "--set", "frame_stack=0"], "frame_stack must be a positive integer"),
    (["plan", "Pendulum-v1", "--agent", "qlearning"], "pass observation_bins=N"),
    (["plan", "CartPole-v1", "--agent", "sac"], ""),
    (["eval", "no/such/run"], "does not exist"),
    (["plot", "no/such/run"], "does not exist"),
    (["plot", ".", "--size", "big"], "--size takes WIDTHxHEIGHT"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    ([], "the following arguments are required: COMMAND"),
])
def test_errors_are_one_clear_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, *argv)
    if argv[:2] == ["plan", "CartPole-v1"]:  # SAC accepts discrete actions (or says how): either way no traceback
        assert "Traceback" not in err
        return
    assert code in (1, 2), (code, out, err)
    assert message in err and "Traceback" not in err
    assert not list(tmp_path.glob("runs/*")), "a run that failed to start left its run directory behind"


def test_help_everywhere(capsys):
    for argv in ([], ["train"], ["eval"], ["plan"], ["plot"]):
        code, out, err = run_cli(capsys, *argv, "--help")
        assert code == 0 and out.startswith("usage: rladapt"), argv
    code, out, _ = run_cli(capsys, "train", "--help")
    for option in ("--agent", "--steps", "--num-envs", "--workers", "--seed", "--wandb", "--video", "--set"):
        assert option in out


def test_train_and_plan_help_list_every_registered_agent_and_tune_help_every_search_space(capsys):
    import re

    import rladapt.agents  # noqa: F401
    from rladapt.registry import agent_names
    from rladapt.tune import SEARCH_SPACES

    def listed(command: str) -> set[str]:
        _, out, _ = run_cli(capsys, command, "--help")
        text = " ".join(out.split())  # argparse wraps the help over lines
        return set(re.findall(r"[a-z0-9_]+", text[text.index("--agent AGENT"):text.index("(default: ppo)")]))

    cli_names = {"randomagent": "random"}
    every = {cli_names.get(name, name) for name in agent_names()}
    assert {"ppo", "muzero", "alphazero", "td3", "random"} <= every
    assert every <= listed("train") and every <= listed("plan")
    assert set(SEARCH_SPACES) <= listed("tune")


def test_entry_point_runs_as_a_module(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "rladapt", "plan", "rladapt/Grid-v0", "--agent", "qlearning"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 0 and "rladapt/Grid-v0 for QLearning" in done.stdout
    done = subprocess.run([sys.executable, "-m", "rladapt", "train", "CartPole-v1", "--agent", "qlearning"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("rladapt train: error: observation: float32[4] is continuous, but QLearning accepts")


def test_play_human_against_an_alphazero_run_plays_a_whole_game_without_an_opponent(tmp_path, capsys, monkeypatch):
    """AlphaZero moves for every player in its own env (no seats): ``play --human`` seats you and
    it there; bad input is refused with the reason and asked again, the game is played out."""
    import io

    run = tmp_path / "az"
    code, _, err = run_cli(capsys, "train", "pettingzoo.classic.tictactoe_v3", "--agent", "alphazero", "--steps", "40",
                           "--seed", "0", "--set", "simulations=4", "--set", "games_per_iteration=2", "--set", "batch_size=16",
                           "--set", "hidden=[32]", "--run-dir", str(run), "--no-progress")
    assert code == 0, err
    # your moves: junk, a cell off the board, then the cells in order (those taken are refused)
    monkeypatch.setattr("sys.stdin", io.StringIO("centre\n9\n" + "".join(f"{cell}\n" for cell in range(9)) * 2))
    code, out, err = run_cli(capsys, "play", "pettingzoo.classic.tictactoe_v3", "--agent", str(run), "--human", "--seat", "0")
    assert code == 0, err
    assert "'centre' is not a move" in out and "'9' is not a move: type a move's number (0..8)" in out
    assert "your move (seat 0)" in out and "AlphaZero moves (seat 1):" in out and "AlphaZero's view of your moves" in out
    assert "episode 1 ended after" in out and "vs human, seat 1:" in out  # the game was played to its end
    code, _, err = run_cli(capsys, "play", "pettingzoo.classic.tictactoe_v3", "--agent", str(run), "--human", "--opponent", "random")
    assert code == 1 and "--opponent random does not apply with --human" in err
