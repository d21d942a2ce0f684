"""Keep a shower at a comfortable temperature: a tiny continuous-observation control env."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = ["ShowerEnv"]


class ShowerEnv(gym.Env[np.ndarray, np.int64]):
    """Hold the water temperature in the comfortable band [37, 39] °C for a one-minute shower.

    Every second the agent cools the water down, leaves it, or heats it up, by one degree; the
    water supply then drifts the temperature by a random whole degree.

    ## Action space

    ``Discrete(3)``: 0 cool down (-1 °C), 1 stay (0), 2 heat up (+1 °C); names in ``action_names``.

    ## Observation space

    ``Box(0.0, 100.0, (1,), float32)``: the water temperature in °C after the action and the drift,
    clipped to [0, 100].

    ## Transition

    ``temperature <- clip(temperature + (action - 1) + drift, 0, 100)`` where ``drift`` is drawn
    uniformly from the integers {-1, 0, 1} with ``self.np_random`` each step. The temperature is
    kept at float32 precision, so the reward is computed on exactly the value observed.

    ## Rewards

    +1 when the new temperature lies in [37, 39] (bounds included), otherwise -1. Returns lie in
    [-60, 60].

    ## Starting state

    ``38 + uniform(-3, 3)`` °C, a real number in [35, 41].

    ## Episode end

    Never terminates. Truncates after exactly ``episode_length`` (60) steps, one per second
    (``rladapt/Shower-v0`` also registers ``max_episode_steps=60``). Stepping after the truncation
    raises ``RuntimeError``: call ``reset()``.

    ## Arguments

    * ``render_mode``: ``None`` or ``"ansi"`` (a one-line thermometer).
    * ``episode_length``: number of steps before truncation (60).

    ## Example

    >>> import gymnasium as gym
    >>> import rladapt.envs
    >>> env = gym.make("rladapt/Shower-v0")
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, obs.dtype
    ((1,), dtype('float32'))
    >>> env.unwrapped.action_names
    ('cool down', 'stay', 'heat up')
    >>> obs, reward, terminated, truncated, info = env.step(1)
    >>> reward in (-1.0, 1.0), terminated
    (True, False)
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 1}

    comfort_low: float = 37.0
    comfort_high: float = 39.0
    min_temperature: float = 0.0
    max_temperature: float = 100.0
    start_temperature: float = 38.0
    start_spread: float = 3.0
    action_names: tuple[str, ...] = ("cool down", "stay", "heat up")

    def __init__(self, render_mode: str | None = None, episode_length: int = 60) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode={render_mode!r} is not supported; use one of {self.metadata['render_modes']} or None"
            )
        if episode_length < 1:
            raise ValueError(f"episode_length must be >= 1, got {episode_length}")
        self.render_mode = render_mode
        self.episode_length = int(episode_length)
        self.observation_space = spaces.Box(
            low=self.min_temperature, high=self.max_temperature, shape=(1,), dtype=np.float32
        )
        self.action_space = spaces.Discrete(3)
        self._temperature: float = self.start_temperature
        self._t: int = 0
        self._last_action: int | None = None
        self._last_reward: float | None = None

    def _set_temperature(self, value: float) -> None:
        clipped = min(max(value, self.min_temperature), self.max_temperature)
        self._temperature = float(np.float32(clipped))  # exactly the observed value

    def _obs(self) -> np.ndarray:
        return np.array([self._temperature], dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a new shower at ``38 + uniform(-3, 3)`` °C."""
        super().reset(seed=seed)
        self._set_temperature(
            self.start_temperature + self.np_random.uniform(-self.start_spread, self.start_spread)
        )
        self._t = 0
        self._last_action = None
        self._last_reward = None
        return self._obs(), {}

    def step(self, action: np.int64 | int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply the action and the random drift, then score the new temperature."""
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an int in [0, 3) ({', '.join(self.action_names)}), got {action!r}")
        if self._t >= self.episode_length:
            raise RuntimeError("ShowerEnv.step() called after the episode was truncated; call reset() first")
        a = int(action)
        drift = int(self.np_random.integers(-1, 2))
        self._set_temperature(self._temperature + (a - 1) + drift)
        self._t += 1
        reward = 1.0 if self.comfort_low <= self._temperature <= self.comfort_high else -1.0
        self._last_action = a
        self._last_reward = reward
        truncated = self._t >= self.episode_length
        return self._obs(), reward, False, truncated, {}

    def render(self) -> str | None:
        """With ``render_mode="ansi"``: time, temperature and a thermometer from 30 to 46 °C.

        ``[``/``]`` mark the comfortable band, ``|`` the temperature (``<``/``>`` when off the scale).
        """
        if self.render_mode is None:
            gym.logger.warn(
                "You are calling render method without specifying any render mode. "
                'You can specify the render_mode at initialization, e.g. gym.make("rladapt/Shower-v0", render_mode="ansi")'
            )
            return None
        lo, hi = 30, 46
        scale = []
        for degree in range(lo, hi + 1):
            if degree == int(self.comfort_low):
                scale.append("[")
            elif degree == int(self.comfort_high):
                scale.append("]")
            else:
                scale.append("-")
        position = round(self._temperature) - lo
        if position < 0:
            scale[0] = "<"
        elif position > hi - lo:
            scale[-1] = ">"
        else:
            scale[position] = "|"
        status = "comfortable" if self.comfort_low <= self._temperature <= self.comfort_high else "uncomfortable"
        last = "" if self._last_action is None else f" after {self.action_names[self._last_action]!r}"
        return (
            f"t={self._t:2d}/{self.episode_length} {self._temperature:5.1f}C {lo} {''.join(scale)} {hi} "
            f"{status}{last}\n"
        )
