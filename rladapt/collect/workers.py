"""Multiprocess collection: worker processes (``torch.multiprocessing``) that act and step on their own.

``agent.learn(env, steps, workers=N)`` splits the ``num_envs`` envs over ``N`` worker processes.
Each worker rebuilds its envs from the adapted env's spec (or factory), builds a CPU copy of the
agent, and runs the policy itself; only whole rollouts (on-policy) or chunks of transitions
(off-policy) reach the learner, through preallocated shared-memory TensorDicts. Observations never
cross processes step by step, and the learner's process does no env work at all::

    learner process                                   worker w (envs lo..hi-1)
    ---------------                                   ------------------------
    SharedWeights.publish(agent)  --- shared mem -->  load when the version changed
    "rollout" / "free" (pipe)     --------------->    VectorCollector.step x T, each step written
    read rows [T, N]              <-- shared mem ---    into rows[:, lo:hi] of the shared TensorDict
    "rollout"/"chunk" + episode   <---------------
    stats (pipe)

Shared memory layout (allocated once by the learner, handed to each worker):

- weights: every tensor of ``agent.state_dict()`` packed into one flat shared byte buffer
  (:class:`FlatState`), int64 ``[seq, version, updates]`` (a seqlock: ``seq`` is odd while the
  learner writes; ``version`` counts publishes; ``updates`` is the learner's ``num_updates`` at the
  publish) and float64 ``[num_timesteps, progress]`` (for off-policy exploration schedules).
- on-policy: ``rows`` ``[n_steps, num_envs]`` with the keys of the collector's step except
  ``next/observation`` (what the rollout buffer stores: ``observation``, ``action``, ``log_prob``,
  ``value``, ``next/reward``, ``valid``, ...), and ``last`` ``[num_envs]``: the observation after
  the last row (for the bootstrap value). Worker ``w`` writes the columns ``lo:hi``.
- off-policy: per worker, ``slots`` chunk buffers ``[chunk, envs_of_w]`` with every key of the step.
- ``heartbeat`` ``[N]`` int64: each worker's env-step counter (stall detection).

On-policy agents (PPO, A2C) collect synchronously: the learner publishes version ``v``, every worker
collects ``n_steps`` with it, the learner updates; each rollout comes from the current policy.
Off-policy agents (DQN, SAC) collect asynchronously: workers fill their chunk slots continuously
with the newest weights they have seen, the learner stores each chunk into its replay and frees the
slot; ``collect/policy_lag`` (the learner's ``num_updates`` now minus its ``num_updates`` when the
oldest weights a chunk was collected with were published) is logged with its maximum.

Faults (DESIGN.md principle 8): the learner waits on the workers' pipes and process sentinels
together, so a worker that dies (killed, or its env raised) is seen at once; a worker that stops
stepping for ``stall_timeout`` seconds is killed. Its in-flight rollout or chunk is discarded, the
worker is restarted (fresh envs, new seed) up to ``max_restarts`` times, then :class:`WorkerError`
stops the run with the worker's traceback. Env exceptions name the worker and the env index. After
an off-policy restart the learner ends those envs' replay streams at their last stored transition
(as a truncation), so n-step windows never join the old episode to the new one.
Workers ignore Ctrl-C (the learner shuts them down), exit when the learner's pipe closes, and get
SIGTERM if the learner dies (Linux); shared memory is file-descriptor backed, freed with the last
process that maps it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import sys
import time
import traceback
import warnings
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Iterator

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from tensordict import TensorDict, TensorDictBase

from rladapt.collect.vector import EpisodeStats, VectorCollector

#: Keys of a step that on-policy rows leave out (the next observation is the next row's).
ROLLOUT_SKIPPED_KEYS = (("next", "observation"), ("next", "action_mask"))


# -------------------------------------------------------------------------------------------
# Settings and errors
# -------------------------------------------------------------------------------------------


@dataclass
class Workers:
    """How ``learn`` spreads collection over processes: ``learn(env, steps, workers=Workers(4))``
    (``workers=4`` is ``Workers(4)``).

    :param count: worker processes; the ``num_envs`` envs are split between them as evenly as
        possible (so ``num_envs`` must be at least ``count``).
    :param max_restarts: restarts allowed per worker (after a crash, an env exception or a stall)
        before the run stops with :class:`WorkerError`.
    :param stall_timeout: seconds a worker that has work may go without stepping an env before it
        is taken as hung, killed and restarted.
    :param start_timeout: seconds a new worker may take to import, build its envs and its agent.
    :param start_method: how worker processes start. ``"forkserver"`` (the default where it
        exists): a fresh server process imports torch, tensordict and rladapt once (about 5 s), then
        forks every worker from that clean state, so restarts take a fraction of a second;
        ``"spawn"``: every worker is a fresh interpreter (portable; each start pays the imports).
        Neither inherits the learner's state (no CUDA context, no replay buffer): workers get only
        what they are sent. Scripts need the ``if __name__ == "__main__":`` guard with both.
    :param fast_atari: step AutoAdapt's standard Atari pipeline with ale-py's C++ vector env in each
        worker (:mod:`rladapt.collect.atari`); False: gymnasium vector envs of the Python chain.
    :param chunk_steps: off-policy: vector steps per chunk a worker hands over (None: the agent's
        ``train_freq``).
    :param chunk_slots: off-policy: chunks a worker may have waiting for the learner; bounds the
        policy lag (a worker blocks when all its slots are full).
    :param weight_sync_interval: off-policy: publish weights at most every this many seconds
        (0: after every iteration). On-policy agents publish before every rollout.
    """

    count: int
    max_restarts: int = 3
    stall_timeout: float = 60.0
    start_timeout: float = 120.0
    start_method: str | None = None
    fast_atari: bool = True
    chunk_steps: int | None = None
    chunk_slots: int = 2
    weight_sync_interval: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.count, (int, np.integer)) or self.count < 1:
            raise ValueError(f"workers must be a positive number of processes, got {self.count!r}")
        if self.max_restarts < 0 or self.chunk_slots < 1:
            raise ValueError("max_restarts must be >= 0 and chunk_slots >= 1")
        if self.start_method is None:
            import multiprocessing

            self.start_method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        if self.start_method not in ("spawn", "forkserver"):
            raise ValueError(f"start_method must be 'spawn' or 'forkserver', got {self.start_method!r}")


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


class EnvError(RuntimeError):
    """An env raised inside a collection worker; ``__cause__`` is the original exception.

    :param env_index: index of the env over all envs of the run.
    :param call: ``"reset"`` or ``"step"``.
    """

    def __init__(self, env_index: int, call: str, error: BaseException) -> None:
        super().__init__(f"env {env_index} raised {type(error).__name__}: {error} in {call}()")
        self.env_index, self.call = env_index, call


class IndexedEnv(gym.Wrapper):
    """Re-raises any exception of the env's ``step``/``reset`` as :class:`EnvError` naming the env
    index (the original exception and traceback chained), so a worker can say which env failed.

    :param env: the env.
    :param index: its index over all envs of the run.
    """

    def __init__(self, env: gym.Env, index: int) -> None:
        super().__init__(env)
        self.index = index

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        try:
            return self.env.step(action)
        except Exception as error:
            raise EnvError(self.index, "step", error) from error

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        try:
            return self.env.reset(seed=seed, options=options)
        except Exception as error:
            raise EnvError(self.index, "reset", error) from error


# -------------------------------------------------------------------------------------------
# What a worker rebuilds: the agent (a CPU copy) and its envs
# -------------------------------------------------------------------------------------------


@dataclass
class AgentBlueprint:
    """A picklable recipe for a CPU copy of an agent: class, settings and spaces (no weights, no
    optimizer state, no replay buffer: workers get weights through :class:`SharedWeights`).

    :param agent_class: the agent's class.
    :param settings: its constructor settings.
    :param observation_space: the adapted env's observation space.
    :param action_space: the adapted env's action space.
    :param use_masks: whether the learner collects action masks.
    """

    agent_class: type
    settings: dict[str, Any]
    observation_space: gym.Space
    action_space: gym.Space
    use_masks: bool

    @classmethod
    def of(cls, agent: Any) -> "AgentBlueprint":
        settings = {f.name: getattr(agent.config, f.name) for f in dataclasses.fields(agent.config)}
        settings.update(device="cpu", num_threads=1)
        return cls(type(agent), settings, agent.observation_space, agent.action_space, bool(agent.use_masks))

    def build(self, seed: int | None) -> Any:
        """The agent, built for the spaces, with its acting generator seeded by ``seed``."""
        agent = self.agent_class(**self.settings)
        agent.setup(self.observation_space, self.action_space)
        agent.use_masks = self.use_masks
        if seed is not None:
            agent.generator.manual_seed(seed)
        else:
            agent.generator.seed()
        agent.eval()
        return agent


class AdaptedFactory:
    """A picklable env factory that adapts what ``factory`` returns for ``agent_class`` (as
    ``learn`` does in the learner), without carrying the learner's agent along.

    :param factory: zero-argument callable returning an env.
    :param agent_class: the agent class whose spec AutoAdapt reads.
    """

    def __init__(self, factory: Callable[[], gym.Env], agent_class: type) -> None:
        self.factory, self.agent_class = factory, agent_class

    def __call__(self) -> gym.Env:
        from rladapt.adapt import AutoAdapt

        env = self.factory()
        return env if isinstance(env, AutoAdapt) else AutoAdapt(env, self.agent_class)


@dataclass
class EnvBlueprint:
    """A picklable recipe for a worker's envs.

    :param make_env: cloudpickled zero-argument constructor of one adapted env.
    :param atari: :class:`~rladapt.collect.atari.AtariPipelineVectorEnv` settings when the fast
        Atari path applies, else None.
    :param masks: collect ``info["action_mask"]``.
    :param mask_size: length of one mask.
    """

    make_env: bytes
    atari: dict[str, Any] | None
    masks: bool
    mask_size: int | None

    @classmethod
    def of(cls, source: Any, agent: Any, fast_atari: bool) -> "EnvBlueprint":
        """From what ``learn`` builds vector envs from: an adapted env or an adapted factory."""
        import cloudpickle

        from rladapt.agents.base import mask_size
        from rladapt.collect import make_env_fns
        from rladapt.collect.atari import atari_fast_path

        if isinstance(source, gym.Env):
            make_env = make_env_fns(source, 1)[0]
            atari = atari_fast_path(source) if fast_atari and not agent.use_masks else None
        else:
            make_env, atari = source, None
        masks = bool(agent.use_masks)
        return cls(cloudpickle.dumps(make_env), atari, masks, mask_size(agent.action_space) if masks else None)

    def make(self, env_indices: range) -> gym.vector.VectorEnv:
        """A vector env over the envs ``env_indices`` (indices over all envs of the run)."""
        if self.atari is not None:
            from rladapt.collect.atari import AtariPipelineVectorEnv

            return AtariPipelineVectorEnv(len(env_indices), num_threads=1, **self.atari)
        import cloudpickle

        make_env = cloudpickle.loads(self.make_env)
        fns = [lambda i=i: IndexedEnv(make_env(), i) for i in env_indices]
        return gym.vector.SyncVectorEnv(fns, copy=False, autoreset_mode=AutoresetMode.NEXT_STEP)


# -------------------------------------------------------------------------------------------
# Weights: one flat buffer, versioned
# -------------------------------------------------------------------------------------------


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


def agent_state(agent: Any) -> dict[str, torch.Tensor]:
    """Everything an agent's acting may read: its ``state_dict`` (parameters and buffers, e.g.
    observation statistics), as tensors that alias the live ones."""
    return dict(agent.state_dict(keep_vars=True))


class SharedWeights:
    """The learner's weights in shared memory, with a version counter (a seqlock, so that a reader
    never sees a half-written state and a dead reader can never block the writer).

    :param agent: the learner's agent (its state defines the layout).
    """

    def __init__(self, agent: Any) -> None:
        self.state = FlatState(agent_state(agent), share_memory=True)
        self.counters = torch.zeros(3, dtype=torch.int64).share_memory_()  # [seq, version, updates]
        self.meta = torch.zeros(2, dtype=torch.float64).share_memory_()  # [num_timesteps, progress]

    def publish(self, agent: Any, progress: float) -> int:
        """Copy the agent's weights in, with its ``num_timesteps``, ``num_updates`` and the
        learn call's ``progress``; return the new version (the number of publishes)."""
        counters = self.counters
        counters[0] += 1  # odd: writing
        self.state.copy_from(list(agent_state(agent).values()))
        self.meta[0], self.meta[1] = float(agent.num_timesteps), float(progress)
        counters[2] = int(agent.num_updates)
        counters[1] += 1
        counters[0] += 1  # even: consistent
        return int(counters[1])

    @property
    def version(self) -> int:
        return int(self.counters[1])

    def read(self, agent: Any, tensors: list[torch.Tensor]) -> tuple[int, int]:
        """Copy the weights into ``tensors`` (the worker agent's state) and ``num_timesteps`` and
        ``progress`` into the worker's agent; return ``(version, learner updates)`` of what was read."""
        while True:
            seq = int(self.counters[0])
            if seq % 2:
                time.sleep(0)
                continue
            self.state.copy_to(tensors)
            agent.num_timesteps, agent.progress = int(self.meta[0]), float(self.meta[1])
            version, updates = int(self.counters[1]), int(self.counters[2])
            if int(self.counters[0]) == seq:
                return version, updates


