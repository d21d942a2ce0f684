"""Callbacks: code that runs at fixed points of ``agent.learn`` and can stop training.

Subclass :class:`Callback` and override the hooks you need; pass instances to
``agent.learn(env, steps, callbacks=[...])``. A plain function ``callback(agent, metrics)`` still
works: it is called after every training iteration, like :meth:`Callback.on_update`.

When the hooks fire, in one ``learn`` call::

    on_learn_start(run)                  once, after the envs are reset
    on_step(run, step)                   for every vector step, once its batch is collected
    on_episode_end(run, episode)         for every finished episode, with its raw return
    on_update(run, metrics)              after every training iteration (collect, then update)
    on_eval(run, result)                 after every evaluation made by an EvalCallback
    on_learn_end(run)                    once, when training ends (also after a stop)

Any hook returning ``False`` stops training at the end of the current iteration (or call
``run.stop()``). Built-ins: :class:`EvalCallback` (evaluate, optionally with video, every N steps),
:class:`CheckpointCallback` (save every N steps) and :class:`StopOnReward` (stop at a return).

Example:
    >>> from rladapt.callbacks import Callback, EvalCallback, StopOnReward
    >>> class PrintEpisodes(Callback):
    ...     def on_episode_end(self, run, episode):
    ...         print(f"step {episode.step}: return {episode.raw_return}")
    >>> agent.learn(env, 50_000, callbacks=[PrintEpisodes(), EvalCallback(every=10_000),
    ...                                     StopOnReward(475)])  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import time
import warnings
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np
from tensordict import TensorDictBase

from rladapt.logging.run_dir import JsonlAppender
from rladapt.types import Episode, EvalResult

if TYPE_CHECKING:
    from rladapt.agents.base import Agent

__all__ = [
    "Callback",
    "CheckpointCallback",
    "Episode",
    "EvalCallback",
    "FunctionCallback",
    "StopOnReward",
    "TrainingRun",
]


class Callback:
    """Base class of callbacks: every hook does nothing; override those you need.

    A hook that returns ``False`` stops training at the end of the current iteration. ``run``
    (:class:`TrainingRun`) gives the agent, the adapted env, the run directory, the current env
    step and ``run.log(metrics)``.
    """

    def on_learn_start(self, run: TrainingRun) -> bool | None:
        """Once per ``learn`` call, after the envs are reset and before the first iteration."""

    def on_step(self, run: TrainingRun, step: TensorDictBase) -> bool | None:
        """For every vector step, once its batch is collected (in-process, in worker processes
        and on collector ranks alike). ``step`` is one row of the collected batch, a
        ``[num_envs]`` TensorDict (``observation``, ``action``, ``("next", "reward")``,
        ``("next", "done")``, ``valid`` ...), overwritten by the next collect: read or copy it
        here. ``run.step`` is the agent's env steps up to this row."""

    def on_episode_end(self, run: TrainingRun, episode: Episode) -> bool | None:
        """For every finished training episode, with its raw return and length."""

    def on_update(self, run: TrainingRun, metrics: dict[str, Any]) -> bool | None:
        """After every training iteration (collect, then update). ``metrics`` holds the losses,
        ``rollout/return_mean``, ``time/steps_per_s`` ... and ``step`` (the agent's env steps)."""

    def on_eval(self, run: TrainingRun, result: EvalResult) -> bool | None:
        """After every evaluation made by an :class:`EvalCallback` during training."""

    def on_learn_end(self, run: TrainingRun) -> None:
        """Once, when training ends: the step budget is spent or a callback stopped it."""


class FunctionCallback(Callback):
    """Adapts a plain function ``fn(agent, metrics)`` (the older callback form): called after
    every training iteration; returning ``False`` stops training.

    :param fn: the function.
    """

    def __init__(self, fn: Callable[[Agent, dict[str, Any]], bool | None]) -> None:
        self.fn = fn

    def on_update(self, run: TrainingRun, metrics: dict[str, Any]) -> bool | None:
        return self.fn(run.agent, metrics)


def _as_callback(callback: Any) -> Callback:
    if isinstance(callback, Callback):
        return callback
    if callable(callback):
        return FunctionCallback(callback)
    raise TypeError(f"a callback must be a Callback or a function fn(agent, metrics), got {type(callback).__name__}")


