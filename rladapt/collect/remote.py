"""What worker processes and torch.distributed collector ranks share: the recipes they rebuild the
agent and the envs from, the flat weight buffer, the collection core that steps one process's envs
(:class:`EnvRunner`), and how failures are told (env index, traceback).

A remote collector sends an :class:`AgentBlueprint` (class, settings, spaces: no weights, no
optimiser state, no replay) and an :class:`EnvBlueprint` once; the agent's weights then travel as
one :class:`FlatState` buffer at each publish. The remote agent copy acts with the same
``explore`` as the learner's would, with the learner's ``num_timesteps`` and ``progress``.
"""

from __future__ import annotations

import dataclasses
import math
import traceback
from dataclasses import dataclass
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch

from rladapt.spec import bind_agent
from rladapt.collect.atari import atari_fast_path
from rladapt.collect.batch import BatchStorage
from rladapt.collect.envs import EnvError, make_vector_env
from rladapt.collect.vector import VectorCollector
from rladapt.spaces import mask_size
from rladapt.protocols import CollectingAgent

__all__ = [
    "AgentBlueprint", "EnvBlueprint", "EnvRunner", "FlatState", "WorkerError",
    "agent_state", "derived_seed", "describe_failure", "split_envs",
]


class WorkerError(RuntimeError):
    """Collection failed for good: a worker crashed, hung or its env raised more often than
    ``max_restarts`` allows. The message carries the worker's traceback.

    :param message: what happened.
    :param worker: index of the worker (or torch.distributed rank).
    :param env_index: index of the env that raised (over all envs), when known.
    :param worker_traceback: the traceback text from the worker process.
    """

    def __init__(self, message: str, worker: int | None = None, env_index: int | None = None,
                 worker_traceback: str | None = None) -> None:
        super().__init__(message)
        self.worker, self.env_index, self.worker_traceback = worker, env_index, worker_traceback


@dataclass
class AgentBlueprint:
    """A picklable recipe for a CPU copy of an agent: class, settings and spaces (no weights, no
    optimizer state, no replay buffer: the weights follow as a :class:`FlatState` at each publish).

    :param agent_class: the agent's class.
    :param settings: its constructor settings.
    :param observation_space: the adapted env's observation space.
    :param action_space: the adapted env's action space.
    :param use_masks: whether the learner collects action masks.
    :param family: the env's family (the agent's per-kind defaults read it).
    """

    agent_class: type
    settings: dict[str, Any]
    observation_space: gym.Space
    action_space: gym.Space
    use_masks: bool
    family: str = "other"

    @classmethod
    def of(cls, agent: CollectingAgent) -> "AgentBlueprint":
        settings = {f.name: getattr(agent.config, f.name) for f in dataclasses.fields(agent.config)}
        settings.update(device="cpu", num_threads=1)
        return cls(type(agent), settings, agent.observation_space, agent.action_space, bool(agent.use_masks),
                   agent.env_family)

    def build(self, seed: int | None) -> Any:
        """The agent, built for the spaces, with its acting generator seeded by ``seed``."""
        agent = self.agent_class(**self.settings)
        bind_agent(agent, self.observation_space, self.action_space, self.family)
        agent.use_masks = self.use_masks
        if seed is not None:
            agent.generator.manual_seed(seed)
        else:
            agent.generator.seed()
        agent.eval()
        return agent


