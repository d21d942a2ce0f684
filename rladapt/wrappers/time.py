"""Frame stacking: gymnasium's ``FrameStackObservation`` with an in-place buffer."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.wrappers import FrameStackObservation


class FrameStack(FrameStackObservation):
    """gymnasium's ``FrameStackObservation``, with identical results, that shifts one preallocated
    ``(stack_size, *shape)`` array in place instead of rebuilding the stack from a deque, concatenating
    and deep-copying it at every step (about 3% of an Atari step). Box observations with ``"reset"``
    or ``"zero"`` padding take the fast path; anything else behaves exactly as the parent class.

    Example:
        >>> env = FrameStack(gym.make("CartPole-v1"), 4)
        >>> env.observation_space.shape
        (4, 4)

    :param env: the env to wrap.
    :param stack_size: the number of frames to stack (the newest last).
    :param padding_type: ``"reset"`` (repeat the reset observation), ``"zero"``, or a custom observation.
    """

    def __init__(self, env: gym.Env, stack_size: int, *, padding_type: str | Any = "reset"):
        super().__init__(env, stack_size, padding_type=padding_type)
        inner = env.observation_space
        self._fast = isinstance(inner, spaces.Box) and self.padding_type in ("reset", "zero")
        if self._fast:
            self._frames = np.zeros((stack_size, *inner.shape), dtype=inner.dtype)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if not self._fast:
            return super().reset(seed=seed, options=options)
        obs, info = self.env.reset(seed=seed, options=options)
        self._frames[:-1] = obs if self.padding_type == "reset" else 0
        self._frames[-1] = obs
        return self._frames.copy(), info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        if not self._fast:
            return super().step(action)
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._frames[:-1] = self._frames[1:]
        self._frames[-1] = obs
        return self._frames.copy(), reward, terminated, truncated, info
