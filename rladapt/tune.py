"""Hyperparameter tuning with Optuna: ``rladapt tune ENV --agent ppo --trials N --seeds K``.

Each trial samples the agent's settings from its search space (the agent class's ``search_space``,
written next to its defaults; :data:`SEARCH_SPACES` lists rladapt's), trains
``seeds`` agents for ``steps`` env steps each (seeds derived from the trial number, so a rerun
trains the same agents), and scores the mean over its seeds of a deterministic evaluation at the
end of training: one lucky seed cannot win a study. Every training run evaluates ``evaluations``
times on the way; each result goes to the trial (``trial.report``) and a trial the pruner gives
up on stops training there and ends as PRUNED.

The study lives in ``<run_dir>/study.db`` (SQLite): running again with the same run directory
continues it, and trials already finished are not run again. Each training run keeps its own run
directory, ``<run_dir>/trial-<n>/seed-<s>/``. The best settings are saved to
``<run_dir>/best.json`` and, as ``--set key=value`` options, go back into ``rladapt train``::

    result = tune("CartPole-v1", agent="ppo", trials=20, seeds=3, steps=50_000)
    print(result.best_value, result.best_settings)       # PPO(**result.best_settings)

Needs Optuna: ``pip install rladapt[tune]``.
"""

from __future__ import annotations

import json
import os
import shlex
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from rladapt.adapt import AutoAdapt
from rladapt.agents.base import Agent
from rladapt.agents.tuning import SearchBudget, SearchSpace
from rladapt.registry import get_agent
from rladapt.callbacks import Callback, EvalCallback, TrainingRun
from rladapt.logging import default_run_dir
from rladapt.spec import bind_agent
from rladapt.train.loop import resolve_num_envs
from rladapt.types import EvalResult

if TYPE_CHECKING:
    import optuna

__all__ = ["SEARCH_SPACES", "PruningCallback", "SearchBudget", "TuneResult", "require_optuna", "set_options", "tune"]

#: Evaluation episodes start from seeds this far above the training seed: start states the
#: training envs were not reset to (the convention of ``benchmarks/zoo.py``).
EVAL_SEED_OFFSET = 10_000


def require_optuna() -> Any:
    """The ``optuna`` module, or an ImportError naming the extra that installs it."""
    try:
        import optuna
    except ImportError as e:
        raise ImportError(f"tuning needs Optuna: pip install 'rladapt[tune]' ({e})") from e
    return optuna


# -------------------------------------------------------------------------------------------
# Search spaces
# -------------------------------------------------------------------------------------------


def _builtin_search_spaces() -> dict[str, SearchSpace]:
    """rladapt's own agents' search spaces (each class's ``search_space``), by registry name
    (installed packages' agents are not loaded for this: their classes carry their own)."""
    import rladapt.agents as builtin

    classes = (getattr(builtin, name) for name in builtin.__all__)
    return {cls.__name__.lower(): cls.search_space for cls in sorted(
        (c for c in classes if isinstance(c, type) and issubclass(c, Agent) and c.search_space is not None),
        key=lambda c: c.__name__.lower())}


#: The search spaces of rladapt's agents by lowercase name. Each is the agent class's
#: ``search_space``, written next to its defaults (:mod:`rladapt.agents.tuning`); an agent class of
#: your own brings its own (or inherits its parent's), or ``tune(..., space=...)`` takes one.
SEARCH_SPACES: dict[str, SearchSpace] = _builtin_search_spaces()


# -------------------------------------------------------------------------------------------
# Results
# -------------------------------------------------------------------------------------------


def set_options(settings: dict[str, Any]) -> list[str]:
    """``--set key=value`` options for ``settings``, values in compact JSON, quoted for a shell
    where needed: ``rladapt train --set`` and ``benchmarks/zoo.py --set`` read them back.

    :param settings: agent settings (JSON-friendly values; tuples become lists).

    >>> set_options({"lr": 0.0003, "hidden": (64, 64)})
    ['--set lr=0.0003', "--set 'hidden=[64,64]'"]
    """
    pairs = (f"{key}={json.dumps(value, separators=(',', ':'))}" for key, value in settings.items())
    return [f"--set {shlex.quote(pair)}" for pair in pairs]


def _settings_from_json(settings: dict[str, Any]) -> dict[str, Any]:
    """JSON lists back to the tuples agent settings take."""
    return {key: tuple(value) if isinstance(value, list) else value for key, value in settings.items()}


