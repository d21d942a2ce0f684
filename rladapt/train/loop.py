"""The training loop: the same for every agent and every collector (DESIGN.md principle 4)::

    learn(agent, env, steps)
      where the envs come from (EnvSource: spec, factory, instance) and how many
      the collector (in-process, worker processes, torchrun ranks)
      run directory, logger, config.json, callbacks, progress bar
      storage = agent.make_storage(num_envs, steps)
      repeat until `steps` env steps are done:
          batch = collector.collect(agent, agent.collect_steps())      # collect
          storage = agent.store(storage, batch)                         # store
          if agent.ready(storage): agent.update(storage, progress)      # update when ready
          after the iteration: counters, a log row at an interval, progress bar,
                               callbacks (checkpoints among them)
      final checkpoint, cleanup

One place owns each of these: the loop here, checkpoint cadence in
:class:`~rladapt.callbacks.CheckpointCallback`, the hooks in :class:`~rladapt.callbacks.TrainingRun`.
"""

from __future__ import annotations

import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from rladapt.checks import positive_int
from rladapt.spec import bind_agent
from rladapt.callbacks import CheckpointCallback, TrainingRun
from rladapt.collect import Collector, EnvSource, Workers, make_collector
from rladapt.collect import distributed
from rladapt.logging import ProgressBar, RunDirLogger, default_run_dir, make_logger
from rladapt.logging.metadata import run_metadata
from rladapt.protocols import LearningAgent
from rladapt.numerics import denormals_flushed

__all__ = ["DEFAULT_LOG_EVERY", "DEFAULT_NUM_ENVS", "MetricsWindow", "learn", "resolve_num_envs"]

#: Envs stepped in parallel when neither ``learn`` nor the agent's settings say.
DEFAULT_NUM_ENVS = 8
#: Env steps between log rows when ``learn`` gets no ``log_every``.
DEFAULT_LOG_EVERY = 1_000


def _worker_count(workers: Any) -> int:
    if isinstance(workers, Workers):
        return workers.count
    if isinstance(workers, (int, np.integer)) and not isinstance(workers, bool):
        return int(workers)
    return 0


def _check_workers(workers: Any) -> None:
    if isinstance(workers, Workers) or workers == "distributed":
        return
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0:
        raise ValueError(f"workers must be 0 (in-process), a number of worker processes, a Workers(...) or "
                         f"'distributed', got {workers!r}")


def resolve_num_envs(agent: LearningAgent, num_envs: int | None, workers: Any) -> int:
    """How many envs a run steps: ``num_envs`` when given, else the agent's setting (its
    per-kind default), else :data:`DEFAULT_NUM_ENVS`; without an explicit number, at least one
    per worker process."""
    if num_envs is not None:
        return positive_int("num_envs", num_envs)
    n = getattr(agent.hp, "num_envs", None) or DEFAULT_NUM_ENVS
    return max(int(n), _worker_count(workers))


class MetricsWindow:
    """One log interval: the agent's update metrics averaged over its iterations (losses are
    noisy one by one); the loop adds the rest (episodes, speed, collection) as of the row's step.

    :param every: env steps between rows.
    :param start: the env step the interval counts from.
    """

    def __init__(self, every: int, start: int) -> None:
        self.every, self.next = every, start + every
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._iterations = 0

    def add(self, metrics: dict[str, Any]) -> None:
        """Fold one iteration's update metrics in (numbers averaged; the rest kept as of the last one)."""
        self._iterations += 1
        for key, value in metrics.items():
            if isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool):
                self._sums[key] = self._sums.get(key, 0.0) + float(value)
                self._counts[key] = self._counts.get(key, 0) + 1
            else:
                self._sums[key], self._counts[key] = value, 0

    def due(self, step: int) -> bool:
        return step >= self.next

    def pending(self) -> bool:
        """Iterations since the last row."""
        return self._iterations > 0

    def row(self, step: int) -> dict[str, Any]:
        """The averaged metrics, and the window starts again after ``step``."""
        out = {k: (v / self._counts[k] if self._counts[k] else v) for k, v in self._sums.items()}
        self._sums, self._counts, self._iterations = {}, {}, 0
        while self.next <= step:
            self.next += self.every
        return out


