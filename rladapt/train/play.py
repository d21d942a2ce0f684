"""Play in the terminal: each step the env's text render and the agent's view of every action
(formatted by :mod:`rladapt.logging.terminal`), then the reward and whether the episode ended."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import gymnasium as gym
import numpy as np

from rladapt.spec import bind_agent
from rladapt.collect.envs import adapt_for
from rladapt.logging.terminal import action_names, board_text, describe_observation, format_action_values
from rladapt.opponents import HumanOpponent, bind_learner, opponent_seats
from rladapt.types import EvalResult

__all__ = ["play"]


def _viewing_env(agent: Any, env: Any, render: str | None) -> tuple[gym.Env, bool]:
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
    agent: Any,
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
    :param max_steps: stop an episode after this many steps (None: play to the end).
    :param file: where to print (default: standard output).
    :param human_seat: turn-based games of two players: you play this seat (0 moves first) at
        the terminal against the agent: the board, your legal moves by number and name and the
        agent's view of each of them, then your move read from ``input`` (a number or a name;
        anything else is refused with the reason and asked again).
    :param input: where a human's moves are read (default: standard input).
    :return: the raw returns and lengths of the episodes (the agent's; with outcomes and seats
        in turn-based games).
    """
    out = file if file is not None else sys.stdout
    view, made_here = _viewing_env(agent, env, render)
    bind_agent(agent, view.observation_space, view.action_space, getattr(view, "family", None), env=view)
    seats = opponent_seats(view)
    if human_seat is not None:
        if seats is None:
            raise ValueError("human_seat applies to turn-based games; AutoAdapt found no seats in this env")
        if seats.num_players != 2 or human_seat not in (0, 1):
            raise ValueError(f"human_seat is 0 or 1 in a two-player game; this one has {seats.num_players} seats, got {human_seat!r}")
        own = (seats.opponents, seats.fixed_seat)
        seats.opponents, seats.fixed_seat = [HumanOpponent(input, out, advisor=agent)], 1 - human_seat
    if seats is not None:
        bind_learner(seats, agent)
    try:
        return _play(agent, view, made_here, episodes, render, deterministic, seed, delay, max_steps, out, seats)
    finally:
        if human_seat is not None:
            seats.opponents, seats.fixed_seat = own


def _play(agent: Any, view: gym.Env, made_here: bool, episodes: int, render: str | None, deterministic: bool,
          seed: int | None, delay: float, max_steps: int | None, out: TextIO, seats: Any) -> EvalResult:
    masks = bool(view.metadata.get("action_mask"))
    n = int(view.action_space.n) if isinstance(view.action_space, gym.spaces.Discrete) else None
    names = action_names(view, n) if n is not None else []
    shows_text = render == "ansi" and view.render_mode == "ansi"
    returns, lengths = [], []
    outcomes: list[str] = []
    played: list[int] = []
    stateful = bool(agent.state_specs())  # a recurrent agent: its state threads through the episode
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
                agent_mask = mask if agent.spec.masks else None
                if stateful:  # the view of the state this step acts from, then the step
                    view_values = agent.action_values(obs, agent_mask, state=state)
                    action, state = agent.act(obs, agent_mask, deterministic, state=state)
                else:
                    action = agent.act(obs, agent_mask, deterministic)
                    view_values = agent.action_values(obs, agent_mask)
                if view_values is not None and n is not None:
                    values, kind = view_values
                    print(format_action_values(values, kind, int(action) - int(view.action_space.start), names, mask), file=out)
                else:
                    label = names[int(action) - int(view.action_space.start)] if n is not None else np.asarray(action).round(3)
                    print(f"  -> action {label}", file=out)
                obs, reward, terminated, truncated, info = view.step(action)
                total += float(reward)
                done = bool(terminated or truncated) or (max_steps is not None and length >= max_steps)
                print(
                    f"reward {float(reward):+.3f}   return {total:+.3f}   terminated {'yes' if terminated else 'no'}"
                    f"   truncated {'yes' if truncated else 'no'}",
                    file=out,
                )
                if delay:
                    out.flush()
                    time.sleep(delay)
            stats = info.get("episode")
            raw = float(stats["r"]) if stats is not None and (terminated or truncated) else total
            returns.append(raw)
            lengths.append(length)
            if shows_text:
                print(str(view.render()).rstrip("\n"), file=out)
            elif seats is not None and render != "human":
                print(board_text(view, obs), file=out)
            result = ""
            if seats is not None and "outcome" in info:
                outcomes.append(info["outcome"])
                played.append(int(info["seat"]))
                result = f", {type(agent).__name__} (seat {info['seat']}) {dict(win='won', draw='drew', loss='lost')[info['outcome']]}"
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
