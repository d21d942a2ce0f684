"""AlphaZero's collector: whole self-play games, in the learner's process or in worker processes.

It offers the collector protocol of :mod:`rladapt.collect.base`, so the training loop, the run
directory, loggers, callbacks and checkpoints treat AlphaZero like every agent. What differs is
what ``collect(agent, games)`` does: it plays ``games`` complete games in which the agent's search
moves for every player (``agent.self_play_game(game)``), and returns every position of them as
one row: ``observation`` (the player to move's view, flattened), ``action_mask`` (its legal
moves), ``search_policy`` (the search's visit distribution) and ``value_target`` (the game's
result for the player to move). ``steps`` counts positions, ``episodes`` games; an episode's
return is the first player's result.

With ``workers=N`` the games are split over N processes (``torch.multiprocessing``, started as
:class:`rladapt.collect.Workers` says). Each builds its own copy of the agent from an
:class:`~rladapt.collect.remote.AgentBlueprint` (its ``game`` setting names the game) and reads
the learner's weights from :class:`~rladapt.collect.workers.SharedWeights` when their version
changed, as the other worker collectors do; the positions come back over the pipe (a game's
positions are a few kilobytes). A worker whose code raises is reported with its traceback. A
worker that dies, or that makes no move for ``Workers.stall_timeout`` seconds while it has games to
play (a hung process: each move it plays ticks a shared heartbeat), is killed and restarted with a
new seed, and its share of the games is played again; after ``Workers.max_restarts`` restarts of
one worker the run stops with a :class:`~rladapt.collect.remote.WorkerError` that says why.
"""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from multiprocessing.connection import Connection, wait
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict

from rladapt.collect.guard import require_main_guard
from rladapt.collect.base import EpisodeStats
from rladapt.collect.remote import AgentBlueprint, WorkerError, agent_state, derived_seed
from rladapt.collect.workers import SharedWeights, Workers
from rladapt.protocols import SelfPlayAgent

__all__ = ["SelfPlayCollector", "positions_batch"]


#: What AlphaZero keeps of a position; an agent's ``keys`` to :class:`SelfPlayCollector` may name others.
POSITION_KEYS = ("observation", "action_mask", "search_policy", "value_target")


def positions_batch(games: list[dict[str, np.ndarray]], keys: tuple[str, ...] = POSITION_KEYS) -> TensorDict:
    """The positions of finished self-play games as one ``[positions, 1]`` TensorDict (``keys`` of each game)."""
    data = {key: torch.as_tensor(np.concatenate([g[key] for g in games])).unsqueeze(1) for key in keys}
    return TensorDict(data, batch_size=[len(data[keys[0]]), 1])


class _Heartbeat:
    """A game whose every move ticks a shared counter, so the learner can tell a slow worker from a hung one."""

    def __init__(self, game: Any, beat: torch.Tensor) -> None:
        self._game, self._beat = game, beat

    def step(self, *args: Any, **kwargs: Any) -> Any:
        self._beat += 1
        return self._game.step(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._game, name)


def _worker_main(index: int, blueprint: AgentBlueprint, seed: int | None, weights: SharedWeights, conn: Connection,
                 heartbeat: torch.Tensor) -> None:
    torch.set_num_threads(1)
    try:
        agent = blueprint.build(seed)
        agent.reseed(seed)  # the copies' own random sources: every worker plays other games
        tensors = list(agent_state(agent).values())
        version = -1
        conn.send(("ready",))
        while True:
            message = conn.recv()
            if message[0] == "close":
                break
            if weights.version != version:
                version, _ = weights.read(agent, tensors)
                agent.weights_changed()
            beat = heartbeat[index:index + 1]
            conn.send(("games", [agent.self_play_game(_Heartbeat(agent.game.spawn(), beat)) for _ in range(message[1])]))
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass
    except BaseException as error:  # report, then exit non-zero
        with contextlib.suppress(Exception):
            conn.send(("error", f"{type(error).__name__}: {error}", traceback.format_exc()))
        os._exit(1)
    os._exit(0)


