"""Classic control without velocities (rl-zoo's ``CartPoleNoVel-v1`` and ``PendulumNoVel-v1``): the
observation keeps the positions only, so a policy must infer the velocities from the history.

rl-zoo's ``MaskVelocityWrapper`` multiplies the velocities by zero and keeps the shape; here they are
dropped (CartPole ``[x, theta]``, Pendulum ``[cos theta, sin theta]``), which holds the same
information. Gymnasium has no wrapper that selects observation entries, hence :class:`HideVelocity`.
"""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control import CartPoleEnv, PendulumEnv

__all__ = ["HideVelocity", "VELOCITY_FREE", "cartpole_no_velocity", "pendulum_no_velocity"]

#: The observation entries that stay, by the env they come from (everything but the velocities).
VELOCITY_FREE: dict[str, tuple[int, ...]] = {"CartPole": (0, 2), "Pendulum": (0, 1)}


class HideVelocity(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Keep only the entries ``keep`` of a 1-D ``Box`` observation.

    Example:
        >>> env = HideVelocity(CartPoleEnv(), keep=(0, 2))
        >>> env.observation_space.shape
        (2,)

    :param env: an env with a 1-D ``Box`` observation space.
    :param keep: indices of the entries to keep (e.g. :data:`VELOCITY_FREE` ``["CartPole"]``).
    """

    def __init__(self, env: gym.Env, keep: Sequence[int]) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, keep=tuple(keep))
        gym.ObservationWrapper.__init__(self, env)
        space = env.observation_space
        if not isinstance(space, spaces.Box) or len(space.shape) != 1:
            raise TypeError(f"HideVelocity needs a 1-D Box observation space; got {space}")
        self.keep = np.asarray(keep, dtype=np.int64)
        if self.keep.size == 0 or self.keep.min() < 0 or self.keep.max() >= space.shape[0]:
            raise ValueError(f"HideVelocity(keep={tuple(keep)}): indices must lie in [0, {space.shape[0]})")
        self.observation_space = spaces.Box(space.low[self.keep], space.high[self.keep], dtype=space.dtype)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation[self.keep]


def cartpole_no_velocity(**kwargs: Any) -> gym.Env:
    """CartPole observing ``[x, theta]`` (``rladapt/CartPoleNoVel-v1``; ``kwargs`` go to ``CartPoleEnv``)."""
    return HideVelocity(CartPoleEnv(**kwargs), VELOCITY_FREE["CartPole"])


def pendulum_no_velocity(**kwargs: Any) -> gym.Env:
    """Pendulum observing ``[cos theta, sin theta]`` (``rladapt/PendulumNoVel-v1``; ``kwargs`` go to ``PendulumEnv``)."""
    return HideVelocity(PendulumEnv(**kwargs), VELOCITY_FREE["Pendulum"])
