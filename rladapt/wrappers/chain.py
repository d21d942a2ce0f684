"""Walking an env's wrapper chain."""

from __future__ import annotations

from typing import TypeVar

import gymnasium as gym

__all__ = ["find_wrapper"]

W = TypeVar("W", bound=gym.Wrapper)


def find_wrapper(env: gym.Env, wrapper_type: type[W]) -> W | None:
    """The outermost wrapper of type ``wrapper_type`` in ``env``'s chain (``env`` itself included), or None."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, wrapper_type):
            return env
        env = env.env
    return None