def learn(
    agent: LearningAgent,
    env: Any,
    steps: int,
    *,
    num_envs: int | None = None,
    workers: int | str | Workers = 0,
    logger: Any = None,
    callbacks: Iterable[Any] = (),
    progress: bool = True,
    run_dir: str | Path | bool | None = None,
    vectorization: str | None = None,
    checkpoint_every: int | None = None,
    log_every: int | None = None,
) -> Any:
    """``agent.learn(env, steps, ...)``: train for ``steps`` env steps (counted over all envs).
    Call again to continue.

    Schedules (learning rate, clip range, epsilon ...) run over one run: this call, or, for an
    agent loaded from a checkpoint written mid-run (``checkpoint_every``), the run it was
    written in when ``steps`` is what that run had left (``run_steps - (num_timesteps -
    run_start)``): the step axis, schedules, replay buffer, log and checkpoint cadence and run
    directory then go on where they were. The envs restart their episodes (their state is not in
    the checkpoint); the episodes cut short by the crash are not counted.

    :param agent: the agent to train.
    :param env: the env: an ``AutoAdapt`` env, any gymnasium env or id (adapted here), a
        zero-argument factory returning an env, or a ready gymnasium vector env (taken as
        adapted, not closed). An env instance gymnasium cannot rebuild (its class is not
        registered) is stepped itself with one env, and deep-copied for more.
    :param steps: env steps to train for in this call (rounded up to whole iterations).
    :param num_envs: envs stepped in parallel (default: the agent's per-kind default, at
        least one per worker).
    :param workers: > 0 collects in that many worker processes, each stepping its share of
        the envs and acting with its own copy of the agent (:mod:`rladapt.collect.workers`);
        a :class:`rladapt.collect.Workers` sets restarts and timeouts too; ``"distributed"``
        uses the ranks of a ``torchrun`` group: rank 0 learns, the others collect
        (:mod:`rladapt.collect.distributed`).
    :param logger: None (run directory only), ``"wandb"``, ``"tensorboard"`` (event files in
        ``<run_dir>/tensorboard``), an object with ``log_config(dict)``, ``log(dict, step)`` and
        ``close()``, or a list of those.
    :param callbacks: :class:`rladapt.callbacks.Callback` objects (hooks at learn start, each
        step, episode end, update, evaluation and learn end), or functions
        ``callback(agent, metrics)`` called after each iteration. Returning ``False`` stops training.
    :param progress: show a progress bar (steps/s, recent mean return, ETA).
    :param run_dir: directory for ``config.json``, ``metrics.jsonl`` and the final
        ``agent.pt``; None: ``runs/<agent>-<env>-<time>/`` (a resumed run: its own run
        directory, where rows after the checkpoint's step are dropped first); False: no run directory.
    :param vectorization: ``"sync"`` (default) or ``"async"``.
    :param checkpoint_every: also save ``checkpoint.pt`` in the run directory every this many
        steps, with the whole training state (replay buffer included), to resume from after a crash.
    :param log_every: env steps between rows of ``metrics.jsonl`` and the logger (the losses
        averaged over the iterations in between); None: every iteration of at least 1,000
        steps, otherwise every 1,000 steps.
    :return: the agent.
    """
    steps = positive_int("steps", steps)
    _check_workers(workers)
    if log_every is not None:
        log_every = positive_int("log_every", log_every)
    if checkpoint_every is not None:
        checkpoint_every = positive_int("checkpoint_every", checkpoint_every)
        if run_dir is False:
            raise ValueError("checkpoint_every writes into the run directory; run_dir=False turns it off "
                             "(pass callbacks=[CheckpointCallback(every, directory=...)] instead)")
    source = EnvSource(env, agent)
    try:
        bind_agent(agent, source.observation_space, source.action_space, source.family, env=source.probe)
        agent.use_masks = bool(agent.spec.masks and source.masks)
        remote = bool(workers)
        if source.kind == "vector":
            if remote:
                raise ValueError("workers rebuild the envs in their own processes: pass the env, its id or a factory, not a vector env")
            n = source.probe.num_envs
        else:
            n = resolve_num_envs(agent, num_envs, workers)
        if workers == "distributed" and distributed.is_collector_rank():  # torchrun rank > 0: collect for rank 0
            with denormals_flushed():
                distributed.serve(agent, source, n)
            return agent
        note = source.copies_note(n, remote)
        if note is not None and hasattr(source.probe, "plan"):
            source.probe.plan = source.probe.plan.with_note("copy_envs", note, "how the envs of this run were made")
        collector = make_collector(agent, source, n, workers, vectorization)
    except BaseException:
        source.close()
        raise
    try:
        with denormals_flushed():  # Adam's decaying moments would otherwise take the CPU's slow path
            return _loop(agent, source, collector, steps, logger, callbacks, progress, run_dir, checkpoint_every, log_every)
    finally:
        source.close()


def _schedule(agent: LearningAgent, steps: int) -> tuple[int, int, Path | None, bool]:
    """``(run_start, run_steps, run_dir, resumed)``: the run this ``learn`` call's schedules count
    over. An agent loaded from a checkpoint written mid-run continues that run when asked for
    the steps it had left; otherwise the run is this call."""
    unfinished, agent.unfinished_run = agent.unfinished_run, None
    if unfinished is not None:
        start, planned, run_dir = unfinished
        if agent.num_timesteps + steps == start + planned:
            return start, planned, run_dir, True
        warnings.warn(
            f"{type(agent).__name__} was checkpointed at step {agent.num_timesteps:,} of a run of {planned:,} steps "
            f"from step {start:,}; learn(env, {steps:,}) starts a new run (schedules from the start); "
            f"learn(env, {start + planned - agent.num_timesteps:,}) would continue it", stacklevel=4)
    return agent.num_timesteps, steps, None, False