# -------------------------------------------------------------------------------------------
# The collection core: one process's envs and agent copy (worker processes and distributed ranks)
# -------------------------------------------------------------------------------------------


def step_template(agent: Any, num_envs: int) -> TensorDict:
    """A zero step TensorDict ``[num_envs]`` with exactly the keys and dtypes that collection
    produces: the collector's layout plus what the agent's acting writes (``action``, ``log_prob``,
    ...), found by acting once on zeros (the agent's generator is left untouched)."""
    from rladapt.agents.base import OffPolicyAgent, mask_size

    class SpacesOnly(gym.vector.VectorEnv):
        def __init__(self) -> None:
            self.num_envs = num_envs
            self.single_observation_space, self.single_action_space = agent.observation_space, agent.action_space
            self.metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    masks = bool(agent.use_masks)
    td = VectorCollector(SpacesOnly(), masks=masks, mask_size=mask_size(agent.action_space) if masks else None).td
    probe = td.clone().to(agent.device)
    state = agent.generator.get_state()
    with torch.inference_mode():
        agent.act_batch(probe, **({"deterministic": False} if isinstance(agent, OffPolicyAgent) else {}))
    agent.generator.set_state(state)
    for key in probe.keys(include_nested=True, leaves_only=True):
        if key not in td.keys(include_nested=True, leaves_only=True):
            td.set(key, torch.zeros_like(probe.get(key), device="cpu"))
    return td


