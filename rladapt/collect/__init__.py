"""Collection components: turn an adapted env into a stream of ``[num_envs]`` TensorDict steps.

``make_env_fns`` finds how to rebuild copies of the adapted env (its gymnasium spec, or a factory),
``make_vector_env`` vectorizes them with gymnasium (sync in-process, or async worker processes), and
:class:`VectorCollector` steps them with a policy. A multiprocess or torch.distributed collector
plugs in by providing the same ``reset``/``step``/``close`` interface.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import gymnasium as gym

from rladapt.collect.vector import Policy, VectorCollector, observation_tensors

__all__ = ["VectorCollector", "Policy", "make_env_fns", "make_vector_env", "observation_tensors"]


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
