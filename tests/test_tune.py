"""Tuning with Optuna on tiny budgets: the CLI prints --set options that train again, the study in
SQLite resumes without rerunning trials, a trial's value is the mean of its seeds' evaluations,
pruned trials stop early and the run still ends cleanly; search spaces and bad input."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import shlex
from pathlib import Path

import numpy as np
import optuna
import pytest

import rladapt
from rladapt.registry import get_agent
from rladapt.cli import main
from rladapt.tune import EVAL_SEED_OFFSET, SEARCH_SPACES, SearchBudget, set_options, tune

STEPS = 2000


def run_cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


def finished_trials(run_dir: Path) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name="ppo-CartPole-v1", storage=f"sqlite:///{run_dir / 'study.db'}")
    return study.trials


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> tuple[Path, str]:
    """``rladapt tune`` with 2 trials of 2 seeds on CartPole, and what it printed."""
    run_dir = tmp_path_factory.mktemp("tune") / "study"
    code, out = run_cli("tune", "CartPole-v1", "--agent", "ppo", "--trials", "2", "--seeds", "2", "--steps", str(STEPS),
                        "--eval-episodes", "2", "--run-dir", str(run_dir))
    assert code == 0
    return run_dir, out


def test_cli_prints_set_options_that_train_again(study_dir, tmp_path):
    run_dir, out = study_dir
    assert (run_dir / "study.db").exists()
    best = json.loads((run_dir / "best.json").read_text())
    lines = [line for line in out.splitlines() if line.startswith("--set ")]
    assert lines == best["set"] and len(lines) == len(best["settings"]) > 0
    assert f"mean evaluation return {best['value']:.2f} over 2 seeds" in out

    # benchmarks/zoo.py reads each VALUE as JSON
    pairs = [shlex.split(line)[1] for line in lines]
    assert {key: json.loads(value) for key, value in (pair.split("=", 1) for pair in pairs)} == best["settings"]

    # ... and rladapt train --set takes them back
    train_dir = tmp_path / "train"
    code, _ = run_cli("train", "CartPole-v1", "--agent", "ppo", "--steps", "256", "--run-dir", str(train_dir),
                      "--no-progress", *[arg for line in lines for arg in shlex.split(line)])
    assert code == 0
    trained = json.loads((train_dir / "config.json").read_text())["settings"]
    assert {key: trained[key] for key in best["settings"]} == best["settings"]


def test_a_trial_value_is_the_mean_of_its_seeds_final_evaluations(study_dir):
    run_dir, _ = study_dir
    trials = finished_trials(run_dir)
    assert [t.state for t in trials[:2]] == [optuna.trial.TrialState.COMPLETE] * 2
    assert trials[0].user_attrs["seeds"] == [0, 1] and trials[1].user_attrs["seeds"] == [2, 3]
    for trial in trials[:2]:
        returns = trial.user_attrs["seed_returns"]
        assert len(returns) == 2 and trial.value == pytest.approx(np.mean(returns))
        for seed, seed_return in zip(trial.user_attrs["seeds"], returns):
            seed_dir = run_dir / f"trial-{trial.number}" / f"seed-{seed}"
            last_eval = [row for row in read_jsonl(seed_dir / "metrics.jsonl") if "eval/return_mean" in row][-1]
            assert last_eval["step"] >= STEPS and last_eval["eval/return_mean"] == seed_return
            # the saved agent, evaluated again the same way, scores the same
            agent = rladapt.load(seed_dir / "agent.pt")
            assert agent.evaluate("CartPole-v1", episodes=2, seed=EVAL_SEED_OFFSET + seed).mean == seed_return
        assert trial.intermediate_values, "evaluations on the way are reported to the pruner"


def test_rerunning_the_run_directory_runs_only_the_missing_trials(study_dir):
    run_dir, _ = study_dir
    before = [(t.number, t.value) for t in finished_trials(run_dir)[:2]]
    code, out = run_cli("tune", "CartPole-v1", "--agent", "ppo", "--trials", "3", "--seeds", "2", "--steps", str(STEPS),
                        "--eval-episodes", "2", "--run-dir", str(run_dir), "--resume")
    assert code == 0 and "3 trials completed" in out
    trials = finished_trials(run_dir)
    assert len(trials) == 3 and [(t.number, t.value) for t in trials[:2]] == before
    assert trials[2].user_attrs["seeds"] == [4, 5] and trials[2].params != trials[0].params
    assert sorted(p.name for p in run_dir.glob("trial-*")) == ["trial-0", "trial-1", "trial-2"]
    # asking for no more trials than the study holds runs none
    assert tune("CartPole-v1", "ppo", trials=2, seeds=2, steps=STEPS, eval_episodes=2, run_dir=run_dir).completed == 3
    assert len(finished_trials(run_dir)) == 3


def test_pruned_trials_stop_early_and_the_run_ends_cleanly(tmp_path):
    always = optuna.pruners.ThresholdPruner(lower=1e9)  # no return reaches it: every evaluation prunes
    result = tune("CartPole-v1", "ppo", trials=2, seeds=2, steps=STEPS, eval_episodes=1, run_dir=tmp_path, pruner=always,
                  logger="tensorboard")
    assert (result.completed, result.pruned, result.best_value, result.best_settings) == (0, 2, None, None)
    assert not (tmp_path / "best.json").exists()
    for trial in finished_trials(tmp_path):
        assert trial.state == optuna.trial.TrialState.PRUNED
        seed_dirs = list((tmp_path / f"trial-{trial.number}").iterdir())
        assert len(seed_dirs) == 1, "the trial's second seed never trains"
        assert read_jsonl(seed_dirs[0] / "metrics.jsonl")[-1]["step"] < STEPS, "training stopped at the first evaluation"
        assert (seed_dirs[0] / "agent.pt").exists()  # the run was closed normally
        assert any((seed_dirs[0] / "tensorboard").glob("events.out.tfevents.*"))


def test_every_search_space_samples_settings_its_agent_takes():
    budget = SearchBudget(steps=STEPS, num_envs=8)
    for name, space in SEARCH_SPACES.items():
        cls = get_agent(name)
        for _ in range(5):
            settings = space(optuna.create_study().ask(), budget)
            assert set(settings) <= {f.name for f in dataclasses.fields(cls.Config)}, name
            cls(**settings)
        if "n_steps" in settings:
            assert settings["n_steps"] * budget.num_envs <= STEPS


def test_search_spaces_sit_on_the_agent_classes_and_a_subclass_inherits_its_parents():
    from rladapt.agents import A3C, DDPG, PPO, TD3, RandomAgent
    from rladapt.agents.ppo import ppo_search_space

    assert SEARCH_SPACES["ppo"] is PPO.search_space is ppo_search_space
    assert DDPG.search_space is TD3.search_space  # a preset tunes over its parent's space
    assert RandomAgent.search_space is None and A3C.search_space is None and "a3c" not in SEARCH_SPACES

    class WidePPO(PPO):
        pass

    assert WidePPO.search_space is ppo_search_space
    settings = WidePPO.search_space(optuna.create_study().ask(), SearchBudget(steps=STEPS, num_envs=8))
    WidePPO(**settings)


def test_search_budget_limits():
    budget = SearchBudget(steps=60_000, num_envs=8)
    assert budget.rollouts((8, 1024, 8192, 16384)) == (8, 1024)
    assert SearchBudget(steps=10, num_envs=8).rollouts((8, 16)) == (8,)
    assert budget.warmups((0, 1_000, 30_000, 50_000)) == (0, 1_000, 30_000)
    assert budget.capacities((10_000, 50_000, 100_000, 1_000_000)) == (10_000, 50_000, 100_000)


def test_set_options_are_compact_json_quoted_for_a_shell():
    assert set_options({"lr": 3e-4, "hidden": (64, 64), "ent_coef": "auto", "dueling": True}) == [
        "--set lr=0.0003", "--set 'hidden=[64,64]'", "--set 'ent_coef=\"auto\"'", "--set dueling=true"]


def test_bad_input_names_the_field(tmp_path, study_dir, capsys):
    with pytest.raises(ValueError, match="agent: unknown agent 'nope'.*a2c, c51, ddpg, dqn, dreamer"):
        tune("CartPole-v1", "nope", run_dir=tmp_path)
    with pytest.raises(ValueError, match="agent: RandomAgent has no search space"):
        tune("CartPole-v1", "randomagent", run_dir=tmp_path)
    for field in ("trials", "seeds", "steps", "eval_episodes", "evaluations"):
        with pytest.raises(ValueError, match=f"{field} must be a whole number of at least 1, got 0"):
            tune("CartPole-v1", "ppo", run_dir=tmp_path, **{field: 0})
    with pytest.raises(ValueError, match="resume: .* holds no study"):
        tune("CartPole-v1", "ppo", run_dir=tmp_path / "empty", resume=True)
    run_dir, _ = study_dir
    with pytest.raises(ValueError, match="run_dir: the study in .* tunes with steps=2000, this call asks for steps=1000"):
        tune("CartPole-v1", "ppo", trials=5, seeds=2, steps=1000, eval_episodes=2, run_dir=run_dir)

    with pytest.raises(SystemExit) as exit_:
        main(["tune", "CartPole-v1", "--trials", "0"])
    assert exit_.value.code == 2 and "--trials: must be at least 1" in capsys.readouterr().err
    assert main(["tune", "CartPole-v1", "--resume"]) == 1
    assert "--resume continues the study in --run-dir" in capsys.readouterr().err


def test_a_trial_cut_short_by_a_kill_is_marked_failed_and_run_again(tmp_path):
    run_dir = tmp_path / "study"
    tune("CartPole-v1", "ppo", trials=1, seeds=1, steps=STEPS, eval_episodes=2, run_dir=run_dir)
    # what a process killed inside a trial leaves behind: a trial that stays RUNNING
    study = optuna.load_study(study_name="ppo-CartPole-v1", storage=f"sqlite:///{run_dir / 'study.db'}")
    study.ask()
    with pytest.warns(UserWarning, match=r"trials \[1\] .* cut short"):
        result = tune("CartPole-v1", "ppo", trials=2, seeds=1, steps=STEPS, eval_episodes=2, run_dir=run_dir, resume=True)
    states = [t.state for t in finished_trials(run_dir)]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]
    assert result.completed == 2