def acting_policy(agent: Any) -> Callable[[TensorDictBase], TensorDictBase]:
    """How a worker acts: what the learner's loop would do (on-policy: ``act_batch``; off-policy:
    uniformly random valid actions before ``learning_starts``, then ``act_batch`` with exploration),
    reading ``num_timesteps``/``progress`` that the learner published with the weights."""
    from rladapt.agents.base import OffPolicyAgent

    if isinstance(agent, OffPolicyAgent):
        learning_starts = agent.hp.learning_starts or 0

        def explore(td: TensorDictBase) -> TensorDictBase:
            with torch.inference_mode():
                if agent.num_timesteps < learning_starts:
                    return agent.random_actions(td)
                return agent.act_batch(td, deterministic=False)

        return explore

    def act(td: TensorDictBase) -> TensorDictBase:
        with torch.inference_mode():
            return agent.act_batch(td)

    return act


class EnvRunner:
    """One process's share of collection: envs ``env_indices`` in a vector env, a CPU copy of the
    agent, and a :class:`~rladapt.collect.vector.VectorCollector` stepping them. Used by worker
    processes and by torch.distributed collector ranks alike.

    :param agent: recipe of the agent copy.
    :param envs: recipe of the envs.
    :param env_indices: which envs of the run this process steps.
    :param seed: seed of the agent copy's acting generator (None: random).
    """

    def __init__(self, agent: AgentBlueprint, envs: EnvBlueprint, env_indices: range, seed: int | None) -> None:
        self.env_indices = env_indices
        self.envs = envs.make(env_indices)
        self.collector = VectorCollector(self.envs, masks=envs.masks, mask_size=envs.mask_size)
        self.agent = agent.build(seed)
        self.state = list(agent_state(self.agent).values())
        self.policy = acting_policy(self.agent)
        self.to_env = self.agent.env_action
        self.version = -1  # of the weights in use
        self.updates = 0  # the learner's num_updates when they were published
        self._reported = 0

    def reset(self, seed: int | None) -> None:
        self.collector.reset(seed=seed)

    def load(self, weights: SharedWeights) -> int:
        """Load the published weights when their version changed; return the version in use."""
        if weights.version != self.version:
            self.version, self.updates = weights.read(self.agent, self.state)
        return self.version

    def rollout(self, rows: TensorDictBase, last: Any, heartbeat: torch.Tensor | None = None, index: int = 0) -> None:
        """Collect ``rows.shape[0]`` steps into ``rows`` (``[T, envs]``, written in place) and the
        observation after the last step into ``last``."""
        keys = list(rows.keys(include_nested=True, leaves_only=True))
        dsts = [rows.get(key) for key in keys]
        step = None
        for t in range(rows.shape[0]):
            step = self.collector.step(self.policy, self.to_env)
            for key, dst in zip(keys, dsts):
                dst[t].copy_(step.get(key))
            if heartbeat is not None:
                heartbeat[index] += 1
        last.copy_(step.get(("next", "observation")))

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


