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
    """

    returns: np.ndarray
    lengths: np.ndarray

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))

    def __repr__(self) -> str:
        return f"EvalResult(mean={self.mean:.3f}, std={self.std:.3f}, episodes={len(self.returns)})"


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
