"""Collection: turn a run's envs into ``[T, num_envs]`` TensorDict batches, one protocol for all.

:class:`~rladapt.collect.envs.EnvSource` says where the envs come from (a spec, a factory, an
instance); :func:`make_collector` picks the collector for ``learn(..., workers=...)``:

- ``workers=0``: :class:`~rladapt.collect.vector.VectorCollector` over a gymnasium vector env in
  the learner's process;
- ``workers=N`` (or a :class:`~rladapt.collect.workers.Workers`): N worker processes, each acting
  with its own copy of the agent (:mod:`rladapt.collect.workers`);
- ``workers="distributed"``: the ranks of a ``torchrun`` group (:mod:`rladapt.collect.distributed`).

All offer the protocol of :mod:`rladapt.collect.base`: ``reset(seed)``, ``collect(agent, T)``,
``steps``, ``episodes``, ``recent_return``, ``metrics()``, ``close()``.
"""

from __future__ import annotations


from rladapt.collect.base import Collector, EpisodeStats
from rladapt.collect.batch import BatchLayout, BatchStorage, observation_tensors
from rladapt.collect.envs import AdaptedFactory, EnvError, EnvRebuildError, EnvSource, adapt_for, make_vector_env
from rladapt.collect.guard import MainGuardError
from rladapt.collect.remote import WorkerError
from rladapt.collect.vector import VectorCollector
from rladapt.collect.workers import WorkerCollector, Workers
from rladapt.protocols import LearningAgent
from rladapt.spaces import mask_size

__all__ = [
    "AdaptedFactory", "BatchLayout", "BatchStorage", "Collector", "EnvRebuildError", "EnvSource", "EpisodeStats",
    "EnvError", "MainGuardError", "VectorCollector", "WorkerCollector", "WorkerError", "Workers", "adapt_for", "make_collector", "make_vector_env",
    "observation_tensors",
]


def make_collector(agent: LearningAgent, source: EnvSource, num_envs: int, workers: int | str | Workers = 0,
                   vectorization: str | None = None) -> Collector:
    """The collector for ``learn(..., workers=...)``.

    :param agent: the learner's agent, set up for the adapted env's spaces (``use_masks`` set).
    :param source: where the envs come from.
    :param num_envs: envs over all workers (or ranks); for a vector env source, its own count.
    :param workers: 0 (in-process), a number of worker processes, a :class:`Workers`, or
        ``"distributed"`` (this process must be rank 0 of a ``torchrun`` group).
    :param vectorization: in-process only: ``"sync"`` (default) or ``"async"`` (gymnasium's
        AsyncVectorEnv, a process per env).

    An agent whose data does not come from stepping envs supplies its own collector from its
    ``make_collector(source, num_envs, workers)`` method (None: the usual ones).
    """
    own = agent.make_collector(source, num_envs, workers)  # a flow of its own (AlphaZero's self-play games)
    if own is not None:
        return own
    if workers == "distributed":
        if source.kind == "parallel":
            raise ValueError("workers='distributed' does not take a PettingZoo parallel env yet; use workers=N "
                             "(processes on this machine) or in-process collection")
        from rladapt.collect.distributed import DistributedCollector

        return DistributedCollector(agent, num_envs)
    if isinstance(workers, str):
        raise ValueError(f"workers must be a number of processes, a Workers(...) or 'distributed', got {workers!r}")
    if workers:
        if vectorization not in (None, "sync"):
            raise ValueError("vectorization applies to in-process collection; worker processes step their envs themselves")
        if source.kind == "vector":
            raise ValueError("workers rebuild the envs in their own processes: pass the env, its id or a factory, not a vector env")
        settings = workers if isinstance(workers, Workers) else Workers(int(workers))
        return WorkerCollector(agent, source, num_envs, settings)
    envs = source.vector_env(num_envs, vectorization or "sync")
    masks = bool(agent.use_masks)
    return VectorCollector(envs, masks=masks, mask_size=mask_size(agent.action_space) if masks else None, device=agent.device)
