"""Where a run's envs come from: what the user passed, adapted for the agent, and how to make copies.

``learn`` accepts an env id, an env instance (adapted here unless it is an ``AutoAdapt`` env), a
zero-argument factory, or a ready gymnasium vector env. :class:`EnvSource` turns any of them into
one adapted instance to read the spaces from (``probe``) and a way to make the envs the collector
steps:

- ``"spec"``: the adapted chain has a gymnasium spec, so ``gym.make(spec)`` rebuilds it, in this
  process or in a worker (every wrapper records its constructor arguments);
- ``"factory"``: the user's factory, its envs adapted as they are made (picklable for workers);
- ``"instance"``: an env whose class gymnasium cannot rebuild (not registered). With one env the
  instance itself is stepped (never closed by rladapt); with more, copies are made with
  ``copy.deepcopy`` (by pickling for worker processes), and the plan says so; an env that cannot be
  copied gets a clear error naming the fixes;
- ``"vector"``: a vector env, taken as adapted and stepped as it is (not closed);
- ``"parallel"``: a PettingZoo parallel env (adapted agent by agent): ``num_envs`` copies of it
  (deep copies, or the user's factory) whose agents are the slots of one
  :class:`~rladapt.collect.slots.AgentSlotsVectorEnv`, all sharing one policy.
"""

from __future__ import annotations

import copy
import functools
from typing import Any, Callable

import gymnasium as gym
from gymnasium.vector import AutoresetMode

from rladapt.adapt import AutoAdapt, env_family
from rladapt.wrappers.multiplayer import is_aec_env
from rladapt.wrappers.parallel import AdaptedParallelEnv, is_parallel_env
from rladapt.spec import AgentNeeds

__all__ = ["AdaptedFactory", "EnvError", "EnvRebuildError", "EnvSource", "IndexedEnv", "adapt_for", "make_vector_env"]


class EnvRebuildError(ValueError):
    """The adapted env cannot be copied for vectorization (no spec, no factory, no deep copy)."""


def adapt_for(agent: AgentNeeds, env: Any) -> Any:
    """``env`` adapted for ``agent`` (an agent, agent class or ``AgentSpec``): an id or a plain env
    through ``AutoAdapt``; an ``AutoAdapt`` env or a vector env as it is."""
    if isinstance(env, (AutoAdapt, gym.vector.VectorEnv, AdaptedParallelEnv)):
        return env
    return AutoAdapt(env, agent)


class AdaptedFactory:
    """A picklable env factory that adapts what ``factory`` returns for ``agent_class`` (as
    ``learn`` does in the learner), without carrying the learner's agent along.

    :param factory: zero-argument callable returning an env.
    :param agent_class: the agent class whose spec AutoAdapt reads.
    """

    def __init__(self, factory: Callable[[], gym.Env], agent_class: type) -> None:
        self.factory, self.agent_class = factory, agent_class

    def __call__(self) -> gym.Env:
        return adapt_for(self.agent_class, self.factory())


class _Borrowed(gym.Wrapper):
    """The user's own env instance, stepped by a vector env that must not close it."""

    def close(self) -> None:
        pass


def _make_from_spec(spec: gym.envs.registration.EnvSpec) -> gym.Env:
    return gym.make(spec)


class EnvError(RuntimeError):
    """An env raised in ``step`` or ``reset`` during collection (in-process, in an async
    subprocess, in a worker or on a rank); ``__cause__`` is the original exception, with its
    traceback, where the env ran in this process.

    :param env_index: index of the env over all envs of the run.
    :param call: ``"reset"`` or ``"step"``.
    :param error: the env's exception.
    :param episode_step: steps the env had taken in its episode when it raised.
    """

    def __init__(self, env_index: "int | EnvError", call: str = "step", error: BaseException | None = None,
                 episode_step: int | None = None) -> None:
        if isinstance(env_index, EnvError):  # gymnasium's AsyncVectorEnv re-raises as type(error)(error)
            env_index, call, episode_step, self.what = env_index.env_index, env_index.call, env_index.episode_step, env_index.what
        else:
            at = f" at step {episode_step} of its episode" if call == "step" and episode_step is not None else ""
            self.what = f"{type(error).__name__}: {error} in {call}(){at}"
        super().__init__(f"env {env_index} raised {self.what}")
        self.env_index, self.call, self.episode_step = env_index, call, episode_step

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuilt_env_error, (self.env_index, self.call, self.episode_step, self.what)


