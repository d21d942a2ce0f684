"""Envs made for the tests: registered with gymnasium so adapted chains rebuild from their spec."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class NestedDictEnv(gym.Env):
    """A Dict observation with every kind of leaf, MultiDiscrete actions and a PettingZoo-style mask.

    Observation: ``camera`` uint8[32,32,3] image (one bright quadrant), ``position`` float32[2],
    ``mode`` Discrete(3), ``label`` Text (unusable by networks), ``action_mask`` int8[7] (per-dimension
    masks of MultiDiscrete([3, 4]), concatenated). Reward: +1 when action[0] == mode, +0.5 when
    action[1] names the bright quadrant. Action 3 of dimension 1 is invalid while mode == 0: taking it
    costs -1 and sets ``info['invalid_action']``.
    Episodes last 20 steps (truncation).
    """

    metadata = {"render_modes": []}

    def __init__(self, length: int = 20):
        self.length = length
        self.observation_space = spaces.Dict(
            {
                "camera": spaces.Box(0, 255, (32, 32, 3), np.uint8),
                "position": spaces.Box(-1.0, 1.0, (2,), np.float32),
                "mode": spaces.Discrete(3),
                "label": spaces.Text(8),
                "action_mask": spaces.Box(0, 1, (7,), np.int8),
            }
        )
        self.action_space = spaces.MultiDiscrete([3, 4])

    def _observe(self) -> dict[str, Any]:
        camera = np.zeros((32, 32, 3), np.uint8)
        row, col = divmod(self._quadrant, 2)
        camera[row * 16 : (row + 1) * 16, col * 16 : (col + 1) * 16] = 200
        mask = np.ones(7, np.int8)
        if self._mode == 0:
            mask[3 + 3] = 0
        return {
            "camera": camera,
            "position": self.np_random.uniform(-1, 1, 2).astype(np.float32),
            "mode": int(self._mode),
            "label": "abc",
            "action_mask": mask,
        }

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._t = 0
        self._mode = int(self.np_random.integers(3))
        self._quadrant = int(self.np_random.integers(4))
        return self._observe(), {}

    def step(self, action):
        action = np.asarray(action)
        invalid = self._mode == 0 and action[1] == 3
        reward = -1.0 if invalid else float(action[0] == self._mode) + 0.5 * float(action[1] == self._quadrant)
        self._t += 1
        self._mode = int(self.np_random.integers(3))
        self._quadrant = int(self.np_random.integers(4))
        return self._observe(), reward, False, self._t >= self.length, {"invalid_action": invalid}


class InvalidActionsEnv(gym.Env):
    """SRL convention: ``get_invalid_actions()`` lists the invalid action indices.

    A corridor of 6 cells; actions Discrete(3) = left, stay, right; moving off either end is invalid.
    Reaching the right end gives +1 and terminates. With ``empty_mask_at`` set, every action becomes
    invalid at that step (to test the all-masked error).
    """

    metadata = {"render_modes": []}

    def __init__(self, empty_mask_at: int | None = None):
        self.empty_mask_at = empty_mask_at
        self.observation_space = spaces.Discrete(6)
        self.action_space = spaces.Discrete(3)

    def get_invalid_actions(self) -> list[int]:
        if self.empty_mask_at is not None and self._t >= self.empty_mask_at:
            return [0, 1, 2]
        invalid = []
        if self._pos == 0:
            invalid.append(0)
        if self._pos == 5:
            invalid.append(2)
        return invalid

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._pos, self._t = 0, 0
        return self._pos, {}

    def step(self, action):
        if int(action) in self.get_invalid_actions():
            raise RuntimeError(f"invalid action {action} at cell {self._pos}")
        self._pos += int(action) - 1
        self._t += 1
        terminated = self._pos == 5
        return self._pos, float(terminated), terminated, self._t >= 50, {}


def register() -> None:
    """Register the test envs (idempotent)."""
    for env_id, entry, steps in (
        ("tests/NestedDict-v0", NestedDictEnv, None),
        ("tests/InvalidActions-v0", InvalidActionsEnv, None),
    ):
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=entry, max_episode_steps=steps)