# -------------------------------------------------------------------------------------------
# The worker process
# -------------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Linux: SIGTERM this process when the learner dies, however it dies."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def describe_failure(error: BaseException, where: str) -> tuple[str, int | None, str]:
    """``(what happened, env index or None, traceback text)`` for an exception raised in
    collection; an env's exception is told with its env index and its own traceback.

    :param error: the exception.
    :param where: the process, e.g. ``"worker 1"`` or ``"collector rank 2"``.
    """
    env_error = error if isinstance(error, EnvError) else None
    cause = error.__cause__ if env_error is not None else error
    text = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
    if env_error is not None:
        what = f"env {env_error.env_index} (in {where}) raised {type(cause).__name__}: {cause} in {env_error.call}()"
        return what, env_error.env_index, text
    return f"{where} raised {type(error).__name__}: {error}", None, text


def worker_main(
    index: int,
    agent: AgentBlueprint,
    envs: EnvBlueprint,
    env_indices: range,
    seed: int | None,
    weights: SharedWeights,
    heartbeat: torch.Tensor,
    conn: Connection,
) -> None:
    """Entry point of a worker process: build, then serve the learner's commands until "close"."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the learner, which shuts us down
    torch.set_num_threads(1)
    runner = None
    try:
        runner = EnvRunner(agent, envs, env_indices, seed)
        conn.send(("ready",))
        rows = last = slots = None
        while True:
            message = conn.recv()
            command = message[0]
            if command == "close":
                break
            if command == "reset":
                runner.reset(message[1])
            elif command == "rollout_buffers":
                rows, last = message[1], message[2]
            elif command == "rollout":
                runner.load(weights)
                runner.rollout(rows, last, heartbeat, index)
                conn.send(("rollout", runner.version, *runner.new_episodes()))
            elif command == "stream":
                slots = message[1]
                if _stream(runner, slots, weights, heartbeat, index, conn):
                    break
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # the learner is gone
    except BaseException as error:  # report anything, then exit non-zero
        what, env_index, text = describe_failure(error, f"worker {index}")
        with contextlib.suppress(Exception):
            conn.send(("error", what, env_index, text))
        os._exit(1)
    finally:
        if runner is not None:
            with contextlib.suppress(Exception):
                runner.close()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(0)  # skip the interpreter's slow teardown (torch): nothing is left to clean up


def _stream(runner: EnvRunner, slots: TensorDictBase, weights: SharedWeights, heartbeat: torch.Tensor,
            index: int, conn: Connection) -> bool:
    """Off-policy: fill chunk slots continuously (newest weights at every step) and hand each full
    one to the learner; block while every slot waits for the learner. True when told to close."""
    num_slots, chunk = slots.shape[0], slots.shape[1]
    free = deque(range(num_slots))
    keys = list(slots.keys(include_nested=True, leaves_only=True))
    leaves = [slots.get(key) for key in keys]
    while True:
        while not free or conn.poll():
            message = conn.recv()
            if message[0] == "free":
                free.append(message[1])
            elif message[0] == "close":
                return True
            elif message[0] == "stop":
                return False
        slot = free.popleft()
        runner.load(weights)
        oldest = runner.updates
        for t in range(chunk):
            runner.load(weights)
            step = runner.collector.step(runner.policy, runner.to_env)
            for key, leaf in zip(keys, leaves):
                leaf[slot, t].copy_(step.get(key))
            heartbeat[index] += 1
        conn.send(("chunk", slot, oldest, *runner.new_episodes()))


# -------------------------------------------------------------------------------------------
# The learner's side
# -------------------------------------------------------------------------------------------


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


class _Worker:
    """The learner's handle on one worker process."""

    def __init__(self, index: int, env_indices: range) -> None:
        self.index, self.env_indices = index, env_indices
        self.process: Any = None
        self.conn: Connection | None = None
        self.restarts = 0
        self.generation = 0  # bumped at each (re)start: chunks of an older process are stale
        self.last_beat = 0
        self.last_progress = time.monotonic()
        self.free_slots = 0  # off-policy: chunk slots the worker may fill

    @property
    def columns(self) -> slice:
        return slice(self.env_indices.start, self.env_indices.stop)


