"""Evaluation: play episodes with an agent and return the raw returns and lengths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rladapt.checks import positive_int
from rladapt.spec import bind_agent
from rladapt.collect.envs import EnvSource
from rladapt.opponents import bind_learner, opponent_seats, resolve_opponent
from rladapt.types import EvalResult

__all__ = ["evaluate"]


def evaluate(
    agent: Any,
    env: Any,
    episodes: int = 10,
    deterministic: bool = True,
    seed: int | None = None,
    video_dir: str | Path | None = None,
    video_episodes: int | None = None,
    gif: bool = False,
    opponent: Any = None,
) -> EvalResult:
    """``agent.evaluate(env, ...)``: play ``episodes`` episodes and return their raw returns and
    lengths. Returns come from ``RecordEpisodeStatistics`` (innermost in an adapted env), so they
    are the env's own rewards even when training rewards are clipped or scaled.

    :param agent: the agent.
    :param env: the env (adapted here if it is not an ``AutoAdapt`` env), an id or a factory.
    :param episodes: number of episodes.
    :param deterministic: take the most likely action.
    :param seed: seed of the first reset (default: the agent's seed).
    :param video_dir: record the episodes as mp4 files here: the env's own frames (a copy of
        the adapted env rendering ``rgb_array``), ``eval-episode-<i>.mp4``.
    :param video_episodes: record only the first this many episodes (None: all).
    :param gif: also write each recording as an animated GIF.
    :param opponent: turn-based games: play these games against this opponent (``"random"``,
        ``"self"``, an agent, a checkpoint path ... as ``AutoAdapt(opponent=...)`` takes; None:
        the env's own). The result then holds each game's outcome and the learner's seat:
        ``result.rates()`` and ``result.by_seat()`` give win/draw/loss rates.
    """
    if isinstance(env, gym.vector.VectorEnv):
        raise TypeError("evaluate takes a single env (or an id or factory), not a vector env")
    episodes = positive_int("episodes", episodes)
    source = EnvSource(env, agent)
    probe = source.probe
    recorder = None
    seats = None
    try:
        bind_agent(agent, probe.observation_space, probe.action_space, source.family, env=probe)
        masks = bool(agent.spec.masks and source.masks)
        returns, lengths = [], []
        if video_dir is not None:
            from rladapt.logging.video import recording_copy

            count = episodes if video_episodes is None else min(video_episodes, episodes)
            recorder = recording_copy(probe, video_dir, episodes=count, gif=gif)
        play = recorder if recorder is not None else probe
        seats = opponent_seats(play)
        if opponent is not None and seats is None:
            raise ValueError("opponent= applies to turn-based envs (AutoAdapt found no seats to play in this env)")
        outcomes: list[str] = []
        played: list[int] = []
        if seats is not None:
            own_opponents = seats.opponents
            if opponent is not None:
                specs = list(opponent) if isinstance(opponent, (list, tuple)) else [opponent]
                chosen = [resolve_opponent(spec, agent) for spec in specs]
                seats.opponents = chosen * (seats.num_players - 1) if len(chosen) == 1 else chosen
            bind_learner(seats, agent)
        stateful = bool(agent.state_specs())  # a recurrent agent: its state threads through the episode
        with agent.torch_threads():
            obs, info = play.reset(seed=agent.config.seed if seed is None else seed)
            total, length, state = 0.0, 0, None
            while len(returns) < episodes:
                mask = info.get("action_mask") if masks else None
                if stateful:
                    action, state = agent.act(obs, mask, deterministic, state=state)
                else:
                    action = agent.act(obs, mask, deterministic)
                obs, reward, terminated, truncated, info = play.step(action)
                total += float(reward)
                length += 1
                if terminated or truncated:
                    stats = info.get("episode")
                    returns.append(float(stats["r"]) if stats is not None else total)
                    lengths.append(int(stats["l"]) if stats is not None else length)
                    if seats is not None:
                        outcomes.append(info["outcome"])
                        played.append(int(info["seat"]))
                    if len(returns) < episodes:  # no new game after the last (a human would be asked to move)
                        obs, info = play.reset()
                    total, length, state = 0.0, 0, None
        if seats is not None:
            names = ", ".join(dict.fromkeys(o.name for o in seats.opponents))
            return EvalResult(np.asarray(returns, dtype=np.float64), np.asarray(lengths, dtype=np.int64),
                              np.asarray(outcomes), np.asarray(played, dtype=np.int64), names)
    finally:
        if seats is not None:
            seats.opponents = own_opponents
        if recorder is not None:
            recorder.close() if recorder.owns_env else recorder.finish()
        source.close()
    return EvalResult(np.asarray(returns, dtype=np.float64), np.asarray(lengths, dtype=np.int64))