class TrainingRun:
    """What callbacks see of one ``learn`` call, and the loop's side of the hooks.

    :param agent: the agent being trained.
    :param env: the env to evaluate on (a single adapted env; None for a vector env), or a
        zero-argument function returning it, called on first use.
    :param steps: env steps this ``learn`` call trains for.
    :param run_dir: the run directory, or None when it is turned off.
    :param logger: the loop's logger (``log(metrics, step)``; optionally ``log_video``).
    :param callbacks: the callbacks (instances, or plain functions ``fn(agent, metrics)``).
    """

    def __init__(
        self,
        agent: Agent,
        env: Any,
        steps: int,
        run_dir: Path | None,
        logger: Any,
        callbacks: Iterable[Callback | Callable[..., Any]] = (),
    ) -> None:
        self.agent = agent
        self._env = env
        self.steps = steps
        self.run_dir = run_dir
        self.logger = logger
        self.callbacks = [_as_callback(c) for c in callbacks]
        #: Env steps of the agent when this ``learn`` call started, and the target.
        self.start_step = agent.num_timesteps
        self.target_step = agent.num_timesteps + steps
        #: The first env step of the run (before ``start_step`` when this call resumes a run
        #: from its checkpoint): cadences count from it, so a resumed run keeps its grid.
        self.run_start = min(int(agent.run_start), self.start_step)
        self.stop_requested = False
        self._collector: Any = None
        self._collector_start = 0
        self._row_step: int | None = None
        self._episodes_seen = 0
        self._episodes_file = None
        if run_dir is not None:  # one JSON line per finished episode, for plots at episode resolution
            Path(run_dir).mkdir(parents=True, exist_ok=True)
            self._episodes_file = JsonlAppender(Path(run_dir) / "episodes.jsonl")
        # on_step runs every vector step: only the callbacks that override it are called.
        self._step_hooks = [c for c in self.callbacks if type(c).on_step is not Callback.on_step]
        self._episode_hooks = [c for c in self.callbacks if type(c).on_episode_end is not Callback.on_episode_end]

    # -- what callbacks use -----------------------------------------------------------------
    def next_multiple(self, every: int) -> int:
        """The first step after ``start_step`` on the grid ``run_start + k * every`` (where an
        every-``every``-steps callback fires next, the same in a resumed run as in one straight run).

        :param every: env steps between firings.
        """
        return self.run_start + ((self.start_step - self.run_start) // every + 1) * every

    @property
    def env(self) -> Any:
        """The adapted env to evaluate on (None when there is none: a vector env)."""
        if callable(self._env) and not hasattr(self._env, "step"):
            self._env = self._env()
        return self._env

    @property
    def step(self) -> int:
        """The agent's env steps so far (in ``on_step``: up to that row)."""
        if self._row_step is not None:
            return self._row_step
        if self._collector is None:
            return self.agent.num_timesteps
        return self.start_step + self._collector.steps - self._collector_start

    def stop(self) -> None:
        """Stop training at the end of the current iteration."""
        self.stop_requested = True

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Log ``metrics`` (to the run directory and the logger) at ``step`` (default: now)."""
        self.logger.log(metrics, self.step if step is None else step)

    def log_video(self, path: str | Path, step: int | None = None, key: str = "eval/video") -> None:
        """Hand a recorded video file to the loggers that take videos (W&B)."""
        log_video = getattr(self.logger, "log_video", None)
        if log_video is not None:
            log_video(Path(path), self.step if step is None else step, key)

    # -- what the loop calls ----------------------------------------------------------------
    def _call(self, hook: str, *args: Any) -> None:
        for callback in self.callbacks:
            if getattr(callback, hook)(self, *args) is False:
                self.stop_requested = True

    def observe(self, collector: Any) -> None:
        """Count steps and episodes from ``collector`` (its counters now are the start)."""
        self._collector = collector
        self._collector_start = collector.steps
        self._episodes_seen = collector.episodes

    def collected(self, batch: TensorDictBase) -> None:
        """After each collect: every row of ``batch`` to ``on_step``, then the finished episodes."""
        if self._step_hooks:
            rows, envs = batch.batch_size[0], batch.batch_size[1]
            first = self.step - rows * envs
            for t in range(rows):
                self._row_step = first + (t + 1) * envs
                step = batch[t]
                for callback in self._step_hooks:
                    if callback.on_step(self, step) is False:
                        self.stop_requested = True
            self._row_step = None
        self._report_episodes()
    def learn_start(self) -> None:
        self._call("on_learn_start")

    def after_iteration(self, metrics: dict[str, Any]) -> bool:
        """Report episodes not seen yet, call ``on_update``; True when training should stop."""
        self._report_episodes()
        self._call("on_update", metrics)
        return self.stop_requested

    def evaluated(self, result: EvalResult) -> None:
        self._call("on_eval", result)

    def learn_end(self) -> None:
        for callback in self.callbacks:
            callback.on_learn_end(self)

    def close(self) -> None:
        if self._episodes_file is not None:
            self._episodes_file.close()
            self._episodes_file = None

    def _report_episodes(self) -> None:
        collector = self._collector
        if collector is None:
            return
        new = collector.episodes - self._episodes_seen
        if not new:
            return
        self._episodes_seen = collector.episodes
        returns, lengths, ends = list(collector.episode_returns), list(collector.episode_lengths), list(collector.episode_steps)
        first = max(0, len(returns) - new)  # more episodes than the window holds: the latest ones
        offset = self.start_step - self._collector_start
        for raw_return, length, end in zip(returns[first:], lengths[first:], ends[first:]):
            step = offset + end
            episode = Episode(float(raw_return), int(length), step)
            if self._episodes_file is not None:
                self._episodes_file.write({"step": step, "return": episode.raw_return, "length": length})
            self._call("on_episode_end", episode)


# -------------------------------------------------------------------------------------------
# Built-in callbacks
# -------------------------------------------------------------------------------------------


class EvalCallback(Callback):
    """Evaluate the agent every ``every`` env steps (and at the end), log ``eval/return_mean``,
    ``eval/return_std`` and ``eval/length_mean``, and optionally record a video of the env's own
    frames (``<run_dir>/videos/step-<N>/``, also sent to W&B when that is the logger).

    :param every: env steps between evaluations.
    :param episodes: episodes per evaluation.
    :param env: the env to evaluate on (default: the env given to ``learn``).
    :param deterministic: take the most likely action.
    :param video: record the first ``video_episodes`` episodes of each evaluation (mp4).
    :param video_episodes: how many episodes of each evaluation to record.
    :param gif: also write an animated GIF next to each mp4.
    :param at_end: evaluate once more when training ends (if not just done).
    :param seed: seed of each evaluation's first reset (default: the agent's seed).
    """

    def __init__(
        self,
        every: int,
        episodes: int = 5,
        env: Any = None,
        deterministic: bool = True,
        video: bool = False,
        video_episodes: int = 1,
        gif: bool = False,
        at_end: bool = True,
        seed: int | None = None,
    ) -> None:
        if every <= 0:
            raise ValueError(f"every must be a positive number of env steps, got {every}")
        self.every, self.episodes, self.env = every, episodes, env
        self.deterministic, self.video, self.video_episodes, self.gif = deterministic, video, video_episodes, gif
        self.at_end, self.seed = at_end, seed
        #: Every evaluation so far, as ``(step, EvalResult)``, and the video files written.
        self.results: list[tuple[int, EvalResult]] = []
        self.videos: list[Path] = []
        self._next = 0
        self._last_step: int | None = None

    def on_learn_start(self, run: TrainingRun) -> None:
        self._next = run.next_multiple(self.every)
        if self.env is None and run.env is None:
            raise ValueError("EvalCallback needs env=...: this run has no single env to evaluate on (learn was given a "
                             "vector env, or the env instance being trained on, which cannot be copied)")

    def on_update(self, run: TrainingRun, metrics: dict[str, Any]) -> None:
        if run.step >= self._next:
            self.evaluate(run)
            while self._next <= run.step:
                self._next += self.every

    def on_learn_end(self, run: TrainingRun) -> None:
        if self.at_end and self._last_step != run.step:
            self.evaluate(run)

    def evaluate(self, run: TrainingRun) -> EvalResult:
        """Evaluate now, log the results (and the video), and call every callback's ``on_eval``."""
        step = run.step
        video_dir = None
        if self.video:
            root = run.run_dir if run.run_dir is not None else Path("videos")
            video_dir = (root / "videos" if run.run_dir is not None else root) / f"step-{step}"
        t0 = time.perf_counter()
        result = run.agent.evaluate(
            self.env if self.env is not None else run.env, episodes=self.episodes, deterministic=self.deterministic,
            seed=self.seed, video_dir=video_dir, video_episodes=self.video_episodes, gif=self.gif,
        )
        self._last_step = step
        self.results.append((step, result))
        run.log({
            "eval/return_mean": result.mean, "eval/return_std": result.std,
            "eval/length_mean": float(np.mean(result.lengths)), "eval/episodes": len(result.returns),
            "eval/time_s": time.perf_counter() - t0,
        }, step)
        if video_dir is not None:
            self.videos.extend(sorted(video_dir.glob("*.mp4")) + sorted(video_dir.glob("*.gif")))
            for path in sorted(video_dir.glob("*.mp4")):
                run.log_video(path, step)
        run.evaluated(result)
        return result


