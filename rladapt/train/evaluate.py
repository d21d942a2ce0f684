"""Evaluation: play episodes with an agent and return the raw returns and lengths."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rladapt.checks import positive_int
from rladapt.spec import bind_agent
from rladapt.collect.envs import EnvSource
from rladapt.adapt import resolve_opponent
from rladapt.opponents import bind_learner, opponent_seats
from rladapt.types import EvalResult
from rladapt.protocols import ActingAgent

__all__ = ["EPISODE_STEP_CAP", "evaluate"]

#: Steps after which ``evaluate`` ends an episode when not told otherwise: an env without a time
#: limit (CliffWalking, many custom envs) and a deterministic policy that walks into a wall would
#: otherwise never end, and an ``EvalCallback`` would stall the run that called it.
EPISODE_STEP_CAP = 100_000


def episode_step_cap(max_episode_steps: int | None, name: str = "max_episode_steps") -> int:
    """The step at which an episode is cut: ``max_episode_steps`` (checked), or ``EPISODE_STEP_CAP``."""
    return EPISODE_STEP_CAP if max_episode_steps is None else positive_int(name, max_episode_steps)


def warn_episode_cut(caller: str, episode: int, cap: int, option: str = "max_episode_steps") -> None:
    """Say that ``caller`` ended episode ``episode`` at the default cap, and which option chooses it."""
    warnings.warn(f"{caller}: episode {episode} ran {cap:,} steps without ending (the env has no time limit, or a "
                  f"longer one); ended it there. Pass {option}= to choose the limit", stacklevel=3)


def evaluate(
    agent: ActingAgent,
    env: Any,
    episodes: int = 10,
    deterministic: bool = True,
    seed: int | None = None,
    video_dir: str | Path | None = None,
    video_episodes: int | None = None,
    gif: bool = False,
    opponent: Any = None,
    max_episode_steps: int | None = None,
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
    :param max_episode_steps: end an episode (truncated) once it has run this many steps, on top of
        the env's own time limit. None: ``EPISODE_STEP_CAP`` (100,000), with a warning when an
        episode reaches it (its return is then that of the steps played; a game's outcome is
        ``"unfinished"``, in none of the win/draw/loss rates).
    """
    if isinstance(env, gym.vector.VectorEnv):
        raise TypeError("evaluate takes a single env (or an id or factory), not a vector env")
    episodes = positive_int("episodes", episodes)
    cap = episode_step_cap(max_episode_steps)
    source = EnvSource(env, agent)
    probe = source.probe
    if source.kind == "parallel":
        try:
            if video_dir is not None or opponent is not None:
                raise ValueError("video_dir= and opponent= apply to single-agent and turn-based envs; a parallel env "
                                 "is evaluated with every agent acting through its group's policy")
            bind_agent(agent, source.observation_space, source.action_space, source.family, env=probe)
            return evaluate_parallel({group: agent for group in probe.groups}, probe, episodes, deterministic,
                                     agent.config.seed if seed is None else seed, max_episode_steps)
        finally:
            source.close()
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
                cut = length >= cap and not (terminated or truncated)
                if cut and max_episode_steps is None:
                    warn_episode_cut("evaluate", len(returns), cap)
                if terminated or truncated or cut:
                    stats = None if cut else info.get("episode")
                    returns.append(float(stats["r"]) if stats is not None else total)
                    lengths.append(int(stats["l"]) if stats is not None else length)
                    if seats is not None:
                        outcomes.append("unfinished" if cut else info["outcome"])
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


def evaluate_parallel(policies: dict[str, Any], env: Any, episodes: int = 10, deterministic: bool = True,
                      seed: int | None = None, max_episode_steps: int | None = None) -> EvalResult:
    """Play ``episodes`` episodes of an adapted parallel env, each agent acting through its group's
    policy, and return every agent's and group's raw returns (:class:`EvalResult`'s
    ``agent_returns`` and ``group_returns``; ``returns`` is the mean over the agents).

    :param policies: ``{group: agent}`` for every group of ``env`` (agents bound to its spaces).
    :param env: an :class:`~rladapt.wrappers.parallel.AdaptedParallelEnv`.
    :param episodes: number of episodes.
    :param deterministic: take the most likely action.
    :param seed: seed of the first reset.
    :param max_episode_steps: end an episode once it has run this many steps (None:
        ``EPISODE_STEP_CAP``, with a warning when an episode reaches it), as in :func:`evaluate`.
    """
    cap = episode_step_cap(max_episode_steps)
    missing = sorted(set(env.groups) - set(policies))
    if missing:
        raise ValueError(f"no policy for the groups {missing} of this env (policies for {sorted(policies)})")
    by_agent = {agent: policies[group] for agent, group in env.group_by_agent.items()}
    agent_returns: dict[str, list[float]] = {agent: [] for agent in env.possible_agents}
    lengths: list[int] = []
    for episode in range(episodes):
        obs, infos = env.reset(seed=None if seed is None else seed + episode)
        totals = {agent: 0.0 for agent in env.possible_agents}
        states: dict[str, Any] = {}
        length = 0
        while env.agents:
            if length >= cap:  # the env's agents are still playing: the episode is cut here
                if max_episode_steps is None:
                    warn_episode_cut("evaluate", episode, cap)
                break
            actions = {}
            for name in env.agents:
                policy = by_agent[name]
                mask = infos.get(name, {}).get("action_mask") if policy.use_masks else None
                if policy.state_specs():
                    actions[name], states[name] = policy.act(obs[name], mask, deterministic, state=states.get(name))
                else:
                    actions[name] = policy.act(obs[name], mask, deterministic)
            obs, rewards, terminations, truncations, infos = env.step(actions)
            length += 1
            for name, reward in rewards.items():
                totals[name] += float(reward)
                stats = infos.get(name, {}).get("episode")
                if (terminations.get(name) or truncations.get(name)) and stats is not None:
                    totals[name] = float(stats["r"])  # the raw return, before any reward change of the chain
        lengths.append(length)
        for name in env.possible_agents:
            agent_returns[name].append(totals[name])
    per_agent = {name: np.asarray(r, dtype=np.float64) for name, r in agent_returns.items()}
    per_group = {group: np.mean([per_agent[a] for a in members], axis=0) for group, members in env.groups.items()}
    return EvalResult(np.mean(list(per_agent.values()), axis=0), np.asarray(lengths, dtype=np.int64),
                      agent_returns=per_agent, group_returns=per_group)