@dataclass
class EnvBlueprint:
    """A recipe for one process's envs. It pickles its env constructor with cloudpickle (a class
    defined in the user's ``__main__`` travels by value; one importable by module, by reference);
    a torch.distributed rank builds from it in its own process, unpickled.

    :param make_env: zero-argument constructor of one adapted env.
    :param atari: :class:`~rladapt.collect.atari.AtariPipelineVectorEnv` settings when the fast
        Atari path applies, else None.
    :param masks: collect ``info["action_mask"]``.
    :param mask_size: length of one mask.
    :param slot_agents: a PettingZoo parallel env: the agents of each copy that are slots
        (``make_env`` makes one adapted parallel env; a process's envs are its agent slots).
    """

    make_env: Callable[[], gym.Env]
    atari: dict[str, Any] | None
    masks: bool
    mask_size: int | None
    slot_agents: list[str] | None = None

    @classmethod
    def of(cls, source: Any, agent: CollectingAgent, fast_atari: bool) -> "EnvBlueprint":
        """From a run's :class:`~rladapt.collect.envs.EnvSource` and the learner's agent."""
        atari = atari_fast_path(source.probe) if fast_atari and source.kind == "spec" and not agent.use_masks else None
        masks = bool(agent.use_masks)
        return cls(source.remote_maker(), atari, masks, mask_size(agent.action_space) if masks else None,
                   getattr(source, "slot_agents", None))

    def __getstate__(self) -> dict[str, Any]:
        import cloudpickle

        return {**self.__dict__, "make_env": cloudpickle.dumps(self.make_env)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        import cloudpickle

        self.__dict__.update(state, make_env=cloudpickle.loads(state["make_env"]))

    def make(self, env_indices: range) -> gym.vector.VectorEnv:
        """A vector env over the envs ``env_indices`` (indices over all envs of the run)."""
        if self.atari is not None:
            from rladapt.collect.atari import AtariPipelineVectorEnv

            return AtariPipelineVectorEnv(len(env_indices), num_threads=1, **self.atari)
        if self.slot_agents is not None:  # env indices are agent slots, whole copies of the parallel env
            from rladapt.collect.slots import AgentSlotsVectorEnv

            return AgentSlotsVectorEnv([self.make_env] * (len(env_indices) // len(self.slot_agents)), self.slot_agents)
        return make_vector_env([self.make_env] * len(env_indices), "sync", first_index=env_indices.start)


class FlatState:
    """Tensors packed into one contiguous byte buffer (each one a view of it), so that all of an
    agent's weights move as one copy, one shared-memory segment or one broadcast.

    :param tensors: name -> tensor (any dtypes and devices; the buffer is on CPU).
    :param share_memory: put the buffer in shared memory.
    """

    def __init__(self, tensors: dict[str, torch.Tensor], share_memory: bool = False) -> None:
        self.names = list(tensors)
        layout, offset = [], 0
        for t in tensors.values():
            offset = -(-offset // 8) * 8  # 8-byte alignment for every dtype
            layout.append((offset, t.dtype, tuple(t.shape)))
            offset += t.numel() * t.element_size()
        self.buffer = torch.zeros(max(offset, 8), dtype=torch.uint8)
        if share_memory:
            self.buffer.share_memory_()
        self.layout = layout
        self.views = [self._view(*spec) for spec in layout]
        self.copy_from(list(tensors.values()))

    def _view(self, offset: int, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
        nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        return self.buffer[offset : offset + nbytes].view(dtype).view(shape)

    def __getstate__(self) -> dict[str, Any]:
        return {"names": self.names, "layout": self.layout, "buffer": self.buffer}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.names, self.layout, self.buffer = state["names"], state["layout"], state["buffer"]
        self.views = [self._view(*spec) for spec in self.layout]

    @torch.no_grad()
    def copy_from(self, tensors: list[torch.Tensor]) -> None:
        for view, t in zip(self.views, tensors):
            view.copy_(t.detach())

    @torch.no_grad()
    def copy_to(self, tensors: list[torch.Tensor]) -> None:
        for view, t in zip(self.views, tensors):
            t.copy_(view)


def agent_state(agent: CollectingAgent) -> dict[str, torch.Tensor]:
    """Everything an agent's acting may read: its ``state_dict`` (parameters and buffers, e.g.
    observation statistics or a Q-table), as tensors that alias the live ones."""
    return dict(agent.state_dict(keep_vars=True))


class EnvRunner:
    """One process's share of collection: envs ``env_indices`` in a vector env, a CPU copy of the
    agent, and a :class:`~rladapt.collect.vector.VectorCollector` stepping them, with the
    learner's batch (or the process's columns of it) as the storage. Used by worker processes and
    by torch.distributed collector ranks alike.

    :param agent: recipe of the agent copy.
    :param envs: recipe of the envs.
    :param env_indices: which envs of the run this process steps.
    :param seed: seed of the agent copy's acting generator (None: random).
    :param step_counter: a shared one-entry counter bumped at every vector step (stall detection).
    """

    def __init__(self, agent: AgentBlueprint, envs: EnvBlueprint, env_indices: range, seed: int | None,
                 step_counter: torch.Tensor | None = None) -> None:
        self.env_indices = env_indices
        self.envs = envs.make(env_indices)
        self.collector = VectorCollector(self.envs, masks=envs.masks, mask_size=envs.mask_size, step_counter=step_counter,
                                         first_index=env_indices.start)
        self.agent = agent.build(seed)
        self.state = list(agent_state(self.agent).values())
        self.version = -1  # of the weights in use
        self.updates = 0  # the learner's num_updates when they were published
        self._reported = 0

    def reset(self, seed: int | None) -> None:
        self.collector.reset(seed=seed)

    def collect(self, out: BatchStorage) -> None:
        """Collect ``out.steps`` vector steps into ``out`` (written in place)."""
        self.collector.collect(self.agent, out.steps, out=out)

    def new_episodes(self) -> tuple[list[float], list[int]]:
        """Returns and lengths of the episodes finished since the last call."""
        c = self.collector
        new = min(c.episodes - self._reported, len(c.episode_returns))
        self._reported = c.episodes
        if new <= 0:
            return [], []
        return list(c.episode_returns)[-new:], list(c.episode_lengths)[-new:]

    def close(self) -> None:
        self.collector.close()


def describe_failure(error: BaseException, where: str) -> tuple[str, int | None, str]:
    """``(what happened, env index or None, traceback text)`` for an exception raised in
    collection; an env's exception is told with its env index and its own traceback.

    :param error: the exception.
    :param where: the process, e.g. ``"worker 1"`` or ``"collector rank 2"``.
    """
    env_error = error if isinstance(error, EnvError) else None
    cause = (error.__cause__ or error) if env_error is not None else error
    text = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
    if env_error is not None:
        what = f"env {env_error.env_index} (in {where}) raised {env_error.what}"
        return what, env_error.env_index, text
    return f"{where} raised {type(error).__name__}: {error}", None, text


def split_envs(num_envs: int, parts: int) -> list[range]:
    """``num_envs`` env indices in ``parts`` contiguous, near-equal ranges."""
    if num_envs < parts:
        raise ValueError(
            f"num_envs={num_envs} is less than workers={parts}: each worker needs at least one env. "
            f"Pass num_envs >= {parts} (e.g. learn(..., num_envs={parts}, workers={parts})) or fewer workers"
        )
    bounds = [round(i * num_envs / parts) for i in range(parts + 1)]
    return [range(bounds[i], bounds[i + 1]) for i in range(parts)]


def derived_seed(seed: int | None, *parts: int) -> int | None:
    """A seed for a worker's agent copy, distinct per worker and restart (None stays None)."""
    if seed is None:
        return None
    return int(np.random.SeedSequence([seed, *parts]).generate_state(1)[0])


