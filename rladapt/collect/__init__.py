"""Collection components: turn an adapted env into a stream of ``[num_envs]`` TensorDict steps.

``make_env_fns`` finds how to rebuild copies of the adapted env (its gymnasium spec, or a factory),
``make_vector_env`` vectorizes them with gymnasium (sync in-process, or async worker processes), and
:class:`VectorCollector` steps them with a policy in the learner's process.

``make_worker_collector`` moves collection out of the learner's process (``learn(..., workers=N)``):
:class:`~rladapt.collect.workers.WorkerCollector` runs N worker processes that act with their own copy
of the policy and hand over whole rollouts or chunks of transitions through shared memory, and
:class:`~rladapt.collect.distributed.DistributedCollector` does the same with the ranks of a
torch.distributed group (``torchrun``). Those collectors set ``acts_remotely`` and offer
``collect_rollout(n_steps)`` (on-policy) and ``transitions(vector_steps)`` (off-policy) instead of
``step``; ``reset``, ``close``, ``num_envs``, ``steps``, ``episodes`` and the episode statistics are
common to all.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import gymnasium as gym

from rladapt.collect.vector import Policy, VectorCollector, observation_tensors
from rladapt.collect.workers import AdaptedFactory, WorkerCollector, WorkerError, Workers

__all__ = [
    "VectorCollector", "Policy", "make_env_fns", "make_vector_env", "observation_tensors",
    "Workers", "WorkerCollector", "WorkerError", "make_worker_collector",
]


class EnvRebuildError(ValueError):
    """The adapted env cannot be copied for vectorization (no spec, no factory)."""


def _make_from_spec(spec: gym.envs.registration.EnvSpec) -> gym.Env:
    return gym.make(spec)


def make_env_fns(env: Any, num_envs: int) -> list[Callable[[], gym.Env]]:
    """Zero-argument constructors for ``num_envs`` copies of the adapted env.

    :param env: an adapted env whose ``spec`` rebuilds the whole wrapper chain (``gym.make(spec)``),
        or a zero-argument callable returning a fresh adapted env.
    """
    if isinstance(env, gym.Env):
        spec = env.spec
        if spec is None or spec.entry_point is None:
            raise EnvRebuildError(
                f"cannot make vectorized copies of {env.unwrapped!r}: it has no gymnasium spec (its class "
                f"is not registered). Either register it, gymnasium.register(id='MyEnv-v0', "
                f"entry_point=MyEnv), and pass gym.make('MyEnv-v0'), or pass a factory instead of the "
                f"instance: agent.learn(lambda: MyEnv(...), steps)"
            )
        return [functools.partial(_make_from_spec, spec) for _ in range(num_envs)]
    if callable(env):
        return [env for _ in range(num_envs)]
    raise TypeError(f"expected a gymnasium env or a zero-argument env factory, got {type(env).__name__}")


def make_vector_env(env_fns: list[Callable[[], gym.Env]], mode: str = "sync") -> gym.vector.VectorEnv:
    """A gymnasium vector env over ``env_fns``: ``"sync"`` (in-process) or ``"async"`` (a process
    per env, observations in shared memory). Observations are not copied (the collector copies them)."""
    if mode == "sync":
        return gym.vector.SyncVectorEnv(env_fns, copy=False)
    if mode == "async":
        return gym.vector.AsyncVectorEnv(env_fns, shared_memory=True, copy=False)
    raise ValueError(f"vectorization must be 'sync' or 'async', got {mode!r}")


def make_worker_collector(agent: Any, env: Any, source: Any, num_envs: int, workers: "int | str | Workers") -> Any:
    """The collector for ``learn(..., workers=...)``.

    :param agent: the learner's agent, set up for the adapted env's spaces.
    :param env: what the user passed to ``learn`` (a factory there is sent to the workers, which
        adapt what it makes, as ``learn`` does).
    :param source: the adapted env (its spec rebuilds it in the workers), or an adapted factory.
    :param num_envs: envs over all workers (or ranks).
    :param workers: a number of worker processes, a :class:`~rladapt.collect.workers.Workers`, or
        ``"distributed"``: the ranks of the torch.distributed group started by ``torchrun`` (this
        process must be rank 0, the learner; see :mod:`rladapt.collect.distributed`).
    :return: a :class:`~rladapt.collect.workers.WorkerCollector` or a
        :class:`~rladapt.collect.distributed.DistributedCollector`.
    """
    source = worker_env_source(agent, env, source)
    if workers == "distributed":
        from rladapt.collect.distributed import DistributedCollector

        return DistributedCollector(agent, source, num_envs)
    if isinstance(workers, str):
        raise ValueError(f"workers must be a number of processes, a Workers(...) or 'distributed', got {workers!r}")
    settings = workers if isinstance(workers, Workers) else Workers(int(workers))
    return WorkerCollector(agent, source, num_envs, settings)


def worker_env_source(agent: Any, env: Any, source: Any) -> Any:
    """What worker processes rebuild their envs from: the adapted env (sent as its spec), or for a
    factory, the user's factory adapted in the worker (so the learner's agent is not pickled along).

    :param agent: the learner's agent.
    :param env: what the user passed to ``learn``.
    :param source: what ``learn`` resolved it to.
    """
    if isinstance(source, gym.Env):
        return source
    return AdaptedFactory(env, type(agent))
