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
positions are a few kilobytes). The workers are a :class:`~rladapt.collect.pool.ProcessPool`,
the one the worker collector uses: a worker that raises, dies, or makes no move for
``Workers.stall_timeout`` seconds while it has games to play (a hung process: each move it plays
ticks its heartbeat) is killed and restarted with a new seed, and its share of the games is played
again; after ``Workers.max_restarts`` restarts of one worker the run stops with a
:class:`~rladapt.collect.remote.WorkerError` that says why (with the worker's traceback when it raised).
"""

from __future__ import annotations

import time
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict

from rladapt.collect.guard import require_main_guard
from rladapt.collect.pool import PoolProcess, ProcessPool, serve_child
from rladapt.collect.base import EpisodeStats
from rladapt.collect.remote import AgentBlueprint, WorkerError, agent_state, derived_seed
from rladapt.collect.workers import SharedWeights, Workers
from rladapt.protocols import CollectingAgent, SelfPlayAgent

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


def _worker_main(index: int, seed: int | None, heartbeat: torch.Tensor, conn: Connection, blueprint: AgentBlueprint,
                 weights: SharedWeights) -> None:
    """A self-play worker (a :class:`~rladapt.collect.pool.ProcessPool` child): plays the games it
    is asked for with the newest published weights; every move ticks its heartbeat."""

    def serve() -> None:
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
            conn.send(("games", [agent.self_play_game(_Heartbeat(agent.game.spawn(), heartbeat))
                                 for _ in range(message[1])]))

    serve_child(index, conn, "self-play worker", serve)


class SelfPlayCollector(EpisodeStats):
    """Self-play games as batches of positions (see the module docstring).

    :param agent: the learner's agent (bound to its game).
    :param workers: 0 (play in this process), a number of worker processes or a
        :class:`~rladapt.collect.Workers` (its ``count``, ``start_method``, ``max_restarts``,
        ``stall_timeout`` and ``start_timeout`` are used).
    :param stats_window: how many recent games ``recent_return`` averages over.
    :param keys: the keys of a game (``agent.self_play_game``'s dict, one row per position) batched.
    """

    def __init__(self, agent: SelfPlayAgent, workers: int | Workers = 0, stats_window: int = 100,
                 keys: tuple[str, ...] = POSITION_KEYS) -> None:
        super().__init__(stats_window)
        self.agent, self.keys = agent, keys
        self.num_envs = 1
        self.observation_space, self.action_space = agent.observation_space, agent.action_space
        self.settings = workers if isinstance(workers, Workers) else (Workers(int(workers)) if workers else None)
        self.seconds_per_game: float | None = None
        self.weights: SharedWeights | None = None
        #: The worker processes (None: games are played in this process).
        self.pool: ProcessPool[PoolProcess] | None = None
        if self.settings is not None:
            self._start(agent)

    def _start(self, agent: SelfPlayAgent) -> None:
        settings = self.settings
        require_main_guard(f"self-play with workers={settings.count}")
        self.weights = SharedWeights(agent)
        blueprint = AgentBlueprint.of(agent)
        seed = agent.config.seed
        self.pool = ProcessPool(
            [PoolProcess(i) for i in range(settings.count)], _worker_main, lambda _: (blueprint, self.weights),
            name="self-play worker", start_method=settings.start_method,
            seed_of=lambda index, restarts: derived_seed(seed, index, restarts) if restarts else derived_seed(seed, index),
            max_restarts=settings.max_restarts, stall_timeout=settings.stall_timeout,
            start_timeout=settings.start_timeout, progress="move")
        self.pool.start()

    def _play_in_workers(self, games: int) -> list[dict[str, np.ndarray]]:
        """Each worker's share of ``games``; a worker that dies, raises or hangs is restarted and
        plays its share again."""
        pool = self.pool
        count = len(pool.members)
        shares = {i: games // count + (i < games % count) for i in range(count)}
        pending = {i: share for i, share in shares.items() if share}

        def send(index: int) -> None:
            member = pool.members[index]
            while not pool.send(member, ("play", pending[index])):
                pass  # it was gone, and is restarted: ask the new process
            pool.mark_busy(member)

        for index in pending:
            send(index)
        played: dict[int, list] = {}
        while pending:
            for member, message in pool.poll([pool.members[i] for i in pending], timeout=0.5):
                if member.index not in pending:
                    continue
                if message[0] == "games":
                    played[member.index] = message[1]
                    del pending[member.index]
                elif message[0] == "failed":
                    pool.restart(member, *message[1:])
                    send(member.index)
                else:
                    raise WorkerError(f"self-play worker {member.index} sent {message[0]!r}, expected 'games'",
                                      worker=member.index)
        return [game for index in sorted(played) for game in played[index]]

    def reset(self, seed: int | None = None) -> None:
        """Nothing to reset: every game starts from the game's starting position."""

    def collect(self, agent: CollectingAgent, games: int) -> TensorDict:
        """Play ``games`` self-play games with the agent's current weights; their positions.

        :param agent: the agent the collector was built with.
        :param games: whole games to play.
        """
        if agent is not self.agent:
            raise ValueError("a SelfPlayCollector collects for the agent it was built with")
        agent = self.agent
        start = time.perf_counter()
        if self.pool is None:
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
        if self.pool is not None:
            out["selfplay/worker_restarts"] = float(self.pool.restarts)
        return out

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