@dataclass
class TuneResult:
    """The outcome of :func:`tune`.

    :param best_value: the best trial's mean evaluation return over its seeds (None when no
        trial completed: all were pruned).
    :param best_settings: the best trial's settings, ready for ``Agent(**best_settings)``.
    :param best_trial: the best trial's number.
    :param completed: trials of the study that completed.
    :param pruned: trials of the study that were pruned.
    :param run_dir: the tuning run directory.
    :param study_path: the SQLite file holding the study (``<run_dir>/study.db``).
    :param study_name: the study's name inside it.
    """

    best_value: float | None
    best_settings: dict[str, Any] | None
    best_trial: int | None
    completed: int
    pruned: int
    run_dir: Path
    study_path: Path
    study_name: str

    @property
    def best_path(self) -> Path:
        """``<run_dir>/best.json``: the best settings, written when a trial completed."""
        return self.run_dir / "best.json"

    def set_options(self) -> list[str]:
        """The best settings as ``--set key=value`` options (see :func:`set_options`)."""
        return set_options(self.best_settings or {})


# -------------------------------------------------------------------------------------------
# Pruning
# -------------------------------------------------------------------------------------------


class PruningCallback(Callback):
    """Reports every evaluation of an :class:`~rladapt.callbacks.EvalCallback` to an Optuna
    trial and stops training when the trial's pruner gives up on it.

    The trial's step axis counts env steps over all its training runs: ``offset`` (the steps of
    the trial's earlier seeds) plus the run's step, so every trial reports at the same points.
    An evaluation at the end of a run is reported but decides nothing: that run is done.

    :param trial: the Optuna trial (``report(value, step)`` and ``should_prune()``).
    :param offset: env steps the trial trained before this run.
    """

    def __init__(self, trial: optuna.Trial, offset: int = 0) -> None:
        self.trial, self.offset = trial, offset
        #: The run's env step at which the pruner stopped it (None: not pruned).
        self.pruned_at: int | None = None

    def on_eval(self, run: TrainingRun, result: EvalResult) -> bool | None:
        self.trial.report(result.mean, self.offset + run.step)
        if run.step < run.target_step and self.trial.should_prune():
            self.pruned_at = run.step
            return False
        return None


# -------------------------------------------------------------------------------------------
# The study
# -------------------------------------------------------------------------------------------


