"""Multiprocess collection: worker processes (``torch.multiprocessing``) that act and step on their own.

``agent.learn(env, steps, workers=N)`` splits the ``num_envs`` envs over ``N`` worker processes.
Each worker rebuilds its envs from the run's :class:`~rladapt.collect.remote.EnvBlueprint`, builds a
CPU copy of the agent from its :class:`~rladapt.collect.remote.AgentBlueprint`, and collects with
the same :class:`~rladapt.collect.vector.VectorCollector` loop as in-process collection, writing
straight into shared-memory batches (:mod:`rladapt.collect.batch`). Observations never cross
processes step by step, and the learner's process does no env work at all::

    learner process                                   worker w (envs lo..hi-1)
    ---------------                                   ------------------------
    SharedWeights.publish(agent)  --- shared mem -->  load when the version changed
    "collect" / "free" (pipe)     --------------->    VectorCollector.collect(agent copy, T, out=
    read the batch [T, N]         <-- shared mem ---    its columns lo:hi of the shared batch)
    "collected"/"chunk" + episode <---------------
    stats (pipe)

``collect(agent, T)`` has two ways to run, chosen by what the agent declares, never by its class:

- ``agent.fresh_weights`` True (on-policy: PPO, A2C, REINFORCE ...): synchronous. The learner
  publishes version ``v``, every worker collects ``T`` steps with it into its columns of one shared
  ``[T, N]`` batch, the learner updates. Every batch comes from the current weights.
- ``agent.fresh_weights`` False (off-policy: DQN, SAC, Q-learning ...): streaming. Each worker fills
  ``chunk_slots`` chunk buffers continuously with the newest weights it has seen, the learner copies
  ``T`` rows of every worker into its batch and frees the chunks it has read. ``collect/policy_lag``
  (the learner's ``num_updates`` now minus its ``num_updates`` when a chunk's acting weights were
  published) is logged with its maximum.

Shared memory, allocated once by the learner: the weights (every tensor of ``agent.state_dict()``
packed into one flat byte buffer, :class:`~rladapt.collect.remote.FlatState`, with int64 ``[seq,
version, updates]``, a seqlock, and float64 ``[num_timesteps, progress]``), the batches, and a
``heartbeat`` ``[N]`` int64: each worker's vector-step counter (stall detection).

Faults (DESIGN.md principle 8): the learner waits on the workers' pipes and process sentinels
together, so a worker that dies (killed, or its env raised) is seen at once; a worker that stops
stepping for ``stall_timeout`` seconds is killed. Its part of the batch in progress is discarded,
the worker is restarted (fresh envs, new seed) up to ``max_restarts`` times, then
:class:`~rladapt.collect.remote.WorkerError` stops the run with the worker's traceback. Env
exceptions name the worker and the env index. A restarted worker's first observations carry
``is_init``, so a replay buffer ends those envs' streams there (no n-step window joins the old
episode to the new one). Workers ignore Ctrl-C (the learner shuts them down), exit when the
learner's pipe closes, and get SIGTERM if the learner dies (Linux); shared memory is
file-descriptor backed, freed with the last process that maps it.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import torch
from tensordict import TensorDictBase

from rladapt.protocols import CollectingAgent
from rladapt.collect.guard import require_main_guard
from rladapt.collect.base import EpisodeStats
from rladapt.collect.batch import BatchLayout, BatchStorage
from rladapt.collect.pool import PoolProcess, ProcessPool, serve_child
from rladapt.collect.remote import (
    AgentBlueprint,
    EnvBlueprint,
    EnvRunner,
    FlatState,
    agent_state,
    derived_seed,
    split_envs,
)

__all__ = ["SharedWeights", "WorkerCollector", "Workers"]


# -------------------------------------------------------------------------------------------
# Settings
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
    :param chunk_steps: streaming (agents with ``fresh_weights = False``): vector steps per chunk a
        worker hands over (None: the rows the agent collects per iteration, e.g. ``train_freq``).
    :param chunk_slots: streaming: chunks a worker may have waiting for the learner; bounds the
        policy lag (a worker blocks when all its slots are full).
    :param weight_sync_interval: streaming: publish weights at most every this many seconds
        (0: at every collect). Agents with ``fresh_weights = True`` get the current weights at
        every collect.
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


# -------------------------------------------------------------------------------------------
# Weights: one flat buffer in shared memory, versioned
# -------------------------------------------------------------------------------------------


class SharedWeights:
    """The learner's weights in shared memory, with a version counter (a seqlock, so that a reader
    never sees a half-written state and a dead reader can never block the writer).

    :param agent: the learner's agent (its state defines the layout).
    """

    def __init__(self, agent: CollectingAgent) -> None:
        self.state = FlatState(agent_state(agent), share_memory=True)
        self.counters = torch.zeros(3, dtype=torch.int64).share_memory_()  # [seq, version, updates]
        self.meta = torch.zeros(2, dtype=torch.float64).share_memory_()  # [num_timesteps, progress]

    def publish(self, agent: CollectingAgent, progress: float) -> int:
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

    def read(self, agent: CollectingAgent, tensors: list[torch.Tensor]) -> tuple[int, int]:
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
# The worker process
# -------------------------------------------------------------------------------------------


def _load(runner: EnvRunner, weights: SharedWeights) -> None:
    """Load the published weights into the runner's agent when their version changed."""
    if weights.version != runner.version:
        runner.version, runner.updates = weights.read(runner.agent, runner.state)


