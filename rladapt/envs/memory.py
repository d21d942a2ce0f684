"""A memory task with action masks: the legal moves of the last step depend on a cue shown only
at the first step, so a policy that forgets the cue is no better than a coin."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = ["MaskedMemoryEnv"]


class MaskedMemoryEnv(gym.Env[np.ndarray, np.int64]):
    """Remember a cue through a delay in which the legal moves change at random, then pick it.

    ## Action space

    ``Discrete(n)``: ``n`` symbols (default 4).

    ## Observation space

    ``Box(0, 1, (n + 2,), float32)``: at the first step the cue as a one-hot over the first ``n``
    entries and entry ``n`` set; during the delay zeros; at the decision step entry ``n + 1`` set.
    The cue is never shown again.

    ## Action masks (gymnasium's Taxi convention: ``info["action_mask"]``, ``int8``)

    The cue step and each delay step: a random half of the symbols (at least one) is legal. The
    decision step: exactly two symbols, the cue and a random other one. A move outside the mask
    ends the episode with reward -1 (a masked agent never makes one).

    ## Rewards and episode end

    The episode ends at the decision step: +1 for the cue, -1 for the other legal symbol; 0 on
    every earlier step. Returns lie in [-1, 1]. A policy without memory sees the same decision
    observation whatever the cue, and over the pairs of legal symbols scores 0 in expectation;
    one that remembers scores 1. The episode lasts ``delay + 2`` steps.

    ## Arguments

    * ``n``: symbols (>= 2).
    * ``delay``: blank steps between the cue and the decision (>= 0).
    * ``render_mode``: ``None`` or ``"ansi"``.

    ## Example

    >>> import gymnasium as gym
    >>> import rladapt.envs
    >>> env = gym.make("rladapt/MaskedMemory-v0")
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, info["action_mask"].shape
    ((6,), (4,))
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 2}

    def __init__(self, n: int = 4, delay: int = 4, render_mode: str | None = None) -> None:
        if int(n) < 2:
            raise ValueError(f"MaskedMemoryEnv(n={n}): at least 2 symbols")
        if int(delay) < 0:
            raise ValueError(f"MaskedMemoryEnv(delay={delay}): the delay is a number of steps >= 0")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r} is not supported; use one of {self.metadata['render_modes']} or None")
        self.n, self.delay, self.render_mode = int(n), int(delay), render_mode
        self.action_space = spaces.Discrete(self.n)
        self.observation_space = spaces.Box(0.0, 1.0, (self.n + 2,), np.float32)
        self.action_names = tuple(f"symbol {i}" for i in range(self.n))
        self._cue, self._t = 0, 0
        self._mask = np.ones(self.n, dtype=np.int8)

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.n + 2, dtype=np.float32)
        if self._t == 0:
            obs[self._cue] = 1.0
            obs[self.n] = 1.0
        elif self._t == self.delay + 1:
            obs[self.n + 1] = 1.0
        return obs

    def _new_mask(self) -> np.ndarray:
        mask = np.zeros(self.n, dtype=np.int8)
        if self._t == self.delay + 1:  # the decision: the cue and one other symbol
            other = (self._cue + 1 + int(self.np_random.integers(self.n - 1))) % self.n
            mask[[self._cue, other]] = 1
        else:
            mask[self.np_random.permutation(self.n)[: max(1, self.n // 2)]] = 1
        return mask

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._cue, self._t = int(self.np_random.integers(self.n)), 0
        self._mask = self._new_mask()
        return self._obs(), {"action_mask": self._mask.copy()}

    def step(self, action: np.int64 | int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = int(action)
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        if not self._mask[action]:
            self._t = self.delay + 2
            return self._obs(), -1.0, True, False, {"action_mask": np.ones(self.n, dtype=np.int8), "illegal": True}
        if self._t == self.delay + 1:
            reward = 1.0 if action == self._cue else -1.0
            self._t += 1
            return self._obs(), reward, True, False, {"action_mask": np.ones(self.n, dtype=np.int8)}
        self._t += 1
        self._mask = self._new_mask()
        return self._obs(), 0.0, False, False, {"action_mask": self._mask.copy()}

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        if self._t == 0:
            what = f"cue: symbol {self._cue}"
        elif self._t <= self.delay:
            what = f"delay {self._t}/{self.delay}"
        else:
            what = "decide"
        legal = ", ".join(str(i) for i in np.flatnonzero(self._mask))
        return f"{what}   legal: {legal}\n"
