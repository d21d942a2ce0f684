"""Action conversions gymnasium lacks. Each keeps ``info["action_mask"]`` in step with the action
space it exposes, so masks stay correct through every conversion."""

from __future__ import annotations

from functools import reduce
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rladapt.spaces import dimension_starts, nvec

MASK_KEY = "action_mask"


def product_mask(dimension_masks: np.ndarray, nvec: np.ndarray) -> np.ndarray:
    """Per-dimension masks concatenated (shape ``(sum(nvec),)``) -> the mask of the flattened
    ``Discrete(prod(nvec))``: a joint action is valid when every one of its components is valid.
    Flat indices follow C order, as ``np.ravel_multi_index``."""
    parts = np.split(np.asarray(dimension_masks, dtype=bool), np.cumsum(nvec)[:-1])
    joint = reduce(lambda acc, part: acc[..., None] & part, parts[1:], parts[0])
    return joint.reshape(-1)


class FlattenMultiDiscreteAction(gym.ActionWrapper, gym.utils.RecordConstructorArgs):
    """Exposes a MultiDiscrete (or MultiBinary) action space as one ``Discrete(prod(nvec))``, for
    agents that pick one action from a list. Index ``i`` maps to ``np.unravel_index(i, nvec)``
    (first dimension most significant). Per-dimension masks in ``info["action_mask"]`` become the
    product mask of the joint actions.

    Example:
        >>> env.action_space          # MultiDiscrete([3 2])
        >>> FlattenMultiDiscreteAction(env).action_space
        Discrete(6)

    :param env: the env to wrap.
    """

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ActionWrapper.__init__(self, env)
        inner = env.action_space
        self._nvec = nvec(inner)
        start = dimension_starts(inner)
        # A lookup table: one row per joint action, in the inner space's dtype and shape.
        grid = np.stack(np.unravel_index(np.arange(int(np.prod(self._nvec))), self._nvec), axis=-1) + start
        self._table = grid.astype(inner.dtype).reshape(-1, *inner.shape)
        self.action_space = spaces.Discrete(len(self._table))

    def action(self, action: Any) -> np.ndarray:
        return self._table[int(action)].copy()

    def _convert(self, info: dict[str, Any]) -> dict[str, Any]:
        if MASK_KEY in info:
            info = dict(info)
            info[MASK_KEY] = product_mask(info[MASK_KEY], self._nvec)
        return info

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        return obs, self._convert(info)

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(self.action(action))
        return obs, reward, terminated, truncated, self._convert(info)


class UnitBoxAction(gym.ActionWrapper, gym.utils.RecordConstructorArgs):
    """Exposes a finite Box action space as Box(-1, 1): actions are clipped to [-1, 1], then mapped
    affinely onto the env's bounds. gymnasium's ``RescaleAction`` does not clip, and its
    ``ClipAction`` exposes infinite bounds, so the two together cannot show the agent [-1, 1].

    Example:
        >>> env = UnitBoxAction(gym.make("Pendulum-v1"))   # torque in [-2, 2]
        >>> env.action_space
        Box(-1.0, 1.0, (1,), float32)

    :param env: the env to wrap; its action space must be a Box with finite bounds.
    """

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ActionWrapper.__init__(self, env)
        inner = env.action_space
        if not isinstance(inner, spaces.Box) or not (np.all(np.isfinite(inner.low)) and np.all(np.isfinite(inner.high))):
            raise ValueError(f"UnitBoxAction needs a Box action space with finite bounds, got {inner}")
        self._center = ((inner.high + inner.low) / 2).astype(inner.dtype)
        self._half = ((inner.high - inner.low) / 2).astype(inner.dtype)
        self.action_space = spaces.Box(-1.0, 1.0, shape=inner.shape, dtype=inner.dtype)

    def action(self, action: Any) -> np.ndarray:
        unit = np.clip(np.asarray(action, dtype=self._center.dtype), -1.0, 1.0)
        return self._center + self._half * unit


class ArgmaxAction(gym.ActionWrapper, gym.utils.RecordConstructorArgs):
    """Lets a continuous-only agent act in a ``Discrete(n)`` env: the agent outputs n scores in
    Box(-1, 1, (n,)) and the env gets the index of the highest valid score (masked actions are never
    chosen). Opt-in (``AutoAdapt(..., discrete_as_continuous=True)``): agents built for discrete
    actions usually learn such envs better.

    :param env: the env to wrap; its action space must be Discrete.
    """

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ActionWrapper.__init__(self, env)
        inner = env.action_space
        if not isinstance(inner, spaces.Discrete):
            raise ValueError(f"ArgmaxAction needs a Discrete action space, got {inner}")
        self._start = int(inner.start)
        self._mask: np.ndarray | None = None
        self.action_space = spaces.Box(-1.0, 1.0, shape=(int(inner.n),), dtype=np.float32)

    def action(self, action: Any) -> int:
        scores = np.asarray(action, dtype=np.float32).reshape(-1)
        if self._mask is not None:
            scores = np.where(self._mask, scores, -np.inf)
        return self._start + int(np.argmax(scores))

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._mask = info.get(MASK_KEY)
        return obs, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        result = self.env.step(self.action(action))
        self._mask = result[4].get(MASK_KEY)
        return result
