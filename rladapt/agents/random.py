"""RandomAgent: uniform random actions that respect invalid-action masks. A baseline."""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rladapt.agents.base import Agent
from rladapt.spaces import COMPOSITE_SPACES, DISCRETE_LEAVES, action_leaves, dimension_starts, mask_size, nest_like, nvec
from rladapt.spec import AgentSpec
from rladapt.types import ActionValues


def sample_action(space: gym.Space, rng: np.random.Generator, mask: np.ndarray | None = None) -> Any:
    """One uniform action from ``space``, restricted to the valid actions of ``mask``.

    ``mask`` follows rladapt's normalised convention: a bool array of shape ``(n,)`` for
    ``Discrete(n)`` and of shape ``(sum(nvec),)`` (per-dimension masks, concatenated) for
    ``MultiDiscrete(nvec)``; for a Dict/Tuple space the discrete leaves' masks concatenated in leaf
    order (the result is a dict or tuple nested like the space).
    """
    if isinstance(space, COMPOSITE_SPACES):
        values, offset = [], 0
        for _, leaf in action_leaves(space):
            size = mask_size(leaf) if isinstance(leaf, DISCRETE_LEAVES) else 0
            part = None if mask is None or not size else np.asarray(mask, dtype=bool)[offset : offset + size]
            values.append(sample_action(leaf, rng, part))
            offset += size
        return nest_like(space, iter(values))
    if isinstance(space, spaces.Discrete):
        if mask is None:
            return space.start + int(rng.integers(space.n))
        valid = np.flatnonzero(mask)
        return space.start + int(valid[rng.integers(len(valid))])
    if isinstance(space, spaces.MultiDiscrete):
        sizes = nvec(space)
        if mask is None:
            choice = rng.integers(sizes)
        else:
            parts = np.split(np.asarray(mask, dtype=bool), np.cumsum(sizes)[:-1])
            choice = np.array([np.flatnonzero(p)[rng.integers(p.sum())] for p in parts])
        return (choice + dimension_starts(space)).reshape(space.shape).astype(space.dtype)
    if isinstance(space, spaces.MultiBinary):
        return rng.integers(0, 2, size=space.shape, dtype=space.dtype)
    if isinstance(space, spaces.Box):
        low = np.where(np.isfinite(space.low), space.low, -1.0)
        high = np.where(np.isfinite(space.high), space.high, 1.0)
        return np.asarray(rng.uniform(low, high), dtype=space.dtype)  # an array for a 0-d Box too
    raise TypeError(f"RandomAgent cannot sample from {space}")


class RandomAgent(Agent):
    """Acts uniformly at random among the valid actions. Accepts every observation and action kind.

    Example:
        >>> from rladapt import AutoAdapt
        >>> agent = RandomAgent(seed=0)
        >>> env = AutoAdapt("Taxi-v4", agent)
        >>> agent.evaluate(env, episodes=5).mean  # doctest: +SKIP
    """

    spec: ClassVar[AgentSpec] = AgentSpec(
        observations=frozenset({"vector", "image", "index", "nested"}),
        actions=frozenset({"discrete", "multi_discrete", "continuous", "composite"}),
        masks=True,
    )

    def setup(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        """Bind the agent to the adapted env's spaces (called by learn/evaluate on first use)."""
        self.observation_space, self.action_space = observation_space, action_space

    def learn(self, env: Any, steps: int, **kwargs: Any) -> "RandomAgent":
        """RandomAgent has nothing to learn: a clear error instead of a run that trains nothing.

        :param env: the env (unused).
        :param steps: env steps (unused).
        :param kwargs: ``learn``'s other arguments (unused).
        :raises TypeError: always; evaluate or play it instead.
        """
        raise TypeError("RandomAgent has nothing to learn: it is a baseline; call agent.evaluate(env) or use it as an opponent")

    def act(self, obs: Any, mask: np.ndarray | None = None, deterministic: bool = True) -> Any:
        """A uniformly random valid action (``obs`` and ``deterministic`` are ignored)."""
        if self.action_space is None:
            raise RuntimeError("RandomAgent has no action space yet: call agent.setup(env.observation_space, env.action_space) or evaluate(env) first")
        return sample_action(self.action_space, self.np_random, mask)

    def action_values(self, obs: Any, mask: np.ndarray | None = None) -> ActionValues | None:
        """Uniform probabilities over the valid actions (``Discrete`` spaces)."""
        if not isinstance(self.action_space, spaces.Discrete):
            return None
        valid = np.ones(int(self.action_space.n), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        return ActionValues(valid / max(1, valid.sum()), "prob")
