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
per-action view, and only the action is printed). :func:`rladapt.train.play` plays; this module
formats.
"""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np

__all__ = ["action_names", "board_text", "describe_observation", "format_action_values"]

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


def describe_observation(obs: Any) -> str:
    """An observation in a line: small arrays by value, large ones by dtype and shape."""
    if isinstance(obs, dict):
        return "{" + ", ".join(f"{k}: {describe_observation(v)}" for k, v in obs.items()) + "}"
    array = np.asarray(obs)
    if array.size > 16:
        return f"{array.dtype}{list(array.shape)}"
    return np.array2string(array, precision=3, suppress_small=True)


def board_text(env: gym.Env, obs: Any) -> str:
    """A turn-based game's board as text, for the player to move: the env's own ``ansi`` render
    when it has one; for a PettingZoo board game (planes ``(H, W, C)``: the mover's pieces in
    plane 0, the other player's in plane 1) a grid of ``X`` (seat 0) and ``O`` (seat 1), empty
    cells showing their move number when there is one move per cell, column numbers underneath
    when there is one move per column; otherwise the observation in a line.

    :param env: the adapted env (any wrapper of it).
    :param obs: the observation of the adapted env.
    """
    if getattr(env, "render_mode", None) == "ansi":
        return str(env.render()).rstrip("\n")
    base = env.unwrapped
    aec = getattr(base, "aec", None)  # rladapt's PettingZooTurns holds the AEC game
    if aec is not None:
        raw = aec.observe(aec.agent_selection)
        players = list(aec.possible_agents)
        mover = players.index(aec.agent_selection) if len(players) == 2 else None
        planes = np.asarray(raw["observation"] if isinstance(raw, dict) else raw)
        n = getattr(env.action_space, "n", None)
        if planes.ndim == 3 and planes.shape[-1] >= 2:
            height, width = planes.shape[:2]
            if mover in (0, 1):
                own, other = ("X", "O") if mover == 0 else ("O", "X")
                legend = "X: seat 0 (moves first), O: seat 1"
            else:
                own, other, legend = "x", "o", "x: the player to move, o: the other player"
            rows = []
            for r in range(height):
                cells = []
                for c in range(width):
                    if planes[r, c, 0]:
                        cells.append(own)
                    elif planes[r, c, 1]:
                        cells.append(other)
                    else:
                        cells.append(str(r * width + c) if n == height * width else ".")
                rows.append(" ".join(f"{cell:>2}" for cell in cells))
            if n == width:
                rows.append(" ".join(f"{c:>2}" for c in range(width)))
            return "\n".join(rows) + f"\n({legend})"
    return f"observation {describe_observation(obs)}"