class CheckpointCallback(Callback):
    """Save the agent every ``every`` env steps, to ``<directory>/step-<N>.pt``. The one owner of
    checkpoint cadence: ``learn(..., checkpoint_every=N)`` is ``CheckpointCallback(N,
    directory=run_dir, filename="checkpoint.pt", keep=1)``.

    Each checkpoint holds the whole training state by default (weights, optimizer moments, the
    replay buffer, normaliser statistics, RNG states, counters, the schedule position and the run
    directory), written atomically: ``rladapt.load(path).learn(env, remaining)`` continues the
    run as if it had not stopped, except that the envs restart their episodes.

    :param every: env steps between checkpoints.
    :param directory: where to save (default: ``<run_dir>/checkpoints``, or ``checkpoints`` when
        the run directory is off).
    :param keep: keep only the latest this many checkpoints (None: keep all).
    :param filename: the file name, with ``{step}`` for the env step (default ``"step-{step}.pt"``);
        a name without ``{step}`` is overwritten (atomically) at each save.
    :param training_state: save the whole training state, replay buffer included (to resume a
        run); False saves what ``agent.save(path)`` does (smaller files, for evaluation).
    """

    def __init__(self, every: int, directory: str | Path | None = None, keep: int | None = None,
                 filename: str = "step-{step}.pt", training_state: bool = True) -> None:
        if every <= 0:
            raise ValueError(f"every must be a positive number of env steps, got {every}")
        if keep is not None and keep < 1:
            raise ValueError(f"keep must be at least 1 (or None to keep all), got {keep}")
        self.every, self.directory, self.keep, self.filename = every, directory, keep, filename
        self.training_state = training_state
        #: Paths of the checkpoints saved (and not deleted) so far.
        self.saved: deque[Path] = deque()
        self._next = 0
        self._warned = False

    def _directory(self, run: TrainingRun) -> Path:
        if self.directory is not None:
            return Path(self.directory)
        return run.run_dir / "checkpoints" if run.run_dir is not None else Path("checkpoints")

    def on_learn_start(self, run: TrainingRun) -> None:
        self._next = run.next_multiple(self.every)
        if "{step}" not in self.filename:  # a write cut short by a crash left its temporary file
            for stale in self._directory(run).glob(f".{self.filename}.*.tmp"):
                stale.unlink(missing_ok=True)

    def on_update(self, run: TrainingRun, metrics: dict[str, Any]) -> None:
        if run.step < self._next:
            return
        while self._next <= run.step:
            self._next += self.every
        target = self._directory(run) / self.filename.format(step=run.step)
        if self.training_state and not _takes_training_state(run.agent.save):
            # A user override with the old ``save(self, path)`` signature: call it as written, say once
            # that these checkpoints cannot resume a run.
            if not self._warned:
                warnings.warn(
                    f"{type(run.agent).__name__}.save(path) takes no training_state argument, so the "
                    "checkpoints hold no replay buffer or run position and cannot resume this run; add "
                    "training_state: bool = False to the override and pass it on to super().save",
                    stacklevel=2,
                )
                self._warned = True
            path = run.agent.save(target)
        else:
            path = run.agent.save(target, training_state=self.training_state)
        if path in self.saved:  # the same file again (a fixed name)
            self.saved.remove(path)
        self.saved.append(path)
        while self.keep is not None and len(self.saved) > self.keep:
            self.saved.popleft().unlink(missing_ok=True)


