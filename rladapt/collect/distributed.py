"""Collection over the ranks of a torch.distributed group (gloo backend), started with ``torchrun``.

Every rank runs the same script, which calls ``agent.learn(env, steps, workers="distributed")``::

    torchrun --nproc-per-node 3 --master-addr 127.0.0.1 --master-port 29511 examples/distributed_torchrun.py

Rank 0 learns: its ``learn`` runs the ordinary loop over a :class:`DistributedCollector`. Every other
rank collects: its ``learn`` calls :func:`serve`, which steps that rank's share of the ``num_envs``
envs with the same :class:`~rladapt.collect.remote.EnvRunner` as a worker process (its own vector
env, a CPU copy of the agent acting itself) until rank 0 is done, then loads the final weights into
the rank's agent and returns. Each rank builds its envs from what its own script passed to
``learn`` (nothing is pickled, so an env class defined in the script keeps its source lines in
tracebacks). Beyond one machine the same script runs under ``torchrun --nnodes N``.

One ``collect(agent, T)``, all synchronous, for every agent (policy lag 0):

1. rank 0 broadcasts a command (int64 ``[op, steps, seed given, seed]`` plus float64
   ``[num_timesteps, progress]``), then the weights: every tensor of the agent's state packed in
   one byte buffer (:class:`~rladapt.collect.remote.FlatState`), one ``broadcast``;
2. each collector rank collects ``T`` vector steps into its own batch (:mod:`rladapt.collect.batch`)
   and sends it as one consolidated TensorDict (``TensorDict.isend(0, consolidated=True)``: the
   batch's base tensors for the rank's envs, finished episodes, and a status with the traceback
   text if an env raised);
3. rank 0 receives every rank's result into a consolidated TensorDict of the same structure
   (``irecv(consolidated=True)``), each within ``timeout`` seconds, and writes it into the rank's
   columns of its ``[T, num_envs]`` batch.

Faults: an env exception on a collector rank is sent to rank 0, which raises
:class:`~rladapt.collect.remote.WorkerError` with that rank, the env index and the traceback; a rank
that dies or stays silent for ``timeout`` seconds makes rank 0 raise a ``WorkerError`` naming it
(rank 0's ``close`` still tells the others to stop). Restarting whole groups is ``torchrun``'s job
(``--max-restarts``). Endpoints: when ``MASTER_ADDR`` is a loopback address (or unset: it is then
set to 127.0.0.1), gloo's own sockets are bound to the loopback interface (``GLOO_SOCKET_IFNAME``);
give a routable ``MASTER_ADDR`` (and, if needed, ``GLOO_SOCKET_IFNAME``) to span machines. The
rendezvous store is torchrun's.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from tensordict import TensorDict, TensorDictBase

from rladapt.protocols import CollectingAgent
from rladapt.collect.base import EpisodeStats
from rladapt.collect.batch import BatchLayout, BatchStorage
from rladapt.collect.remote import (
    AgentBlueprint,
    EnvBlueprint,
    EnvRunner,
    FlatState,
    WorkerError,
    agent_state,
    derived_seed,
    describe_failure,
    split_envs,
)

RESET, COLLECT, STOP = 1, 2, 4
#: Bytes of a collector rank's error report (traceback text, truncated from the front).
ERROR_BYTES = 16_384
LOOPBACK_ADDRESSES = ("127.0.0.1", "localhost", "::1")
_created_group = False


def rank() -> int:
    """This process's rank under ``torchrun`` (0 without it)."""
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))


def is_learner() -> bool:
    """True on rank 0 (and outside ``torchrun``)."""
    return rank() == 0


def is_collector_rank() -> bool:
    """True on the ranks > 0 of a ``torchrun`` group: they collect for rank 0."""
    return rank() > 0


def _loopback_interface() -> str:
    for _, name in socket.if_nameindex():
        if name.startswith("lo"):
            return name
    return "lo"


def init_group(timeout: float = 300.0) -> None:
    """Join the torch.distributed group of this ``torchrun`` launch (gloo backend), unless joined.
    The group stays for the life of the process (several ``learn`` calls reuse it; re-creating a
    group on torchrun's store could meet the old group's addresses) and is left at exit.

    :param timeout: seconds collective operations may wait before failing.
    """
    global _created_group
    if dist.is_initialized():
        return
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise RuntimeError(
            "workers='distributed' needs the ranks of a torchrun launch, e.g. "
            "torchrun --nproc-per-node 3 --master-addr 127.0.0.1 --master-port 29511 train.py "
            "(1 learner + 2 collectors); on one machine, workers=N (processes) needs no torchrun"
        )
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    if os.environ["MASTER_ADDR"] in LOOPBACK_ADDRESSES:  # no address given: stay on loopback
        os.environ.setdefault("GLOO_SOCKET_IFNAME", _loopback_interface())
    dist.init_process_group("gloo", timeout=timedelta(seconds=timeout))
    _created_group = True
    atexit.register(_close_group)


