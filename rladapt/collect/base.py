"""The one collector protocol, and the episode statistics every collector keeps.

Every collector, in-process (:class:`~rladapt.collect.vector.VectorCollector`), in worker
processes (:class:`~rladapt.collect.workers.WorkerCollector`) or on torch.distributed ranks
(:class:`~rladapt.collect.distributed.DistributedCollector`), offers exactly this::

    collector.reset(seed)                         # every env; env i gets seed + i
    batch = collector.collect(agent, T)           # TensorDict [T, num_envs] (see collect/batch.py)
    collector.steps, collector.episodes           # counters
    collector.recent_return, collector.recent_length
    collector.episode_returns, collector.episode_lengths, collector.episode_steps   # recent episodes
    collector.metrics()                           # e.g. worker restarts, policy lag
    collector.close()

``collect`` acts with ``agent.explore(td)`` (the agent's collect-time policy: exploration,
random actions before learning starts ...) and maps actions to the env with
``agent.env_action(actions)``. A remote collector receives the agent's recipe once (class,
settings, spaces) and its weights at each ``collect``, and runs the same ``explore`` there. No
collector asks which kind of agent it serves: an agent whose updates need data from its current
weights (on-policy) declares ``fresh_weights = True``; with False, worker processes may collect
ahead with weights a few updates old.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
from tensordict import TensorDictBase

from rladapt.protocols import CollectingAgent

__all__ = ["Collector", "EpisodeStats"]


@runtime_checkable
class Collector(Protocol):
    """Every member the training loop uses of a collector (see the module docstring)."""

    num_envs: int
    observation_space: gym.Space
    action_space: gym.Space
    steps: int
    episodes: int
    #: The recent finished episodes' raw returns, lengths, and the step count when each ended
    #: (callbacks read them: :class:`rladapt.callbacks.TrainingRun`).
    episode_returns: deque[float]
    episode_lengths: deque[int]
    episode_steps: deque[int]

    @property
    def recent_return(self) -> float | None: ...

    @property
    def recent_length(self) -> float | None: ...

    def reset(self, seed: int | None = None) -> None: ...

    def collect(self, agent: CollectingAgent, vector_steps: int) -> TensorDictBase: ...

    def metrics(self) -> dict[str, float]: ...

    def close(self) -> None: ...


class EpisodeStats:
    """Statistics of the recent finished episodes, the same in every collector: the loop logs
    them, shows them in the progress bar and reports each episode to the callbacks.

    :param stats_window: how many recent episodes ``recent_return`` averages over.
    """

    def __init__(self, stats_window: int = 100) -> None:
        #: Raw returns and lengths of the most recent finished episodes, and the collector's
        #: step count when each ended.
        self.episode_returns: deque[float] = deque(maxlen=stats_window)
        self.episode_lengths: deque[int] = deque(maxlen=stats_window)
        self.episode_steps: deque[int] = deque(maxlen=stats_window)
        #: Episodes finished so far.
        self.episodes = 0
        #: Env steps collected so far.
        self.steps = 0

    def record_episodes(self, returns: list[float], lengths: list[int], at_step: int | list[int] | None = None) -> None:
        """Count finished episodes and keep their raw returns and lengths.

        :param returns: the raw return of each finished episode.
        :param lengths: the length of each, in the same order.
        :param at_step: the collector's step count when they ended (one for all, or one each;
            None: now).
        """
        self.episode_returns.extend(returns)
        self.episode_lengths.extend(lengths)
        if at_step is None or isinstance(at_step, (int, np.integer)):
            self.episode_steps.extend([self.steps if at_step is None else int(at_step)] * len(returns))
        else:
            self.episode_steps.extend(int(s) for s in at_step)
        self.episodes += len(returns)

    @property
    def recent_return(self) -> float | None:
        """Mean raw return of the recent finished episodes (None before the first one)."""
        return float(np.mean(self.episode_returns)) if self.episode_returns else None

    @property
    def recent_length(self) -> float | None:
        """Mean length of the recent finished episodes (None before the first one)."""
        return float(np.mean(self.episode_lengths)) if self.episode_lengths else None

    def metrics(self) -> dict[str, float]:
        """Collection metrics for the loop's log (none for an in-process collector)."""
        return {}