class WorkerCollector(EpisodeStats):
    """Collection in worker processes, with the collector interface the agent loop uses.

    ``learn(..., workers=N)`` builds it; on-policy agents call :meth:`collect_rollout`, off-policy
    agents :meth:`transitions`. Episode statistics (``episode_returns``, ``recent_return``, ...),
    ``steps`` and ``episodes`` are those of :class:`~rladapt.collect.vector.VectorCollector`.

    :param agent: the learner's agent (set up for the adapted env's spaces).
    :param source: what the envs are rebuilt from: an adapted env (its spec) or a zero-argument
        factory of adapted envs (picklable with cloudpickle).
    :param num_envs: envs over all workers.
    :param workers: how many processes and the fault-handling settings.
    :param stats_window: how many recent episodes ``recent_return`` averages over.
    """

    #: The policy runs in the collector's processes: the loop asks for rollouts/transitions.
    acts_remotely = True

    def __init__(self, agent: Any, source: Any, num_envs: int, workers: Workers, stats_window: int = 100) -> None:
        self.agent, self.settings = agent, workers
        self.num_envs = num_envs
        self.observation_space, self.action_space = agent.observation_space, agent.action_space
        self.workers = [_Worker(i, r) for i, r in enumerate(split_envs(num_envs, workers.count))]
        self.agent_blueprint = AgentBlueprint.of(agent)
        self.env_blueprint = EnvBlueprint.of(source, agent, workers.fast_atari)
        self.weights = SharedWeights(agent)
        self.heartbeat = torch.zeros(workers.count, dtype=torch.int64).share_memory_()
        self.template = step_template(agent, num_envs)
        self.context = torch.multiprocessing.get_context(workers.start_method)
        if workers.start_method == "forkserver":  # the server imports these once; workers fork from it
            self.context.set_forkserver_preload(["rladapt.collect.workers", "rladapt.agents", "rladapt.adapt"])
        super().__init__(stats_window)
        self.steps = 0
        self.restarts = 0
        self._seed: int | None = None
        self._rows: TensorDict | None = None
        self._last: Any = None
        self._slots: list[TensorDict] | None = None
        # Per worker, chunks received and not yet delivered: (generation, slot, next row, learner
        # updates when the chunk's oldest acting weights were published).
        self._pending: list[deque[tuple[int, int, int, int]]] = [deque() for _ in self.workers]
        self._staging: TensorDict | None = None
        self._copies: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
        self._lags: list[int] = []
        self._last_publish = -math.inf
        self._closed = False
        try:
            for worker in self.workers:
                self._start(worker)
            for worker in self.workers:
                failure = self._await_ready(worker)
                if failure is not None:
                    self._restart(worker, *failure)
        except BaseException:
            self.close()
            raise

    @property
    def fast_atari(self) -> bool:
        """Whether the workers step ale-py's C++ vector env (:mod:`rladapt.collect.atari`)."""
        return self.env_blueprint.atari is not None

    # ------------------------------------------------------------------ process management
    def _start(self, worker: _Worker) -> None:
        parent, child = self.context.Pipe()
        seed = derived_seed(self.agent.config.seed, worker.index, worker.restarts)
        worker.process = self.context.Process(
            target=worker_main,
            args=(worker.index, self.agent_blueprint, self.env_blueprint, worker.env_indices, seed, self.weights,
                  self.heartbeat, child),
            name=f"rladapt-worker-{worker.index}",
            daemon=True,
        )
        worker.process.start()
        child.close()
        worker.conn = parent
        worker.generation += 1
        worker.free_slots = 0
        worker.last_beat, worker.last_progress = int(self.heartbeat[worker.index]), time.monotonic()

    def _await_ready(self, worker: _Worker) -> tuple | None:
        """None once the worker reports ready, else its failure ``(what, env_index, traceback)``."""
        deadline = time.monotonic() + self.settings.start_timeout
        while time.monotonic() < deadline:
            ready = wait([worker.conn, worker.process.sentinel], timeout=max(0.0, deadline - time.monotonic()))
            if worker.conn in ready or worker.conn.poll():
                message = self._receive(worker)
                if message[0] == "ready":
                    return None
                if message[0] == "failed":
                    return message[1:]
            elif worker.process.sentinel in ready:
                return self._death(worker)
        return f"worker {worker.index} did not start within {self.settings.start_timeout:.0f} s", None, None

    def _receive(self, worker: _Worker) -> tuple:
        """The next message of ``worker``, or ``("failed", what, env_index, traceback)``."""
        try:
            message = worker.conn.recv()
        except (EOFError, OSError):
            return ("failed", *self._death(worker))
        if message[0] == "error":
            return ("failed", *message[1:])
        return message

    def _death(self, worker: _Worker) -> tuple:
        worker.process.join(timeout=1.0)
        code, pid = worker.process.exitcode, worker.process.pid
        if code is not None and code < 0:
            with contextlib.suppress(ValueError):
                return f"worker {worker.index} (pid {pid}) was killed by {signal.Signals(-code).name}", None, None
        return f"worker {worker.index} (pid {pid}) exited with code {code}", None, None

    def _restart(self, worker: _Worker, what: str, env_index: int | None = None, text: str | None = None) -> None:
        """Discard the worker's in-flight work and restart it (fresh envs, a new seed), or raise
        :class:`WorkerError` once it failed more than ``max_restarts`` times."""
        while True:
            self._stop_process(worker)
            worker.restarts += 1
            self.restarts += 1
            limit = self.settings.max_restarts
            if worker.restarts > limit:
                message = (f"collection worker {worker.index} (envs {worker.env_indices.start}.."
                           f"{worker.env_indices.stop - 1}) failed {worker.restarts} times (max_restarts={limit}); "
                           f"last failure: {what}")
                if text:
                    message += f"\n\nTraceback in the worker:\n{text}"
                raise WorkerError(message, worker.index, env_index, text)
            warnings.warn(f"{what}; restarting it ({worker.restarts}/{limit})", RuntimeWarning, stacklevel=3)
            self._pending[worker.index].clear()  # its chunks: discarded
            self._start(worker)
            failure = self._await_ready(worker)
            if failure is None:
                break
            what, env_index, text = failure
        if self._rows is not None:
            worker.conn.send(("rollout_buffers", self._rows[:, worker.columns], self._last[worker.columns]))
        seed = None if self._seed is None else self._seed + worker.env_indices.start + 1_000_003 * worker.restarts
        worker.conn.send(("reset", seed))
        if self._slots is not None:  # off-policy: it streams again, all its slots free
            # Every row delivered so far is stored (the consumer stores each before the next), so
            # the replay's streams of these envs end exactly at the old process's last transition.
            if hasattr(self.agent, "streams_interrupted"):
                self.agent.streams_interrupted(worker.env_indices)
            worker.free_slots = self.settings.chunk_slots
            worker.conn.send(("stream", self._slots[worker.index]))

    def _send(self, worker: _Worker, message: tuple) -> bool:
        """Send a command; False (after restarting the worker) when it is gone."""
        try:
            worker.conn.send(message)
            return True
        except (BrokenPipeError, ConnectionResetError, OSError):
            self._restart(worker, *self._death(worker))
            return False

    def _stop_process(self, worker: _Worker) -> None:
        process = worker.process
        if process is None:
            return
        if process.is_alive():
            process.terminate()
            process.join(timeout=2.0)
            if process.is_alive():
                process.kill()
        process.join(timeout=5.0)
        with contextlib.suppress(Exception):
            worker.conn.close()
        with contextlib.suppress(Exception):
            process.close()
        worker.process = None

    def _poll(self, busy: list[_Worker], timeout: float = 1.0) -> list[tuple[_Worker, tuple]]:
        """Messages of the ``busy`` workers, in arrival order; a worker that died, raised or made no
        env step for ``stall_timeout`` seconds gives a ``("failed", what, env_index, traceback)``."""
        handles: dict[Any, _Worker] = {}
        for worker in busy:
            handles[worker.conn] = worker
            handles[worker.process.sentinel] = worker
        out, failed = [], set()
        for handle in wait(list(handles), timeout=timeout):
            worker = handles[handle]
            if handle is worker.conn:
                while worker.index not in failed and worker.conn.poll():
                    message = self._receive(worker)
                    out.append((worker, message))
                    if message[0] == "failed":
                        failed.add(worker.index)
        for worker in busy:  # exited without a word (killed)
            if worker.index not in failed and not worker.process.is_alive() and not worker.conn.poll():
                out.append((worker, ("failed", *self._death(worker))))
                failed.add(worker.index)
        now = time.monotonic()
        for worker in busy:
            beat = int(self.heartbeat[worker.index])
            if beat != worker.last_beat:
                worker.last_beat, worker.last_progress = beat, now
            elif worker.index not in failed and now - worker.last_progress > self.settings.stall_timeout:
                what = f"worker {worker.index} made no env step for {self.settings.stall_timeout:.0f} s (hung)"
                out.append((worker, ("failed", what, None, None)))
        return out

    # ------------------------------------------------------------------ collector interface
    def reset(self, seed: int | None = None) -> None:
        """Reset every env (env ``i`` gets ``seed + i``, as in-process)."""
        self._seed = seed
        for worker in self.workers:
            self._send(worker, ("reset", None if seed is None else seed + worker.env_indices.start))

    def _publish(self, force: bool = True) -> None:
        now = time.monotonic()
        if force or now - self._last_publish >= self.settings.weight_sync_interval:
            self._last_publish = now
            self.weights.publish(self.agent, float(getattr(self.agent, "progress", 0.0)))

    def collect_rollout(self, n_steps: int) -> tuple[TensorDict, Any]:
        """On-policy: every worker collects ``n_steps`` steps with the current weights.

        :param n_steps: steps per env.
        :return: ``(rows, last)``: rows ``[n_steps, num_envs]`` (shared memory, overwritten by the
            next call) and the observations ``[num_envs]`` after the last row.
        """
        if self._rows is None or self._rows.shape[0] != n_steps:
            self._allocate_rollout(n_steps)
        self._publish()
        version = self.weights.version
        todo = {worker.index for worker in self.workers}
        for worker in self.workers:
            while not self._send(worker, ("rollout",)):
                pass
        while todo:
            for worker, message in self._poll([self.workers[i] for i in todo]):
                if message[0] == "rollout":
                    if message[1] != version:
                        raise RuntimeError(f"worker {worker.index} collected with weights {message[1]}, not {version}")
                    self.record_episodes(message[2], message[3])
                    todo.discard(worker.index)
                elif message[0] == "failed":  # its part of the rollout is discarded and redone
                    self._restart(worker, *message[1:])
                    while not self._send(worker, ("rollout",)):
                        pass
        self.steps += n_steps * self.num_envs
        return self._rows, self._last

    def _allocate_rollout(self, n_steps: int) -> None:
        template = self.template.exclude(*ROLLOUT_SKIPPED_KEYS)
        self._rows = template.unsqueeze(0).expand(n_steps, self.num_envs).clone().zero_().share_memory_()
        self._last = self.template.get(("next", "observation")).clone().share_memory_()
        for worker in self.workers:
            worker.conn.send(("rollout_buffers", self._rows[:, worker.columns], self._last[worker.columns]))

    def transitions(self, vector_steps: int) -> Iterator[TensorDict]:
        """Off-policy: at least ``vector_steps * num_envs`` env steps, streamed by the workers, as
        ``[num_envs]`` steps holding the next chunk row of every worker that has one waiting
        (``valid`` is False for the others' envs). Each yielded step is overwritten by the next:
        store it first.

        :param vector_steps: how many steps of all envs to deliver (the agent's ``train_freq``).
        """
        if self._slots is None:
            self._start_streaming()
        else:
            self._publish(force=False)
        wanted, delivered = vector_steps * self.num_envs, 0
        valid = self._staging.get("valid")
        self._lags = []
        while delivered < wanted:
            self._receive_chunks(block=not any(self._pending))
            valid.zero_()
            for worker, pending in zip(self.workers, self._pending):
                if not pending:
                    continue
                generation, slot, row, updates = pending[0]
                for dst, src in self._copies[worker.index]:  # chunk row -> the worker's columns
                    dst.copy_(src[slot, row])
                delivered += len(worker.env_indices)
                self.steps += len(worker.env_indices)
                self._lags.append(int(self.agent.num_updates) - updates)
                if row + 1 < self._slots[worker.index].shape[1]:
                    pending[0] = (generation, slot, row + 1, updates)
                else:
                    pending.popleft()
                    if generation == worker.generation and self._send(worker, ("free", slot)):
                        worker.free_slots += 1
            yield self._staging

    def _start_streaming(self) -> None:
        chunk = self.settings.chunk_steps or int(getattr(self.agent.hp, "train_freq", None) or 1)
        keys = list(self.template.keys(include_nested=True, leaves_only=True))
        self._staging = self.template.clone()
        self._slots, self._copies = [], []
        for worker in self.workers:
            k = len(worker.env_indices)
            slots = self.template[:k].unsqueeze(0).unsqueeze(0).expand(self.settings.chunk_slots, chunk, k)
            slots = slots.clone().zero_().share_memory_()
            self._slots.append(slots)
            self._copies.append([(self._staging.get(key)[worker.columns], slots.get(key)) for key in keys])
        self._publish()
        for worker in self.workers:
            worker.free_slots = self.settings.chunk_slots
            self._send(worker, ("stream", self._slots[worker.index]))

    def _receive_chunks(self, block: bool) -> None:
        """Take in the chunks the workers announced (waiting for one when ``block``)."""
        busy = [w for w in self.workers if w.free_slots > 0]
        for worker, message in self._poll(busy or self.workers, timeout=1.0 if block else 0.0):
            if message[0] == "chunk":
                _, slot, updates, returns, lengths = message
                worker.free_slots -= 1
                self.record_episodes(returns, lengths)
                self._pending[worker.index].append((worker.generation, slot, 0, updates))
            elif message[0] == "failed":  # its undelivered chunks are dropped; it streams anew
                self._restart(worker, *message[1:])

    def metrics(self) -> dict[str, float]:
        """Collection metrics for the loop's log: worker restarts so far, and (off-policy) the
        policy lag of the transitions delivered in the last iteration: how many learner updates
        older than the learner's current weights the acting weights were (mean and max)."""
        out = {"collect/worker_restarts": float(self.restarts)}
        if self._lags:
            out["collect/policy_lag"] = float(np.mean(self._lags))
            out["collect/policy_lag_max"] = float(np.max(self._lags))
        return out

    def close(self) -> None:
        """Stop every worker (politely, then by force) and drop the shared buffers."""
        if self._closed:
            return
        self._closed = True
        for worker in self.workers:
            if worker.process is not None and worker.conn is not None:
                with contextlib.suppress(Exception):
                    worker.conn.send(("close",))
        deadline = time.monotonic() + 5.0
        for worker in self.workers:
            if worker.process is not None:
                worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            self._stop_process(worker)
        self._rows = self._last = self._slots = self._staging = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
