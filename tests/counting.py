"""A wrapper the masked-game tests share: it counts the steps whose info says the action was invalid."""

from __future__ import annotations

import gymnasium as gym


class CountInvalid(gym.Wrapper):
    """Counts the steps whose info says the action was invalid (inside AutoAdapt, so every
    vectorized copy made from the factory counts into the same list)."""

    invalid: list[int] = []

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if info.get("invalid_action"):
            CountInvalid.invalid.append(1)
        return obs, reward, terminated, truncated, info
