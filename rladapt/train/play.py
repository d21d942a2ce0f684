"""Play in the terminal: each step the env's text render and the agent's view of every action
(formatted by :mod:`rladapt.logging.terminal`), then the reward and whether the episode ended."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import gymnasium as gym
import numpy as np

from rladapt.spec import bind_agent
from rladapt.train.evaluate import episode_step_cap, warn_episode_cut
from rladapt.collect.envs import adapt_for
from rladapt.logging.terminal import board_text, describe_observation
from rladapt.opponents import bind_learner, human_table, opponent_seats, shown_move
from rladapt.wrappers.multiplayer import TURN_KEYS, OpponentSeats
from rladapt.types import EvalResult
from rladapt.protocols import ActingAgent

__all__ = ["play"]


def _viewing_env(agent: ActingAgent, env: Any, render: str | None) -> tuple[gym.Env, bool]:
    """``(adapted env, made here)``: ``env`` adapted for ``agent``, rebuilt from its spec with
    ``render_mode=render`` when it renders otherwise and can render that way."""
    made = not isinstance(env, gym.Env)
    if callable(env) and not isinstance(env, (gym.Env, str)):
        env = env()
    adapted = adapt_for(agent, env)
    if render is None or adapted.render_mode == render:
        return adapted, made
    spec = adapted.spec
    if render in adapted.unwrapped.metadata.get("render_modes", []) and spec is not None and spec.entry_point is not None:
        if made:
            adapted.close()
        return gym.make(spec, render_mode=render), True
    return adapted, made


def play(
    agent: ActingAgent,
    env: Any,
    episodes: int = 1,
    render: str | None = "ansi",
    deterministic: bool = True,
    seed: int | None = None,
    delay: float = 0.0,
    max_steps: int | None = None,
    file: TextIO | None = None,
    human_seat: int | None = None,
    input: TextIO | None = None,
) -> EvalResult:
    """Play ``episodes`` episodes, printing each step (see the module docstring).

    :param agent: the agent.
    :param env: an env id, an env (adapted here if needed) or a factory. When the env cannot
        render in ``render`` mode, its observations are printed instead.
    :param episodes: number of episodes.
    :param render: ``"ansi"`` (print the env's text), ``"human"`` (the env's own window), or None
        (print observations).
    :param deterministic: take the most likely action.
    :param seed: seed of the first reset (default: the agent's seed).
    :param delay: seconds to wait after each step (to watch at a human pace).
    :param max_steps: end an episode after this many steps, on top of the env's own time limit
        (None: ``EPISODE_STEP_CAP``, 100,000, with a warning when an episode reaches it, as in
        :func:`~rladapt.train.evaluate.evaluate`; a game cut there has the outcome ``"unfinished"``).
    :param file: where to print (default: standard output).
    :param human_seat: turn-based games (PettingZoo AEC games, OpenSpiel games through shimmy,
        envs with ``info["current_player"]``): you play this seat (0 moves first) at the terminal and
        the agent plays every other one, whether its env has opponents' seats or the agent moves
        for every player (search agents). Each of your turns shows the board, your legal moves by
        number and name and the agent's view of each, then reads your move from ``input`` (a
        number or a name; anything else is refused with the reason and asked again); each of the
        agent's moves shows the view it chose from (a search agent's one search).
    :param input: where a human's moves are read (default: standard input).
    :return: the raw returns and lengths of the episodes (the agent's; with outcomes and seats
        in turn-based games: with ``human_seat``, the agent's lowest seat).
    """
    out = file if file is not None else sys.stdout
    cap = episode_step_cap(max_steps, "max_steps")  # a bad value is refused before the env is made
    view, made_here = _viewing_env(agent, env, render)
    bind_agent(agent, view.observation_space, view.action_space, getattr(view, "family", None), env=view)
    seats = opponent_seats(view)
    previous = None
    if human_seat is not None:
        if seats is None:  # the agent moves for every player (search agents): seat it, and the person, here
            view, seats = _seat_every_player(agent, view, human_seat, input, out, deterministic, seed)
        else:  # the env's opponents make way for the person and the agent
            previous = seats.seat_players(*_reversed(human_table(agent, human_seat, seats.num_players, input, out, deterministic)))
    if seats is not None:
        bind_learner(seats, agent)
    try:
        return _play(agent, view, made_here, episodes, render, deterministic, seed, delay, cap, max_steps is None, out,
                     seats, human_seat)
    finally:
        if previous is not None:
            seats.seat_players(*previous)


def _reversed(pair: tuple[Any, Any]) -> tuple[Any, Any]:
    """``(seat, opponents)`` -> ``(opponents, seat)``, the order :meth:`OpponentSeats.seat_players` takes."""
    return pair[1], pair[0]


def _seat_every_player(agent: ActingAgent, view: gym.Env, human_seat: int, input: TextIO | None, out: TextIO,
                       deterministic: bool, seed: int | None) -> tuple[gym.Env, Any]:
    """``(env, seats)``: a chain in which the caller moves for every player, inside an
    :class:`~rladapt.wrappers.OpponentSeats` that seats the person at ``human_seat`` and the agent
    at the others (outermost, so a search agent's remembered positions cover every seat's moves)."""
    _, info = view.reset(seed=agent.config.seed if seed is None else seed)
    if not any(key in info for key in TURN_KEYS):
        raise ValueError(f"human_seat applies to turn-based games; this env's info has none of {list(TURN_KEYS)}, "
                         f"so nothing says whose turn it is")
    num_players = int(view.metadata.get("num_players") or info.get("num_players") or 2)
    seat, opponents = human_table(agent, human_seat, num_players, input, out, deterministic)
    seats = OpponentSeats(view, opponents, seat=seat, num_players=num_players, family=getattr(view, "family", "other"))
    return seats, seats


def _play(agent: ActingAgent, view: gym.Env, made_here: bool, episodes: int, render: str | None, deterministic: bool,
          seed: int | None, delay: float, cap: int, warn_at_cap: bool, out: TextIO, seats: Any,
          human_seat: int | None) -> EvalResult:
    masks = bool(view.metadata.get("action_mask"))
    shows_text = render == "ansi" and view.render_mode == "ansi"
    returns, lengths = [], []
    outcomes: list[str] = []
    played: list[int] = []
    try:
        obs, info = view.reset(seed=agent.config.seed if seed is None else seed)
        for episode in range(1, episodes + 1):
            total, length, done, state = 0.0, 0, False, None
            while not done:
                length += 1
                print(f"episode {episode}, step {length}", file=out)
                if shows_text:
                    print(str(view.render()).rstrip("\n"), file=out)
                elif seats is not None and render != "human":
                    print(board_text(view, obs), file=out)
                elif render != "human":
                    print(f"observation {describe_observation(obs)}", file=out)
                mask = np.asarray(info["action_mask"], dtype=bool) if masks and "action_mask" in info else None
                if human_seat is not None:
                    print(f"{type(agent).__name__} moves (seat {seats.to_move}):", file=out)
                action, state = shown_move(agent, obs, mask, deterministic, state, view, out)
                obs, reward, terminated, truncated, info = view.step(action)
                total += float(reward)
                cut = length >= cap and not (terminated or truncated)
                if cut and warn_at_cap:
                    warn_episode_cut("play", episode - 1, cap, "max_steps")
                done = bool(terminated or truncated) or cut
                print(
                    f"reward {float(reward):+.3f}   return {total:+.3f}   terminated {'yes' if terminated else 'no'}"
                    f"   truncated {'yes' if truncated else 'no'}",
                    file=out,
                )
                if delay:
                    out.flush()
                    time.sleep(delay)
            stats = info.get("episode")
            if seats is not None and "returns" in info:  # the seat's own raw return (seated by play or by AutoAdapt)
                raw = float(info["returns"][info["seat"]])
            else:
                raw = float(stats["r"]) if stats is not None and not cut else total
            returns.append(raw)
            lengths.append(length)
            if shows_text:
                print(str(view.render()).rstrip("\n"), file=out)
            elif seats is not None and render != "human":
                print(board_text(view, obs), file=out)
            result = ""
            if seats is not None and ("outcome" in info or cut):
                outcome = "unfinished" if cut else info["outcome"]
                outcomes.append(outcome)
                played.append(int(info["seat"]))
                verb = dict(win="won", draw="drew", loss="lost", unfinished="did not finish")[outcome]
                result = f", {type(agent).__name__} (seat {played[-1]}) {verb}"
            if human_seat is not None and "returns" in info:
                result += "; returns by seat: " + ", ".join(
                    f"{s} ({'you' if s == human_seat else type(agent).__name__}) {r:+.3f}" for s, r in enumerate(info["returns"]))
            print(f"episode {episode} ended after {length} steps: return {raw:+.3f}{result}\n", file=out)
            if episode < episodes:
                obs, info = view.reset()
    finally:
        if made_here:
            view.close()
    if seats is not None and len(outcomes) == len(returns):
        return EvalResult(np.asarray(returns, dtype=np.float64), np.asarray(lengths, dtype=np.int64),
                          np.asarray(outcomes), np.asarray(played, dtype=np.int64),
                          ", ".join(dict.fromkeys(o.name for o in seats.opponents)))
    return EvalResult(np.asarray(returns, dtype=np.float64), np.asarray(lengths, dtype=np.int64))
