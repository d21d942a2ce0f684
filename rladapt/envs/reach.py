"""Reach a target on a plane with a hybrid action: a direction to move in and how far to go."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = ["HybridReachEnv", "ReachEnv"]


class ReachEnv(gym.Env[np.ndarray, dict]):
    """Move a point across the unit square onto a target in a few strides, each stride a heading
    and a strength: a ``Dict`` of two Box actions (what continuous agents, flattened, can take).

    ## Action space

    ``Dict(heading: Box(-1, 1, (2,)), strength: Box(0, 1, (1,)))``: the point moves
    ``strength * max_stride`` along the heading (normalised to unit length; a zero heading stays).

    ## Observation space

    ``Box(-1, 1, (4,), float32)``: the point's position rescaled to [-1, 1] (``2 * x - 1``,
    ``2 * y - 1``), then the target's offset from the point (``tx - x``, ``ty - y``).

    ## Transition

    The point moves, then is clipped to the square [0, 1] x [0, 1].

    ## Rewards

    The distance to the target gained by the stride, minus ``stride_cost`` (0.05) per stride,
    plus 1 when the stride ends within ``radius`` (0.1) of the target. An episode from distance
    ``d`` reached in ``k`` strides returns ``d - d_end + 1 - 0.05 k``.

    ## Starting state

    The point at one of the four corners, the target uniform in [0.1, 0.9] x [0.1, 0.9]
    (``self.np_random``).

    ## Episode end

    Terminates when the point is within ``radius`` of the target; truncates after
    ``episode_length`` (10) strides (the registered ids also set ``max_episode_steps=10``).

    ## Arguments

    * ``render_mode``: ``None`` or ``"ansi"`` (the positions as text).
    * ``episode_length``: strides before truncation (10).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 2}

    max_stride: float = 1.0
    radius: float = 0.1
    stride_cost: float = 0.05

    def __init__(self, render_mode: str | None = None, episode_length: int = 10) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r} is not supported; use one of {self.metadata['render_modes']} or None")
        if episode_length < 1:
            raise ValueError(f"episode_length must be >= 1, got {episode_length}")
        self.render_mode = render_mode
        self.episode_length = int(episode_length)
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        self.action_space = self._make_action_space()
        self._position = np.zeros(2)
        self._target = np.full(2, 0.5)
        self._t = 0

    def _make_action_space(self) -> spaces.Dict:
        return spaces.Dict({"heading": spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32),
                            "strength": spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)})

    def _heading(self, action: dict) -> np.ndarray:
        heading = np.asarray(action["heading"], dtype=np.float64)
        norm = float(np.linalg.norm(heading))
        return heading / norm if norm > 0 else np.zeros(2)

    def _obs(self) -> np.ndarray:
        offset = self._target - self._position
        return np.clip(np.concatenate([2 * self._position - 1, offset]), -1.0, 1.0).astype(np.float32)

    def _info(self) -> dict[str, Any]:
        return {"distance": float(np.linalg.norm(self._target - self._position))}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Put the point at a random corner and the target at a random inner position."""
        super().reset(seed=seed)
        self._position = self.np_random.integers(0, 2, size=2).astype(np.float64)
        self._target = self.np_random.uniform(0.1, 0.9, size=2)
        self._t = 0
        return self._obs(), self._info()

    def step(self, action: dict) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Stride along the heading, clipped to the square, and score the distance gained."""
        if not self.action_space.contains(action):
            raise ValueError(f"{action!r} is not an action of {self.action_space}")
        if self._t >= self.episode_length:
            raise RuntimeError("the episode is over (truncated); call reset()")
        before = float(np.linalg.norm(self._target - self._position))
        strength = float(np.asarray(action["strength"]).reshape(-1)[0])
        self._position = np.clip(self._position + self._heading(action) * strength * self.max_stride, 0.0, 1.0)
        self._t += 1
        after = float(np.linalg.norm(self._target - self._position))
        reached = after <= self.radius
        reward = before - after - self.stride_cost + (1.0 if reached else 0.0)
        return self._obs(), float(reward), bool(reached), bool(self._t >= self.episode_length and not reached), self._info()

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        x, y = self._position
        tx, ty = self._target
        return f"point ({x:.2f}, {y:.2f})  target ({tx:.2f}, {ty:.2f})  stride {self._t}/{self.episode_length}"


class HybridReachEnv(ReachEnv):
    """:class:`ReachEnv` with a hybrid action: one of four directions (discrete) and a strength
    (continuous), and a mask per discrete leaf. What SB3 cannot take (no Dict actions) and
    rladapt's PPO and A2C take as it is, one head per leaf.

    ## Action space

    ``Dict(direction: Discrete(4), strength: Box(0, 1, (1,)))``: directions 0 right, 1 up, 2 left,
    3 down (``action_names``); the point moves ``strength * max_stride`` that way.

    ## Masks

    A direction out of the square from an edge is invalid (it would not move the point): the
    valid directions are given nested like the action space, ``{"direction": bool[4]}``, both by
    ``action_masks()`` (sb3-contrib convention) and in ``info["action_mask"]`` (Taxi convention).
    An invalid direction is still accepted (the point stays, the stride is spent).

    Everything else is :class:`ReachEnv`'s.

    ## Example

    >>> import gymnasium as gym
    >>> import rladapt.envs
    >>> env = gym.make("rladapt/HybridReach-v0")
    >>> obs, info = env.reset(seed=0)
    >>> sorted(info["action_mask"])
    ['direction']
    >>> obs, reward, terminated, truncated, info = env.step({"direction": 0, "strength": [0.5]})
    """

    action_names: tuple[str, ...] = ("right", "up", "left", "down")
    _directions = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])

    def _make_action_space(self) -> spaces.Dict:
        return spaces.Dict({"direction": spaces.Discrete(4), "strength": spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)})

    def _heading(self, action: dict) -> np.ndarray:
        return self._directions[int(action["direction"])]

    def action_masks(self) -> dict[str, np.ndarray]:
        """The valid directions, nested like the action space: ``{"direction": bool[4]}``."""
        x, y = self._position
        return {"direction": np.array([x < 1.0, y < 1.0, x > 0.0, y > 0.0])}

    def _info(self) -> dict[str, Any]:
        return {**super()._info(), "action_mask": self.action_masks()}