def worker_main(
    index: int,
    seed: int | None,
    heartbeat: torch.Tensor,
    conn: Connection,
    agent: AgentBlueprint,
    envs: EnvBlueprint,
    env_indices: range,
    weights: SharedWeights,
    role: Any = None,
) -> None:
    """Entry point of a worker process (a :class:`~rladapt.collect.pool.ProcessPool` child): build,
    then serve the learner's commands until "close". ``heartbeat`` counts its vector steps.

    ``role``: a worker role (see :class:`WorkerCollector`), run on the command ``"role"``."""

    def serve() -> None:
        runner = EnvRunner(agent, envs, env_indices, seed, step_counter=heartbeat)
        try:
            conn.send(("ready",))
            batch: BatchStorage | None = None
            slots: list[BatchStorage] = []
            while True:
                message = conn.recv()
                command = message[0]
                if command == "close":
                    break
                if command == "reset":
                    runner.reset(message[1])
                elif command == "batch":
                    batch = message[1]
                elif command == "slots":
                    slots = message[1]
                elif command == "collect":
                    _load(runner, weights)
                    runner.collect(batch)
                    conn.send(("collected", runner.version, *runner.new_episodes()))
                elif command == "stream":
                    if _stream(runner, slots, weights, conn):
                        break
                elif command == "role":
                    if role.run(index, runner, batch, conn):
                        break
        finally:
            with contextlib.suppress(Exception):
                runner.close()

    serve_child(index, conn, "worker", serve)


def _stream(runner: EnvRunner, slots: list[BatchStorage], weights: SharedWeights, conn: Connection) -> bool:
    """Fill chunk slots continuously (the newest weights at each chunk) and hand each full one to
    the learner; block while every slot waits for the learner. True when told to close. Each
    chunk's message says how long the worker waited for a free slot before it (seconds)."""
    free = deque(range(len(slots)))
    while True:
        waited = time.perf_counter()
        while not free or conn.poll():
            message = conn.recv()
            if message[0] == "free":
                free.append(message[1])
            elif message[0] == "close":
                return True
            elif message[0] == "stop":
                return False
        slot = free.popleft()
        waited = time.perf_counter() - waited
        _load(runner, weights)
        runner.collect(slots[slot])
        conn.send(("chunk", slot, runner.updates, *runner.new_episodes(), waited))


# -------------------------------------------------------------------------------------------
# The learner's side
# -------------------------------------------------------------------------------------------


class _Worker(PoolProcess):
    """The learner's handle on one worker process, with its envs and its streaming state."""

    def __init__(self, index: int, env_indices: range) -> None:
        super().__init__(index)
        self.env_indices = env_indices
        self.free_slots = 0  # streaming: chunk slots the worker may fill
        #: streaming: chunks received and not read to the end: (generation, slot, next row, learner
        #: updates when the chunk's acting weights were published).
        self.pending: deque[tuple[int, int, int, int]] = deque()

    @property
    def columns(self) -> slice:
        return slice(self.env_indices.start, self.env_indices.stop)