def _loop(agent: LearningAgent, source: EnvSource, collector: Collector, steps: int, logger: Any,
          callbacks: Iterable[Any], progress: bool, run_dir: str | Path | bool | None, checkpoint_every: int | None,
          log_every: int | None) -> Any:
    run_logger = None
    created = False
    run_start, run_steps, resumed_dir, resumed = _schedule(agent, steps)
    try:
        if run_dir is not False:
            if not run_dir and resumed_dir is not None and resumed_dir.is_dir():
                run_dir = resumed_dir  # a resumed run goes on in its own run directory
            if run_dir:
                run_path = Path(run_dir)
                created = not run_path.exists()
            else:  # a new directory of its own, claimed by default_run_dir
                run_path, created = default_run_dir(type(agent).__name__.lower(), source.name), True
            run_logger = RunDirLogger(run_path, resume_step=agent.num_timesteps if resumed else None)
        log = make_logger(logger, run_logger)
    except BaseException:  # e.g. a logger whose package is missing: nothing stays open
        if run_logger is not None:
            run_logger.close()
            if created:  # a run that never started leaves no directory behind
                shutil.rmtree(run_logger.path, ignore_errors=True)
        if source.kind != "vector":
            collector.close()
        raise
    agent.run_start, agent.run_steps = run_start, run_steps
    agent.run_dir = run_logger.path if run_logger is not None else None
    resume_note = {"resumed_at": agent.num_timesteps} if resumed else {}
    log.log_config({
        "agent": type(agent).__name__, "env": source.name, "steps": run_steps, "start_step": run_start,
        **resume_note, "num_envs": collector.num_envs, "checkpoint_every": checkpoint_every, "log_every": log_every,
        "masks": agent.use_masks, "settings": agent.settings(resolved=True),
        **run_metadata(source.probe, run_logger.path if run_logger is not None else None),
    })
    callbacks = list(callbacks)
    if checkpoint_every is not None:
        callbacks.append(CheckpointCallback(checkpoint_every, directory=run_logger.path, filename="checkpoint.pt", keep=1,
                                            training_state=True))
    run = TrainingRun(agent, source.eval_env, steps, run_logger.path if run_logger is not None else None, log, callbacks)
    bar = ProgressBar(steps, progress, f"{type(agent).__name__} {source.name}")
    start_steps, target = agent.num_timesteps, agent.num_timesteps + steps
    seed = None if agent.config.seed is None else agent.config.seed + start_steps
    window: MetricsWindow | None = None
    try:
        with agent.torch_threads():
            collector.reset(seed=seed)
            storage = agent.make_storage(collector.num_envs, steps)
            run.observe(collector)
            run.learn_start()
            rows = agent.collect_steps()
            every = log_every or max(DEFAULT_LOG_EVERY, rows * collector.num_envs)
            # Rows on the run's grid (run_start + k * every), the same in a resumed run.
            window = MetricsWindow(every, run_start + (start_steps - run_start) // every * every)
            t0 = time.perf_counter()
            while agent.num_timesteps < target:
                progress_now = (agent.num_timesteps - run_start) / run_steps
                agent.progress = progress_now
                before, episodes_before = collector.steps, collector.episodes
                batch = collector.collect(agent, agent.collect_steps())
                agent.num_timesteps += collector.steps - before
                agent.num_episodes += collector.episodes - episodes_before
                run.collected(batch)
                storage = agent.store(storage, batch)
                metrics: dict[str, Any] = {}
                if agent.ready(storage):
                    metrics = agent.update(storage, progress_now)
                    agent.after_update(storage)
                agent.num_updates += 1
                row = _iteration_row(agent, collector, metrics, start_steps, time.perf_counter() - t0)
                window.add(metrics)
                if window.due(agent.num_timesteps):
                    log.log({**row, **window.row(agent.num_timesteps)}, agent.num_timesteps)
                bar.update(collector.steps - before, collector.recent_return)
                row["step"] = agent.num_timesteps
                if run.after_iteration(row):
                    break
            run.learn_end()
        if window is not None and window.pending():
            row = _iteration_row(agent, collector, {}, start_steps, time.perf_counter() - t0)
            log.log({**row, **window.row(agent.num_timesteps)}, agent.num_timesteps)
        if run_logger is not None:
            final = agent.save(run_logger.path / "agent.pt")
            log.log_checkpoint(final)
    finally:
        run.close()
        bar.close()
        log.close()
        if source.kind != "vector":  # a vector env given by the user stays open
            collector.close()
    return agent


def _iteration_row(agent: LearningAgent, collector: Collector, metrics: dict[str, Any], start_steps: int,
                   elapsed: float) -> dict[str, Any]:
    """One iteration's metrics: the update's, the collector's, the recent episodes, the speed."""
    row = dict(metrics)
    row.update(collector.metrics())
    if collector.recent_return is not None:
        row["rollout/return_mean"] = collector.recent_return
        row["rollout/length_mean"] = collector.recent_length
    row["rollout/episodes"] = agent.num_episodes
    row["time/steps_per_s"] = (agent.num_timesteps - start_steps) / max(elapsed, 1e-9)
    row["time/elapsed_s"] = elapsed
    return row