def _close_group() -> None:
    global _created_group
    if _created_group and dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()
    _created_group = False


def _result_template(storage: BatchStorage) -> TensorDict:
    """What a collector rank sends back, before consolidation (same structure on both sides)."""
    capacity = storage.steps * storage.num_envs  # at most one finished episode per env step
    return TensorDict({
        "plus": storage.plus,
        "rows": storage.rows,
        "episode_return": torch.zeros(capacity, dtype=torch.float64),
        "episode_length": torch.zeros(capacity, dtype=torch.int64),
        "episode_count": torch.zeros(1, dtype=torch.int64),
        "status": torch.zeros(1, dtype=torch.int64),  # 0: ok, 1: an env or the rank raised
        "env_index": torch.full((1,), -1, dtype=torch.int64),
        "error": torch.zeros(ERROR_BYTES, dtype=torch.uint8),  # UTF-8: what happened, then the traceback
    }, batch_size=[]).consolidate()


class DistributedCollector(EpisodeStats):
    """Rank 0's collector: the ranks 1..W-1 of the torch.distributed group act and step; ``collect``
    returns their batches side by side, collected with the current weights.

    :param agent: the learner's agent (set up for the adapted env's spaces).
    :param num_envs: envs over all collector ranks.
    :param timeout: seconds to wait for a collector rank's result before giving up on it.
    """

    def __init__(self, agent: CollectingAgent, num_envs: int, timeout: float = 300.0) -> None:
        init_group()
        if dist.get_rank() != 0:
            raise RuntimeError("DistributedCollector runs on rank 0; the other ranks call serve()")
        world = dist.get_world_size()
        if world < 2:
            raise RuntimeError("workers='distributed' needs at least 2 ranks (1 learner + collectors)")
        super().__init__(stats_window=100)
        self.agent, self.num_envs, self.timeout = agent, num_envs, timeout
        self.observation_space, self.action_space = agent.observation_space, agent.action_space
        self.parts = split_envs(num_envs, world - 1)
        self.layout = BatchLayout.of(agent)
        self.state = FlatState(agent_state(agent))
        self.command = torch.zeros(4, dtype=torch.int64)
        self.meta = torch.zeros(2, dtype=torch.float64)
        self._results: dict[int, list[TensorDict]] = {}
        self._batches: dict[int, BatchStorage] = {}
        self._closed = False

    def _send_command(self, op: int, steps: int = 0, seed: int | None = None, weights: bool = False) -> None:
        self.command[:] = torch.tensor([op, steps, seed is not None, seed or 0])
        self.meta[0], self.meta[1] = float(self.agent.num_timesteps), float(self.agent.progress)
        try:
            dist.broadcast(self.command, src=0)
            dist.broadcast(self.meta, src=0)
            if weights:
                self.state.copy_from(list(agent_state(self.agent).values()))
                dist.broadcast(self.state.buffer, src=0)
        except RuntimeError as error:
            raise WorkerError(f"a collector rank is gone: broadcast failed ({error})") from error

    def _gather(self, steps: int) -> list[TensorDict]:
        if steps not in self._results:
            self._results[steps] = [_result_template(BatchStorage(self.layout, steps, len(r))) for r in self.parts]
        results = self._results[steps]
        works = [res.irecv(src=i + 1, consolidated=True, return_premature=True)[0] for i, res in enumerate(results)]
        for i, work in enumerate(works):
            try:
                work.wait(timeout=timedelta(seconds=self.timeout))
            except RuntimeError as error:
                raise WorkerError(f"collector rank {i + 1} sent no result within {self.timeout:.0f} s or is gone: {error}",
                                  worker=i + 1) from error
        for i, res in enumerate(results):
            if int(res["status"][0]):
                what, _, text = bytes(res["error"].numpy()).rstrip(b"\0").decode("utf-8", "replace").partition("\n")
                env_index = int(res["env_index"][0])
                raise WorkerError(f"{what}\n\nTraceback on the rank:\n{text}", worker=i + 1,
                                  env_index=env_index if env_index >= 0 else None, worker_traceback=text)
            count = int(res["episode_count"][0])
            self.record_episodes(res["episode_return"][:count].tolist(), res["episode_length"][:count].tolist(),
                                 self.steps + steps * self.num_envs)
        return results

    def reset(self, seed: int | None = None) -> None:
        """Reset every env on every rank (env ``i`` gets ``seed + i``)."""
        self._send_command(RESET, seed=seed)

    def collect(self, agent: CollectingAgent, vector_steps: int) -> TensorDictBase:
        """Every collector rank collects ``vector_steps`` steps with the current weights.

        :param agent: the learner's agent (the one given at construction): its weights are broadcast.
        :param vector_steps: rows ``T`` of the batch.
        :return: the ``[T, num_envs]`` batch (overwritten by the next ``collect``).
        """
        if agent is not self.agent:
            raise ValueError("a DistributedCollector collects for the agent it was built with")
        batch = self._batches.get(vector_steps)
        if batch is None:
            batch = self._batches[vector_steps] = BatchStorage(self.layout, vector_steps, self.num_envs)
        self._send_command(COLLECT, vector_steps, weights=True)
        for part, res in zip(self.parts, self._gather(vector_steps)):
            cols = slice(part.start, part.stop)
            batch.plus[:, cols] = res["plus"]
            batch.rows[:, cols] = res["rows"]
        self.steps += vector_steps * self.num_envs
        return batch.td

    def metrics(self) -> dict[str, float]:
        """Collection metrics: the policy lag is 0 (every batch uses the current weights)."""
        return {"collect/policy_lag": 0.0}

    def close(self) -> None:
        """Tell the collector ranks to stop (they load the final weights and return from ``learn``)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self._send_command(STOP, weights=True)


def serve(agent: CollectingAgent, source: Any, num_envs: int) -> None:
    """A collector rank's part of ``learn``: step this rank's envs for rank 0 until it says stop,
    then load the final weights into ``agent``.

    :param agent: this rank's agent (set up for the adapted env's spaces, as on rank 0).
    :param source: the run's :class:`~rladapt.collect.envs.EnvSource` (what this rank's script
        passed to ``learn``, used here as it is).
    :param num_envs: envs over all collector ranks.
    """
    init_group()
    me, world = dist.get_rank(), dist.get_world_size()
    envs = split_envs(num_envs, world - 1)[me - 1]
    runner = None
    failure: tuple[str, int] | None = None
    try:
        try:
            runner = EnvRunner(AgentBlueprint.of(agent), EnvBlueprint.of(source, agent, True), envs,
                               derived_seed(agent.config.seed, me))
        except Exception as error:  # reported to rank 0 with the first result
            failure = _failure(error, me)
        layout = BatchLayout.of(agent)
        state = FlatState(agent_state(runner.agent if runner is not None else agent))
        command, meta = torch.zeros(4, dtype=torch.int64), torch.zeros(2, dtype=torch.float64)
        results: dict[int, tuple[BatchStorage, TensorDict]] = {}
        while True:
            dist.broadcast(command, src=0)
            dist.broadcast(meta, src=0)
            op, steps, has_seed, seed = command.tolist()
            if op in (COLLECT, STOP):
                dist.broadcast(state.buffer, src=0)
            if op == STOP:
                state.copy_to(list(agent_state(agent).values()))  # this rank's agent ends trained too
                agent.num_timesteps = int(meta[0])
                return
            if op == RESET:
                if runner is not None and failure is None:
                    try:
                        runner.reset((seed + envs.start) if has_seed else None)
                    except Exception as error:
                        failure = _failure(error, me)
                continue
            if steps not in results:
                storage = BatchStorage(layout, steps, len(envs))
                results[steps] = (storage, _result_template(storage))
            storage, result = results[steps]
            result["status"].zero_()
            if failure is None:
                try:
                    state.copy_to(runner.state)
                    runner.agent.num_timesteps, runner.agent.progress = int(meta[0]), float(meta[1])
                    runner.collect(storage)
                    result["plus"].update_(storage.plus)
                    result["rows"].update_(storage.rows)
                    _episodes(runner, result)
                except Exception as error:
                    failure = _failure(error, me)
            if failure is not None:
                text = failure[0].encode("utf-8")[:ERROR_BYTES]
                result["status"][0], result["env_index"][0] = 1, failure[1]
                result["error"].zero_()
                result["error"][: len(text)] = torch.frombuffer(bytearray(text), dtype=torch.uint8)
            result.isend(dst=0, consolidated=True)
    finally:
        if runner is not None:
            with contextlib.suppress(Exception):
                runner.close()


def _failure(error: BaseException, me: int) -> tuple[str, int]:
    """``(report, env index or -1)``: the report's first line says what happened, the rest is the
    traceback (truncated to ``ERROR_BYTES`` when sent)."""
    what, env_index, text = describe_failure(error, f"collector rank {me}")
    return f"{what}\n{text}", -1 if env_index is None else env_index


def _episodes(runner: EnvRunner, result: TensorDict) -> None:
    returns, lengths = runner.new_episodes()
    result["episode_count"][0] = len(returns)
    if returns:
        result["episode_return"][: len(returns)] = torch.tensor(returns, dtype=torch.float64)
        result["episode_length"][: len(lengths)] = torch.tensor(lengths, dtype=torch.int64)