def _takes_training_state(save: Callable[..., Any]) -> bool:
    """Whether an agent's ``save`` accepts ``training_state`` (by name or through ``**kwargs``)."""
    parameters = inspect.signature(save).parameters.values()
    return any(p.name == "training_state" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


class StopOnReward(Callback):
    """Stop training once the agent reaches a return.

    :param threshold: the return to reach.
    :param source: ``"episodes"``: the mean raw return of the last ``window`` training episodes;
        ``"eval"``: the mean return of an evaluation (needs an :class:`EvalCallback`).
    :param window: training episodes averaged (``source="episodes"``).
    """

    def __init__(self, threshold: float, source: str = "episodes", window: int = 20) -> None:
        if source not in ("episodes", "eval"):
            raise ValueError(f"source must be 'episodes' or 'eval', got {source!r}")
        self.threshold, self.source = float(threshold), source
        self.returns: deque[float] = deque(maxlen=window)
        #: The env step at which the threshold was reached (None while not reached).
        self.reached_at: int | None = None

    def on_learn_start(self, run: TrainingRun) -> None:
        self.returns.clear()

    def _check(self, run: TrainingRun, value: float) -> bool | None:
        if value >= self.threshold:
            self.reached_at = run.step
            return False
        return None

    def on_episode_end(self, run: TrainingRun, episode: Episode) -> bool | None:
        if self.source != "episodes":
            return None
        self.returns.append(episode.raw_return)
        if len(self.returns) < self.returns.maxlen:
            return None
        return self._check(run, float(np.mean(self.returns)))

    def on_eval(self, run: TrainingRun, result: EvalResult) -> bool | None:
        return self._check(run, result.mean) if self.source == "eval" else None