def _at_least_one(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")
    return int(value)


def _agent_class(agent: str | type[Agent]) -> type[Agent]:
    if isinstance(agent, type):
        return agent
    try:
        return get_agent(agent)
    except ValueError:
        raise ValueError(f"agent: unknown agent {agent!r}; agents with a search space: {', '.join(SEARCH_SPACES)} "
                         f"(or pass an Agent class with space=...)") from None


def _default_budget(cls: type[Agent], env: str, steps: int) -> SearchBudget:
    """The budget of a run: the env steps, and the envs the agent steps by default on this env."""
    probe = cls()
    adapted = AutoAdapt(env, probe)
    try:
        bind_agent(probe, adapted.observation_space, adapted.action_space, adapted.family)
        return SearchBudget(steps, resolve_num_envs(probe, None, 0))
    finally:
        adapted.close()


def _check_same_study(study: Any, made_with: dict[str, Any], run_dir: Path) -> None:
    recorded = study.user_attrs
    if not recorded:
        for key, value in made_with.items():
            study.set_user_attr(key, value)
        return
    for key, value in made_with.items():
        if recorded.get(key) != value:
            raise ValueError(f"run_dir: the study in {run_dir} tunes with {key}={recorded.get(key)!r}, this call asks for "
                             f"{key}={value!r}; use another run directory, or the study's {key}")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")  # atomic: a reader never sees half a file
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def tune(
    env: str,
    agent: str | type[Agent] = "ppo",
    trials: int = 20,
    seeds: int = 3,
    steps: int = 100_000,
    *,
    run_dir: str | os.PathLike | None = None,
    eval_episodes: int = 10,
    evaluations: int = 4,
    resume: bool = False,
    seed: int = 0,
    space: SearchSpace | None = None,
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
    logger: str | Sequence[str] | None = None,
) -> TuneResult:
    """Tune an agent's settings on an env with Optuna; see the module docstring.

    :param env: gymnasium env id (each training run adapts a fresh one with ``AutoAdapt``).
    :param agent: agent name (``"ppo"``, ``"a2c"``, ``"dqn"``, ``"sac"``, ``"qlearning"``, or any
        registered name) or an Agent class.
    :param trials: trials the study should hold when this call ends (completed or pruned ones;
        a continued study runs only the missing ones).
    :param seeds: training runs per trial, each with its own seed; the trial's value is the
        mean over them of the final evaluation return.
    :param steps: env steps of each training run.
    :param run_dir: the tuning run directory (``study.db``, ``best.json``, ``trial-<n>/seed-<s>/``);
        None: a new ``runs/tune-<agent>-<env>-<time>``. An existing one is continued.
    :param eval_episodes: deterministic episodes per evaluation.
    :param evaluations: evaluations per training run, evenly spaced (the last one at its end
        scores the run); each is reported to the pruner.
    :param resume: insist on continuing: ``run_dir`` must hold a study.
    :param seed: the seed of trial 0's first run; trial ``n``'s runs take ``seed + n * seeds``
        onwards. Also seeds the sampler.
    :param space: the search space, ``space(trial, budget) -> settings`` (default: the
        agent class's ``search_space``).
    :param sampler: an Optuna sampler (default: TPE, seeded).
    :param pruner: an Optuna pruner (default: ``MedianPruner`` after 5 trials, not in the first
        third of a trial's first run).
    :param logger: a logger name or a list of names for every training run (``"tensorboard"``,
        ``"wandb"``): each run gets its own.
    :return: the best trial's value and settings, and where the study is.
    :raises ValueError: a bad argument (the message names it), or a run directory holding a
        study made with other arguments.
    :raises ImportError: Optuna is not installed.
    """
    optuna = require_optuna()
    trials, seeds, steps = _at_least_one("trials", trials), _at_least_one("seeds", seeds), _at_least_one("steps", steps)
    eval_episodes, evaluations = _at_least_one("eval_episodes", eval_episodes), _at_least_one("evaluations", evaluations)
    cls = _agent_class(agent)
    name = cls.__name__.lower()
    if space is None:
        if cls.search_space is None:
            raise ValueError(f"agent: {cls.__name__} has no search space (its class's search_space is None; "
                             f"rladapt's agents with one: {', '.join(SEARCH_SPACES)}); pass space=...")
        space = cls.search_space
    if resume and run_dir is None:
        raise ValueError("resume: continuing a study needs its run_dir")
    root = Path(run_dir) if run_dir is not None else default_run_dir(f"tune-{name}", env)
    study_path = root / "study.db"
    if resume and not study_path.exists():
        raise ValueError(f"resume: {root} holds no study (study.db); run without resume to start one")
    root.mkdir(parents=True, exist_ok=True)

    budget = _default_budget(cls, env, steps)
    study_name = f"{name}-{env}"
    if pruner is None:
        pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=steps // 3)
    study = optuna.create_study(storage=f"sqlite:///{study_path.resolve()}", study_name=study_name,
                                direction="maximize", load_if_exists=True, pruner=pruner)
    # The study records what it was made with; a run directory continues only with the same.
    _check_same_study(study, {"env": env, "agent": name, "steps": steps, "seeds": seeds,
                              "eval_episodes": eval_episodes, "evaluations": evaluations, "seed": seed}, root)
    # Trials run one at a time in the process that tunes, so a trial still RUNNING here was cut short
    # by a crash or a kill: it is marked failed (kept in the study, with its settings) and run again.
    interrupted = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for trial in interrupted:
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    if interrupted:
        warnings.warn(f"trials {[t.number for t in interrupted]} of {study_path} were cut short by an earlier run "
                      "that stopped; they are marked failed and replaced by new trials", stacklevel=2)
    # A continued study gets a sampler seeded past the trials so far: it does not replay their draws.
    study.sampler = sampler if sampler is not None else optuna.samplers.TPESampler(seed=seed + len(study.trials))

    def objective(trial: optuna.Trial) -> float:
        settings = space(trial, budget)
        trial_seeds = [seed + trial.number * seeds + k for k in range(seeds)]
        trial.set_user_attr("settings", settings)
        trial.set_user_attr("seeds", trial_seeds)
        returns: list[float] = []
        trained = 0
        for run_seed in trial_seeds:
            learner = cls(seed=run_seed, **settings)
            evaluation = EvalCallback(every=max(1, steps // evaluations), episodes=eval_episodes,
                                      seed=EVAL_SEED_OFFSET + run_seed)
            pruning = PruningCallback(trial, offset=trained)
            learner.learn(env, steps, progress=False, logger=logger, callbacks=[evaluation, pruning],
                          run_dir=root / f"trial-{trial.number}" / f"seed-{run_seed}")
            if pruning.pruned_at is not None:
                raise optuna.TrialPruned(f"seed {run_seed} at step {pruning.pruned_at:,}")
            _, final = evaluation.results[-1]  # EvalCallback evaluates at the end of the run
            returns.append(final.mean)
            trained += learner.num_timesteps
            trial.set_user_attr("seed_returns", returns)
        return float(np.mean(returns))

    state = optuna.trial.TrialState
    finished = [t for t in study.trials if t.state in (state.COMPLETE, state.PRUNED)]
    if len(finished) < trials:
        study.optimize(objective, n_trials=trials - len(finished))

    completed = [t for t in study.trials if t.state == state.COMPLETE]
    pruned = sum(t.state == state.PRUNED for t in study.trials)
    result = TuneResult(None, None, None, len(completed), pruned, root, study_path, study_name)
    if completed:
        best = study.best_trial
        result.best_value, result.best_trial = float(best.value), best.number
        result.best_settings = _settings_from_json(best.user_attrs["settings"])
        _write_json(result.best_path, {
            "env": env, "agent": name, "steps": steps, "value": result.best_value, "trial": best.number,
            "seeds": best.user_attrs["seeds"], "seed_returns": best.user_attrs["seed_returns"],
            "settings": best.user_attrs["settings"], "set": result.set_options(),
        })
    return result
