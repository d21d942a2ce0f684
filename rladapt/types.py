"""Plain data that crosses rladapt's layers: evaluation results, an agent's view of the actions, a
finished training episode. This module imports nothing of rladapt, so every other module may use it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

__all__ = ["ActionValues", "Episode", "EvalResult"]


class ActionValues(NamedTuple):
    """What an agent thinks of every action of a ``Discrete`` space, for the terminal view:
    ``values[i]`` is the value (``kind="q"``) or the probability (``kind="prob"``) of action ``i``."""

    values: np.ndarray
    kind: str


@dataclass
class EvalResult:
    """Raw episode returns and lengths (before any reward clipping or scaling).

    :param returns: one raw return per episode.
    :param lengths: one length (env steps) per episode.
    :param outcomes: turn-based games: ``"win"``, ``"draw"`` or ``"loss"`` per episode, for the
        learner; None for other envs.
    :param seats: turn-based games: the learner's seat per episode (0 moved first).
    :param opponent: turn-based games: who the learner played (the opponents' names).
    :param agent_returns: parallel multi-agent envs: each agent's raw return per episode
        (``{agent: returns}``); ``returns`` is then the mean over the agents of each episode.
    :param group_returns: parallel multi-agent envs: the mean return of each group's agents per
        episode (``{group: returns}``).
    """

    returns: np.ndarray
    lengths: np.ndarray
    outcomes: np.ndarray | None = None
    seats: np.ndarray | None = None
    opponent: str | None = None
    agent_returns: dict[str, np.ndarray] | None = None
    group_returns: dict[str, np.ndarray] | None = None

    def rates(self, seat: int | None = None) -> dict[str, float]:
        """The fractions of games won, drawn and lost (``{"win", "draw", "loss"}``), over every
        game or those the learner played from ``seat``.

        :param seat: a seat, or None for every game.
        """
        if self.outcomes is None:
            raise ValueError("win/draw/loss rates exist for turn-based games only (this result has no outcomes)")
        games = self.outcomes if seat is None else self.outcomes[np.asarray(self.seats) == seat]
        count = max(len(games), 1)
        return {kind: float(np.count_nonzero(games == kind)) / count for kind in ("win", "draw", "loss")}

    def by_seat(self) -> dict[int, dict[str, float]]:
        """:meth:`rates` per seat the learner played, ``{seat: {"win", "draw", "loss", "games"}}``."""
        if self.outcomes is None or self.seats is None:
            raise ValueError("rates per seat exist for turn-based games only (this result has no outcomes)")
        seats = np.asarray(self.seats)
        return {int(s): {**self.rates(int(s)), "games": int(np.count_nonzero(seats == s))} for s in np.unique(seats)}

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))

    def __repr__(self) -> str:
        games = ""
        if self.outcomes is not None:
            r = self.rates()
            games = f", vs={self.opponent}, win={r['win']:.3f}, draw={r['draw']:.3f}, loss={r['loss']:.3f}"
        if self.group_returns:
            games += ", " + ", ".join(f"{group}={np.mean(r):.3f}" for group, r in self.group_returns.items())
        return f"EvalResult(mean={self.mean:.3f}, std={self.std:.3f}, episodes={len(self.returns)}{games})"


@dataclass(frozen=True)
class Episode:
    """One finished training episode.

    :param raw_return: the sum of the env's own rewards (before any clipping or scaling).
    :param length: number of env steps in the episode.
    :param step: the agent's total env steps when the episode ended.
    """

    raw_return: float
    length: int
    step: int