class WorkerCollector(EpisodeStats):
    """Collection in worker processes, with the collector protocol of :mod:`rladapt.collect.base`.

    The processes are a :class:`~rladapt.collect.pool.ProcessPool` (``self.pool``): its ``poll``
    gives the workers' messages and detects dead and hung workers, its ``restart`` restarts one,
    after which this collector hands the new process its work again.

    :param agent: the learner's agent (set up for the adapted env's spaces); its recipe goes to
        the workers once, its weights at every ``collect``.
    :param source: the run's :class:`~rladapt.collect.envs.EnvSource` (the envs are rebuilt from it).
    :param num_envs: envs over all workers.
    :param workers: how many processes and the fault-handling settings.
    :param stats_window: how many recent episodes ``recent_return`` averages over.
    :param role: for flows that are not collect-then-update (A3C's gradient-pushing workers): a
        picklable object given to every worker process at its start (so it may hold shared
        tensors and locks), whose ``run(index, runner, batch, conn) -> bool`` each worker runs on
        :meth:`start_role` (again after a restart) with its :class:`EnvRunner` and its columns of
        the shared batch, until the learner's pipe says ``"close"`` (True) or ``"stop"`` (False).
        A subclass defines what the learner's ``collect`` reads from the messages it sends, and
        what :meth:`worker_stopped` releases.
    """

    def __init__(self, agent: CollectingAgent, source: Any, num_envs: int, workers: Workers, stats_window: int = 100,
                 role: Any = None) -> None:
        super().__init__(stats_window)
        require_main_guard(f"learn(..., workers={workers.count})")
        self.agent, self.settings, self.role = agent, workers, role
        #: Whether the workers run the role (restarted workers take it up again).
        self.role_running = False
        # A parallel env's copies are split between the workers whole; the columns are their agent slots.
        per_env = len(source.slot_agents) if getattr(source, "slot_agents", None) else 1
        self.num_envs = num_envs * per_env
        self.observation_space, self.action_space = agent.observation_space, agent.action_space
        self.workers = [_Worker(i, range(r.start * per_env, r.stop * per_env))
                        for i, r in enumerate(split_envs(num_envs, workers.count))]
        self.agent_blueprint = AgentBlueprint.of(agent)
        self.env_blueprint = EnvBlueprint.of(source, agent, workers.fast_atari)
        self.layout = BatchLayout.of(agent)
        self.weights = SharedWeights(agent)
        seed = agent.config.seed
        self.pool = ProcessPool(
            self.workers, worker_main,
            lambda worker: (self.agent_blueprint, self.env_blueprint, worker.env_indices, self.weights, self.role),
            name="worker", start_method=workers.start_method,
            seed_of=lambda index, restarts: derived_seed(seed, index, restarts),
            max_restarts=workers.max_restarts, stall_timeout=workers.stall_timeout,
            start_timeout=workers.start_timeout, progress="env step",
            describe=lambda w: f"collection worker {w.index} (envs {w.env_indices.start}..{w.env_indices.stop - 1})",
            on_stopped=self.worker_stopped, on_restarted=self._resume,
            # a forkserver imports these once; the workers fork from it
            preload=("rladapt.collect.workers", "rladapt.agents", "rladapt.adapt"))
        self._seed: int | None = None
        self._batches: dict[int, BatchStorage] = {}
        #: Synchronous collection and roles: the ``[T, num_envs]`` batch the workers write.
        self.shared: BatchStorage | None = None
        self._slots: list[list[BatchStorage]] | None = None  # streaming: each worker's chunk slots
        self._lags: list[int] = []
        self._actor_wait = 0.0  # streaming: seconds the workers waited for a free chunk slot, all together
        self._stream_start = 0.0
        self._last_publish = -math.inf
        self.pool.start()

    @property
    def fast_atari(self) -> bool:
        """Whether the workers step ale-py's C++ vector env (:mod:`rladapt.collect.atari`)."""
        return self.env_blueprint.atari is not None

    @property
    def restarts(self) -> int:
        """Worker restarts so far, over all workers."""
        return self.pool.restarts

    def worker_stopped(self, worker: _Worker) -> None:
        """Called when a worker's process was stopped (dead, failed or hung), before its restart:
        a subclass releases what the process may have held (nothing here)."""

    def _resume(self, worker: _Worker) -> None:
        """A restarted worker's work again: its columns of the batch, fresh envs, and the stream
        or the role it was running; its unread chunks are discarded."""
        worker.pending.clear()
        worker.free_slots = 0
        if self.shared is not None:
            worker.conn.send(("batch", self.shared.columns(worker.env_indices.start, worker.env_indices.stop)))
        seed = None if self._seed is None else self._seed + worker.env_indices.start + 1_000_003 * worker.restarts
        worker.conn.send(("reset", seed))
        if self._slots is not None:  # streaming: it streams again, all its slots free
            self._begin_stream(worker)
        if self.role_running:
            worker.conn.send(("role",))

    def start_role(self, vector_steps: int) -> None:
        """Give every worker its columns of a shared ``[vector_steps, num_envs]`` batch and start
        the workers' role (the ``role`` given at construction)."""
        if self.role is None:
            raise RuntimeError("start_role needs a WorkerCollector built with a role")
        self.shared = BatchStorage(self.layout, vector_steps, self.num_envs, share_memory=True)
        self.role_running = True
        for worker in self.workers:
            if self.pool.send(worker, ("batch", self.shared.columns(worker.env_indices.start, worker.env_indices.stop))):
                self.pool.send(worker, ("role",))

    # ------------------------------------------------------------------ collector protocol
    def reset(self, seed: int | None = None) -> None:
        """Reset every env (env ``i`` gets ``seed + i``, as in-process)."""
        self._seed = seed
        for worker in self.workers:
            self.pool.send(worker, ("reset", None if seed is None else seed + worker.env_indices.start))

    def _publish(self, force: bool = True) -> None:
        now = time.monotonic()
        if force or now - self._last_publish >= self.settings.weight_sync_interval:
            self._last_publish = now
            self.weights.publish(self.agent, float(self.agent.progress))

    def collect(self, agent: CollectingAgent, vector_steps: int) -> TensorDictBase:
        """``vector_steps`` steps of every env, collected by the workers (module docstring).

        :param agent: the learner's agent (the one given at construction): its weights are published.
        :param vector_steps: rows ``T`` of the batch.
        :return: the ``[T, num_envs]`` batch (overwritten by the next ``collect``).
        """
        if agent is not self.agent:
            raise ValueError("a WorkerCollector collects for the agent it was built with")
        if agent.fresh_weights:
            return self._collect_synchronously(vector_steps)
        return self._collect_streamed(vector_steps)

    def _collect_synchronously(self, vector_steps: int) -> TensorDictBase:
        if self.shared is None or self.shared.steps != vector_steps:
            self.shared = BatchStorage(self.layout, vector_steps, self.num_envs, share_memory=True)
            for worker in self.workers:
                self.pool.send(worker, ("batch", self.shared.columns(worker.env_indices.start, worker.env_indices.stop)))
        self._publish()
        version = self.weights.version
        todo = {worker.index for worker in self.workers}
        for worker in self.workers:
            self._send_collect(worker)
        while todo:
            for worker, message in self.pool.poll([self.workers[i] for i in todo]):
                if message[0] == "collected":
                    if message[1] != version:
                        raise RuntimeError(f"worker {worker.index} collected with weights {message[1]}, not {version}")
                    self.record_episodes(message[2], message[3], self.steps + vector_steps * self.num_envs)
                    todo.discard(worker.index)
                elif message[0] == "failed":  # its part of the batch is discarded and redone
                    self.pool.restart(worker, *message[1:])
                    self._send_collect(worker)
        self.steps += vector_steps * self.num_envs
        return self.shared.td

    def _send_collect(self, worker: PoolProcess) -> None:
        """Give an idle worker its part of the batch; its stall clock starts now, not at its last
        heartbeat (which may be older than ``stall_timeout`` after a long learner update)."""
        while not self.pool.send(worker, ("collect",)):
            pass
        self.pool.mark_busy(worker)

    def _collect_streamed(self, vector_steps: int) -> TensorDictBase:
        if self._slots is None:
            self._start_streaming(vector_steps)
        else:
            self._publish(force=False)
        out = self._batches.get(vector_steps)
        if out is None:
            out = self._batches[vector_steps] = BatchStorage(self.layout, vector_steps, self.num_envs)
        filled = {worker.index: 0 for worker in self.workers}
        self._lags = []
        while any(filled[w.index] < vector_steps for w in self.workers):
            waiting = [w for w in self.workers if filled[w.index] < vector_steps and w.pending]
            for worker in self._receive_chunks(block=not waiting):
                filled[worker.index] = 0  # restarted: its columns start again, from the new process
            for worker in self.workers:
                while filled[worker.index] < vector_steps and worker.pending:
                    filled[worker.index] += self._read_chunk(worker, out, filled[worker.index], vector_steps)
        self.steps += vector_steps * self.num_envs
        return out.td

    def _read_chunk(self, worker: _Worker, out: BatchStorage, row: int, vector_steps: int) -> int:
        """Copy rows of ``worker``'s oldest pending chunk into its columns of ``out`` from ``row``;
        return how many; free the chunk once read to its end."""
        generation, slot, start, updates = worker.pending[0]
        chunk = self._slots[worker.index][slot]
        k = min(vector_steps - row, chunk.steps - start)
        cols = worker.columns
        out.rows[row : row + k, cols] = chunk.rows[start : start + k]
        out.plus[row : row + k + 1, cols] = chunk.plus[start : start + k + 1]
        self._lags.append(int(self.agent.num_updates) - updates)
        if start + k < chunk.steps:
            worker.pending[0] = (generation, slot, start + k, updates)
        else:
            worker.pending.popleft()
            if generation == worker.generation and self.pool.send(worker, ("free", slot)):
                worker.free_slots += 1
        return k

    def _start_streaming(self, vector_steps: int) -> None:
        chunk = self.settings.chunk_steps or vector_steps
        self._slots = [
            [BatchStorage(self.layout, chunk, len(worker.env_indices), share_memory=True) for _ in range(self.settings.chunk_slots)]
            for worker in self.workers
        ]
        self._publish()
        self._stream_start = time.perf_counter()
        for worker in self.workers:
            self._begin_stream(worker)

    def _begin_stream(self, worker: _Worker) -> None:
        worker.free_slots = self.settings.chunk_slots
        worker.pending.clear()
        self.pool.send(worker, ("slots", self._slots[worker.index]))
        self.pool.send(worker, ("stream",))

    def _receive_chunks(self, block: bool) -> list[_Worker]:
        """Take in the chunks the workers announced (waiting for one when ``block``); return the
        workers restarted meanwhile."""
        restarted = []
        busy = [w for w in self.workers if w.free_slots > 0]
        for worker, message in self.pool.poll(busy or self.workers, timeout=1.0 if block else 0.0):
            if message[0] == "chunk":
                _, slot, updates, returns, lengths, waited = message
                self._actor_wait += waited
                worker.free_slots -= 1
                self.record_episodes(returns, lengths)
                worker.pending.append((worker.generation, slot, 0, updates))
            elif message[0] == "failed":  # its unread chunks are dropped; it streams anew
                self.pool.restart(worker, *message[1:])
                restarted.append(worker)
        return restarted

    def metrics(self) -> dict[str, float]:
        """Collection metrics for the loop's log: worker restarts so far, and (streaming) the
        policy lag of the chunks read in the last collect: how many learner updates older than
        the learner's current weights the acting weights were (mean and max), and
        ``collect/actor_busy``: the fraction of the time since streaming began that the workers
        were not waiting for the learner to free a chunk slot (1: the learner never held them up)."""
        out = {"collect/worker_restarts": float(self.restarts)}
        if self._lags:
            out["collect/policy_lag"] = float(np.mean(self._lags))
            out["collect/policy_lag_max"] = float(np.max(self._lags))
        if self._slots is not None:
            elapsed = (time.perf_counter() - self._stream_start) * len(self.workers)
            out["collect/actor_busy"] = max(0.0, 1.0 - self._actor_wait / max(elapsed, 1e-9))
        return out

    def close(self) -> None:
        """Stop every worker (politely, then by force) and drop the shared buffers."""
        self.pool.close()
        self.shared = self._slots = None
        self._batches.clear()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
