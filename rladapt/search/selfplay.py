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
positions are a few kilobytes). A worker that fails is reported with its traceback.
"""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict

from rladapt.collect.guard import require_main_guard
from rladapt.collect.base import EpisodeStats
from rladapt.collect.remote import AgentBlueprint, WorkerError, agent_state, derived_seed
from rladapt.collect.workers import SharedWeights, Workers

__all__ = ["SelfPlayCollector", "positions_batch"]


#: What AlphaZero keeps of a position; an agent's ``keys`` to :class:`SelfPlayCollector` may name others.
POSITION_KEYS = ("observation", "action_mask", "search_policy", "value_target")


def positions_batch(games: list[dict[str, np.ndarray]], keys: tuple[str, ...] = POSITION_KEYS) -> TensorDict:
    """The positions of finished self-play games as one ``[positions, 1]`` TensorDict (``keys`` of each game)."""
    data = {key: torch.as_tensor(np.concatenate([g[key] for g in games])).unsqueeze(1) for key in keys}
    return TensorDict(data, batch_size=[len(data[keys[0]]), 1])


def _worker_main(index: int, blueprint: AgentBlueprint, seed: int | None, weights: SharedWeights, conn: Connection) -> None:
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
            conn.send(("games", [agent.self_play_game(agent.game.spawn()) for _ in range(message[1])]))
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

    def __init__(self, agent: Any, workers: int | Workers = 0, stats_window: int = 100,
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
        if self.settings is not None:
            self._start(agent)

    def _start(self, agent: Any) -> None:
        settings = self.settings
        require_main_guard(f"self-play with workers={settings.count}")
        context = torch.multiprocessing.get_context(settings.start_method)
        self.weights = SharedWeights(agent)
        blueprint = AgentBlueprint.of(agent)
        for index in range(settings.count):
            parent, child = context.Pipe()
            seed = derived_seed(agent.config.seed, index)
            process = context.Process(target=_worker_main, args=(index, blueprint, seed, self.weights, child), daemon=True)
            process.start()
            child.close()
            self.processes.append(process)
            self.conns.append(parent)
        for index, conn in enumerate(self.conns):
            self._receive(index, conn, "ready", settings.start_timeout)

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
        if message[0] == "error":
            self.close()
            raise WorkerError(f"self-play worker {index} raised {message[1]}", worker=index, worker_traceback=message[2])
        if message[0] != expected:
            raise WorkerError(f"self-play worker {index} sent {message[0]!r}, expected {expected!r}", worker=index)
        return message[1:] if len(message) > 1 else None

    def reset(self, seed: int | None = None) -> None:
        """Nothing to reset: every game starts from the game's starting position."""

    def collect(self, agent: Any, games: int) -> TensorDict:
        """Play ``games`` self-play games with the agent's current weights; their positions."""
        start = time.perf_counter()
        if self.weights is None:
            played = [agent.self_play_game(agent.game.spawn()) for _ in range(games)]
        else:
            self.weights.publish(agent, agent.progress)
            shares = [games // len(self.conns) + (i < games % len(self.conns)) for i in range(len(self.conns))]
            for conn, share in zip(self.conns, shares):
                conn.send(("play", share))
            played = []
            for index, (conn, share) in enumerate(zip(self.conns, shares)):
                played.extend(self._receive(index, conn, "games")[0])
        self.seconds_per_game = (time.perf_counter() - start) / max(1, games)
        lengths = [len(g[self.keys[0]]) for g in played]
        self.steps += sum(lengths)
        self.record_episodes([float(g["outcome"][0]) for g in played], lengths)
        return positions_batch(played, self.keys)

    def metrics(self) -> dict[str, float]:
        if self.seconds_per_game is None:
            return {}
        return {"selfplay/seconds_per_game": self.seconds_per_game}

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