class SelfPlayCollector(EpisodeStats):
    """Self-play games as batches of positions (see the module docstring).

    :param agent: the learner's agent (bound to its game).
    :param workers: 0 (play in this process), a number of worker processes or a
        :class:`~rladapt.collect.Workers` (its ``count``, ``start_method`` and ``start_timeout``
        are used).
    :param stats_window: how many recent games ``recent_return`` averages over.
    :param keys: the keys of a game (``agent.self_play_game``'s dict, one row per position) batched.
    """

    def __init__(self, agent: SelfPlayAgent, workers: int | Workers = 0, stats_window: int = 100,
                 keys: tuple[str, ...] = POSITION_KEYS) -> None:
        super().__init__(stats_window)
        self.keys = keys
        self.num_envs = 1
        self.observation_space, self.action_space = agent.observation_space, agent.action_space
        self.settings = workers if isinstance(workers, Workers) else (Workers(int(workers)) if workers else None)
        self.seconds_per_game: float | None = None
        self.processes: list[Any] = []
        self.conns: list[Connection] = []
        self.weights: SharedWeights | None = None
        self.restarts: list[int] = []
        if self.settings is not None:
            self._start(agent)

    def _start(self, agent: SelfPlayAgent) -> None:
        settings = self.settings
        require_main_guard(f"self-play with workers={settings.count}")
        self.context = torch.multiprocessing.get_context(settings.start_method)
        self.weights = SharedWeights(agent)
        self.blueprint = AgentBlueprint.of(agent)
        self.seed = agent.config.seed
        self.heartbeat = torch.zeros(settings.count, dtype=torch.int64).share_memory_()
        self.restarts = [0] * settings.count
        for index in range(settings.count):
            process, conn = self._spawn(index)
            self.processes.append(process)
            self.conns.append(conn)
        for index, conn in enumerate(self.conns):
            self._receive(index, conn, "ready", settings.start_timeout)

    def _spawn(self, index: int) -> tuple[Any, Connection]:
        parent, child = self.context.Pipe()
        seed = derived_seed(self.seed, index, self.restarts[index]) if self.restarts[index] else derived_seed(self.seed, index)
        process = self.context.Process(target=_worker_main, args=(index, self.blueprint, seed, self.weights, child,
                                                                   self.heartbeat), daemon=True)
        process.start()
        child.close()
        return process, parent

    def _restart(self, index: int, why: str) -> None:
        """Kill worker ``index`` (dead or hung) and start a new one, within ``max_restarts``."""
        self.restarts[index] += 1
        if self.restarts[index] > self.settings.max_restarts:
            self.close()
            raise WorkerError(f"self-play worker {index} {why}, and was restarted {self.settings.max_restarts} times "
                              f"already (Workers(max_restarts=...))", worker=index)
        process, conn = self.processes[index], self.conns[index]
        with contextlib.suppress(Exception):
            process.kill()
            process.join(timeout=5)
            conn.close()
        self.processes[index], self.conns[index] = self._spawn(index)
        self._receive(index, self.conns[index], "ready", self.settings.start_timeout)

    def _receive(self, index: int, conn: Connection, expected: str, timeout: float | None = None) -> Any:
        if timeout is not None and not conn.poll(timeout):
            self.close()
            raise WorkerError(f"self-play worker {index} did not start within {timeout:.0f} s", worker=index)
        try:
            message = conn.recv()
        except EOFError:
            code = self.processes[index].exitcode
            self.close()
            raise WorkerError(f"self-play worker {index} died (exit code {code})", worker=index) from None
        return self._check(index, message, expected)

    def _check(self, index: int, message: tuple[Any, ...], expected: str) -> Any:
        if message[0] == "error":
            self.close()
            raise WorkerError(f"self-play worker {index} raised {message[1]}", worker=index, worker_traceback=message[2])
        if message[0] != expected:
            raise WorkerError(f"self-play worker {index} sent {message[0]!r}, expected {expected!r}", worker=index)
        return message[1:] if len(message) > 1 else None

    def _play_in_workers(self, games: int) -> list[dict[str, np.ndarray]]:
        """Each worker's share of ``games``; a worker that dies or hangs is restarted and plays its share again."""
        count = len(self.conns)
        pending = {i: games // count + (i < games % count) for i in range(count)}
        pending = {i: share for i, share in pending.items() if share}
        progress: dict[int, tuple[int, float]] = {}

        def send(index: int) -> None:
            self.conns[index].send(("play", pending[index]))
            progress[index] = (int(self.heartbeat[index]), time.monotonic())

        for index in pending:
            send(index)
        played: dict[int, list] = {}
        while pending:
            ready = wait([self.conns[i] for i in pending], timeout=0.5)
            for index in list(pending):
                conn = self.conns[index]
                if conn in ready:
                    try:
                        message = conn.recv()
                    except (EOFError, OSError):
                        self._restart(index, f"died (exit code {self.processes[index].exitcode})")
                        send(index)
                        continue
                    played[index] = self._check(index, message, "games")[0]
                    del pending[index]
                    continue
                beat, since = progress[index]
                now = time.monotonic()
                if int(self.heartbeat[index]) != beat:
                    progress[index] = (int(self.heartbeat[index]), now)
                elif not self.processes[index].is_alive():
                    self._restart(index, f"died (exit code {self.processes[index].exitcode})")
                    send(index)
                elif now - since > self.settings.stall_timeout:
                    self._restart(index, f"made no move for {self.settings.stall_timeout:.0f} s (hung)")
                    send(index)
        return [game for index in sorted(played) for game in played[index]]

    def reset(self, seed: int | None = None) -> None:
        """Nothing to reset: every game starts from the game's starting position."""

    def collect(self, agent: SelfPlayAgent, games: int) -> TensorDict:
        """Play ``games`` self-play games with the agent's current weights; their positions."""
        start = time.perf_counter()
        if self.weights is None:
            played = [agent.self_play_game(agent.game.spawn()) for _ in range(games)]
        else:
            self.weights.publish(agent, agent.progress)
            played = self._play_in_workers(games)
        self.seconds_per_game = (time.perf_counter() - start) / max(1, games)
        lengths = [len(g[self.keys[0]]) for g in played]
        self.steps += sum(lengths)
        self.record_episodes([float(g["outcome"][0]) for g in played], lengths)
        return positions_batch(played, self.keys)

    def metrics(self) -> dict[str, float]:
        out = {} if self.seconds_per_game is None else {"selfplay/seconds_per_game": self.seconds_per_game}
        if self.settings is not None:
            out["selfplay/worker_restarts"] = float(sum(self.restarts))
        return out

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(Exception):
                conn.send(("close",))
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
        for conn in self.conns:
            with contextlib.suppress(Exception):
                conn.close()
        self.processes, self.conns = [], []