def _rebuilt_env_error(env_index: int, call: str, episode_step: int | None, what: str) -> EnvError:
    error = EnvError.__new__(EnvError)
    RuntimeError.__init__(error, f"env {env_index} raised {what}")
    error.env_index, error.call, error.episode_step, error.what = env_index, call, episode_step, what
    return error


class IndexedEnv(gym.Wrapper):
    """Re-raises any exception of the env's ``step``/``reset`` as :class:`EnvError` naming the env
    index and its step in the episode (the original exception and traceback chained), so every
    collector says which env failed and when.

    :param env: the env.
    :param index: its index over all envs of the run.
    """

    def __init__(self, env: gym.Env, index: int) -> None:
        super().__init__(env)
        self.index = index
        self.episode_step = 0

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        self.episode_step += 1
        try:
            return self.env.step(action)
        except Exception as error:
            raise EnvError(self.index, "step", error, self.episode_step) from error

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        self.episode_step = 0
        try:
            return self.env.reset(seed=seed, options=options)
        except Exception as error:
            raise EnvError(self.index, "reset", error) from error


def make_vector_env(env_fns: list[Callable[[], gym.Env]], mode: str = "sync", first_index: int = 0) -> gym.vector.VectorEnv:
    """A gymnasium vector env over ``env_fns``: ``"sync"`` (in-process) or ``"async"`` (a process
    per env, observations in shared memory), each env an :class:`IndexedEnv` (its errors name it).
    Observations are not copied (the collector copies them).

    :param env_fns: zero-argument env constructors.
    :param mode: ``"sync"`` or ``"async"``.
    :param first_index: the index of the first env over all envs of the run (a worker's share).
    """
    if mode not in ("sync", "async"):
        raise ValueError(f"vectorization must be 'sync' or 'async', got {mode!r}")
    indexed = [functools.partial(_indexed, fn, first_index + i) for i, fn in enumerate(env_fns)]
    if mode == "sync":
        return gym.vector.SyncVectorEnv(indexed, copy=False, autoreset_mode=AutoresetMode.NEXT_STEP)
    return gym.vector.AsyncVectorEnv(indexed, shared_memory=True, copy=False, autoreset_mode=AutoresetMode.NEXT_STEP)


def _indexed(make_env: Callable[[], gym.Env], index: int) -> IndexedEnv:
    return IndexedEnv(make_env(), index)


def _rebuildable(env: gym.Env) -> bool:
    spec = env.spec
    return spec is not None and spec.entry_point is not None


