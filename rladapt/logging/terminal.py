"""The terminal view: watch an agent play, step by step, with what it thinks of every action.

Each step prints the env's own text render (``render="ansi"``), then the agent's view: the value
(``Q``) or probability (``P``) of every action, by name where the env names its actions, the
chosen one marked with ``->`` and invalid actions shown as ``masked``; then the reward and
whether the episode ended::

    episode 1, step 1
    . . . G
    . # . P
    A . . .
         action     Q
      -> up     +0.708
         right  +0.655
         down   +0.611
         left   +0.655
    reward -0.040   return -0.040   terminated no   truncated no

Agents describe their view through ``Agent.action_values(obs, mask)`` (``None``: the agent has no
per-action view, and only the action is printed).
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, Sequence, TextIO

import gymnasium as gym
import numpy as np

if TYPE_CHECKING:
    from rladapt.agents.base import Agent, EvalResult

__all__ = ["action_names", "format_action_values", "play"]

#: Column titles for the kinds of ``Agent.action_values``.
KIND_TITLES = {"q": "Q", "prob": "P"}
_BAR_WIDTH = 20


def action_names(env: gym.Env, n: int) -> list[str]:
    """Names of the ``n`` actions of ``env``: ``unwrapped.action_names`` (rladapt's envs),
    ``get_action_meanings()`` (Atari), else the indices. Names are used only when their count
    matches the adapted action space (a discretised or flattened action space has no names)."""
    base = env.unwrapped
    names = getattr(base, "action_names", None)
    if names is None and callable(getattr(base, "get_action_meanings", None)):
        try:
            names = base.get_action_meanings()
        except Exception:  # noqa: BLE001 - names are a nicety, never an error
            names = None
    if names is not None and len(names) == n:
        return [str(name) for name in names]
    return [str(i) for i in range(n)]


def format_action_values(
    values: np.ndarray,
    kind: str,
    chosen: int,
    names: Sequence[str],
    mask: np.ndarray | None = None,
) -> str:
    """The agent's view of one step as text: one line per action, the chosen one marked ``->``.

    :param values: one value (``kind="q"``) or probability (``kind="prob"``) per action.
    :param kind: ``"q"`` or ``"prob"`` (any other kind is shown under its own name).
    :param chosen: index of the action taken.
    :param names: one name per action.
    :param mask: valid-action mask (False: shown as ``masked``), or None.
    """
    width = max(6, *(len(name) for name in names))
    lines = [f"     {'action':<{width}}  {KIND_TITLES.get(kind, kind)}"]
    for i, (name, value) in enumerate(zip(names, np.asarray(values, dtype=np.float64))):
        marker = "  ->" if i == chosen else "    "
        if mask is not None and not mask[i]:
            shown = "masked"
        elif kind == "prob":
            shown = f"{value:.3f}  {'#' * int(round(value * _BAR_WIDTH))}"
        else:
            shown = f"{value:+.3f}"
        lines.append(f"{marker} {name:<{width}}  {shown}".rstrip())
    return "\n".join(lines)


def _describe_observation(obs: Any) -> str:
    if isinstance(obs, dict):
        return "{" + ", ".join(f"{k}: {_describe_observation(v)}" for k, v in obs.items()) + "}"
    array = np.asarray(obs)
    if array.size > 16:
        return f"{array.dtype}{list(array.shape)}"
    return np.array2string(array, precision=3, suppress_small=True)


def _viewing_env(agent: Agent, env: Any, render: str | None) -> tuple[gym.Env, bool]:
    """``(adapted env, made here)``: ``env`` adapted for ``agent``, rebuilt from its spec with
    ``render_mode=render`` when it renders otherwise and can render that way."""
    made = not isinstance(env, gym.Env)
    if callable(env) and not isinstance(env, (gym.Env, str)):
        env = env()
    adapted = agent._adapt(env)
    if render is None or adapted.render_mode == render:
        return adapted, made
    spec = adapted.spec
    if render in adapted.unwrapped.metadata.get("render_modes", []) and spec is not None and spec.entry_point is not None:
        if made:
            adapted.close()
        return gym.make(spec, render_mode=render), True
    return adapted, made


def play(
    agent: Agent,
    env: Any,
    episodes: int = 1,
    render: str | None = "ansi",
    deterministic: bool = True,
    seed: int | None = None,
    delay: float = 0.0,
    max_steps: int | None = None,
    file: TextIO | None = None,
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
    :return: the raw returns and lengths of the episodes.
    """
    from rladapt.agents.base import EvalResult

    out = file if file is not None else sys.stdout
    view, made_here = _viewing_env(agent, env, render)
    agent.setup(view.observation_space, view.action_space)
    masks = bool(view.metadata.get("action_mask"))
    n = int(view.action_space.n) if isinstance(view.action_space, gym.spaces.Discrete) else None
    names = action_names(view, n) if n is not None else []
    shows_text = render == "ansi" and view.render_mode == "ansi"
    returns, lengths = [], []
    try:
        obs, info = view.reset(seed=agent.config.seed if seed is None else seed)
        for episode in range(1, episodes + 1):
            total, length, done = 0.0, 0, False
            while not done:
                length += 1
                print(f"episode {episode}, step {length}", file=out)
                if shows_text:
                    print(str(view.render()).rstrip("\n"), file=out)
                elif render != "human":
                    print(f"observation {_describe_observation(obs)}", file=out)
                mask = np.asarray(info["action_mask"], dtype=bool) if masks and "action_mask" in info else None
                action = agent.act(obs, mask if agent.spec.masks else None, deterministic)
                view_values = agent.action_values(obs, mask if agent.spec.masks else None)
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
            print(f"episode {episode} ended after {length} steps: return {raw:+.3f}\n", file=out)
            if episode < episodes:
                obs, info = view.reset()
    finally:
        if made_here:
            view.close()
    return EvalResult(np.asarray(returns, dtype=np.float64), np.asarray(lengths, dtype=np.int64))