class EnvSource:
    """What ``learn``, ``evaluate`` and the collectors build a run's envs from (module docstring).

    :param env: an env id, an env (adapted here unless it is an ``AutoAdapt`` env), a
        zero-argument factory returning an env, or a gymnasium vector env (taken as adapted).
    :param agent: the agent (its spec tells AutoAdapt what to build).
    """

    def __init__(self, env: Any, agent: AgentNeeds) -> None:
        self.agent_class = agent if isinstance(agent, type) else type(agent)
        self.user_env = env
        self.factory: Callable[[], gym.Env] | None = None
        if isinstance(env, gym.vector.VectorEnv):
            self.kind, self.probe, self.owns_probe = "vector", env, False
        elif isinstance(env, AdaptedParallelEnv) or is_parallel_env(env):
            self.kind, self.probe, self.owns_probe = "parallel", adapt_for(agent, env), not isinstance(env, AdaptedParallelEnv)
        elif isinstance(env, (str, gym.Env)) or is_aec_env(env):  # a PettingZoo AEC game is adapted as a turn-based env
            self.probe = adapt_for(agent, env)
            self.owns_probe = isinstance(env, str)
            if isinstance(self.probe, AdaptedParallelEnv):  # an id of a parallel env (mpe2.simple_spread_v3)
                self.kind = "parallel"
            else:
                self.kind = "spec" if _rebuildable(self.probe) else "instance"
        elif callable(env):
            self.factory = AdaptedFactory(env, self.agent_class)
            self.kind, self.probe, self.owns_probe = "factory", self.factory(), True
            if isinstance(self.probe, AdaptedParallelEnv):
                self.kind = "parallel"
        else:
            raise TypeError(
                f"expected an env, an env id, a vector env or a zero-argument env factory, got {type(env).__name__}"
            )
        #: The agents one policy acts for (parallel envs: every agent, which must share spaces).
        self.slot_agents = self.probe.group_agents(None) if self.kind == "parallel" else None
        #: Whether the vector env of a one-env run is the probe itself (an unregistered instance).
        self.steps_probe = False
        self._eval_copy: gym.Env | None = None

    # -- what the env is ---------------------------------------------------------------------
    @property
    def observation_space(self) -> gym.Space:
        """The adapted env's single observation space."""
        if self.kind == "parallel":
            return self.probe.observation_space(self.slot_agents[0])
        return self.probe.single_observation_space if self.kind == "vector" else self.probe.observation_space

    @property
    def action_space(self) -> gym.Space:
        """The adapted env's single action space."""
        if self.kind == "parallel":
            return self.probe.action_space(self.slot_agents[0])
        return self.probe.single_action_space if self.kind == "vector" else self.probe.action_space

    @property
    def masks(self) -> bool:
        """The adapted env writes ``info["action_mask"]`` (AutoAdapt's ``ActionMask`` is in the chain)."""
        return bool(self.probe.metadata.get("action_mask"))

    @property
    def family(self) -> str:
        """The base env's family (:func:`rladapt.adapt.env_family`), for per-kind defaults."""
        if self.kind == "vector":
            inner = getattr(self.probe, "envs", None)
            return env_family(inner[0]) if inner else "other"
        return getattr(self.probe, "family", None) or env_family(self.probe)

    @property
    def name(self) -> str:
        """The env id, or the env class name."""
        if self.kind == "parallel":  # the id it was made from (mpe2.simple_spread_v3), else its own name
            return self.probe.env_id or self.probe.metadata.get("name") or type(self.probe.unwrapped).__name__
        spec = getattr(self.probe, "spec", None)
        base = getattr(self.probe, "unwrapped", self.probe)
        return getattr(spec, "id", None) or getattr(base, "env_id", None) or type(base).__name__

    # -- copies ------------------------------------------------------------------------------
    def env_fns(self, num_envs: int) -> list[Callable[[], gym.Env]]:
        """Zero-argument constructors of ``num_envs`` adapted envs for an in-process vector env."""
        if self.kind == "vector":
            raise EnvRebuildError("a vector env is stepped as it is: it cannot be copied")
        if self.kind == "spec":
            return [functools.partial(_make_from_spec, self.probe.spec) for _ in range(num_envs)]
        if self.kind == "factory" or (self.kind == "parallel" and self.factory is not None):
            return [self.factory] * num_envs
        if num_envs == 1 and self.kind != "parallel":  # the instance itself: nothing to copy
            self.steps_probe = True
            probe = self.probe
            return [lambda: _Borrowed(probe)]
        copies = [self._deepcopy() for _ in range(num_envs)]
        return [lambda env=env: env for env in copies]

    def vector_env(self, num_envs: int, mode: str = "sync") -> gym.vector.VectorEnv:
        """The vector env a collector steps: ``num_envs`` adapted envs (``mode`` ``"sync"`` or
        ``"async"``), or for a parallel env ``num_envs`` copies whose agents are the slots
        (``num_envs * agents`` of them; in-process only)."""
        if self.kind == "vector":
            return self.probe
        if self.kind == "parallel":
            if mode != "sync":
                raise ValueError(f"vectorization={mode!r}: the copies of a parallel env are stepped in-process (sync)")
            from rladapt.collect.slots import AgentSlotsVectorEnv

            return AgentSlotsVectorEnv(self.env_fns(num_envs), self.slot_agents)
        return make_vector_env(self.env_fns(num_envs), mode)

    def _deepcopy(self) -> gym.Env:
        try:
            return copy.deepcopy(self.probe)
        except Exception as error:
            raise EnvRebuildError(self._cannot_copy(f"copy.deepcopy failed ({type(error).__name__}: {error})")) from error

    def _cannot_copy(self, why: str) -> str:
        name = type(self.probe.unwrapped).__name__
        return (
            f"cannot make copies of {name} for vectorization: it has no gymnasium spec (its class is not "
            f"registered) and {why}. Either register it, gymnasium.register(id='{name}-v0', entry_point={name}), "
            f"and pass gym.make('{name}-v0'), or pass a factory instead of the instance: "
            f"agent.learn(lambda: {name}(...), steps), or train on the instance itself with num_envs=1"
        )

    def remote_maker(self) -> Callable[[], gym.Env]:
        """A zero-argument constructor of one adapted env for another process (picklable by
        cloudpickle): ``gym.make`` of the spec, the adapted factory, or, for an unregistered
        instance, a copy unpickled from this one's bytes."""
        if self.kind == "spec":
            return functools.partial(_make_from_spec, self.probe.spec)
        if self.kind == "factory" or (self.kind == "parallel" and self.factory is not None):
            return self.factory
        if self.kind in ("instance", "parallel"):
            import cloudpickle

            try:
                return functools.partial(_unpickle_env, cloudpickle.dumps(self.probe))
            except Exception as error:
                raise EnvRebuildError(self._cannot_copy(f"pickling it for the worker processes failed "
                                                        f"({type(error).__name__}: {error})")) from error
        raise EnvRebuildError("workers rebuild the envs in their own processes: pass the env, its id or a factory, not a vector env")

    def copies_note(self, num_envs: int, remote: bool) -> str | None:
        """What the plan says about how the envs were made, when it is not from the spec or a factory."""
        if self.kind == "parallel":
            return (f"{num_envs} copies of the parallel env ({'the factory' if self.factory else 'copy.deepcopy'}), "
                    f"{num_envs * len(self.slot_agents)} agent slots sharing one policy")
        if self.kind != "instance":
            return None
        if num_envs == 1 and not remote:
            return "one env: the instance itself is stepped (its class is not registered, so it is not rebuilt)"
        how = "pickled copies" if remote else "copy.deepcopy copies"
        return (f"{num_envs} envs: {how} of the instance (its class is not registered with gymnasium, so "
                f"gym.make(spec) cannot rebuild it)")

    # -- evaluation --------------------------------------------------------------------------
    def eval_env(self) -> gym.Env | None:
        """The env to evaluate on during training: the probe, or a deep copy of it when the probe
        is the one env being trained on; None for a vector env (or an instance that cannot be copied)."""
        if self.kind == "vector":
            return None
        if not self.steps_probe:
            return self.probe
        if self._eval_copy is None:
            try:
                self._eval_copy = copy.deepcopy(self.probe)
            except Exception:
                return None
        return self._eval_copy

    def close(self) -> None:
        """Close what was made here (the probe made from an id or a factory, the evaluation copy)."""
        if self._eval_copy is not None:
            self._eval_copy.close()
            self._eval_copy = None
        if self.owns_probe:
            self.probe.close()


def _unpickle_env(data: bytes) -> gym.Env:
    import cloudpickle

    return cloudpickle.loads(data)
