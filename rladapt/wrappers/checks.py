"""The promises of gymnasium's env API, kept: observations that fit the declared space, float rewards."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rladapt.errors import ObservationError
from rladapt.spaces import cast_observation, describe, observation_mismatch, out_of_bounds


class EnforceSpaces(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Keeps the promises gymnasium's API makes about an env's outputs, so every wrapper, agent
    and env checker after it can rely on them:

    - every observation has the declared structure and shapes, or an :class:`ObservationError`
      names the leaf (``observation['pixels']``) and both shapes (numpy would say only "Output
      array is the wrong shape" when the vector env stacks it);
    - the observation at reset lies inside the declared bounds (checked once per episode: cheap);
    - observations come in the declared dtype (a float64 array from a float32 Box is cast);
    - rewards are Python floats and ``terminated``/``truncated`` Python bools (BipedalWalker-v3
      returns ``numpy.float32`` rewards, which Stable-Baselines3's env checker refuses).

    The check per step is a shape and dtype comparison for a Box observation (well under a
    microsecond); nested observations are checked leaf by leaf.

    Example:
        >>> env = EnforceSpaces(gym.make("BipedalWalker-v3"))
        >>> _ = env.reset(seed=0)
        >>> type(env.step(env.action_space.sample())[1])
        <class 'float'>

    :param env: the env to wrap (the base env: innermost in an adapted chain).
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        space = env.observation_space
        self._box = isinstance(space, spaces.Box)
        self._shape, self._dtype = (space.shape, space.dtype) if self._box else (None, None)
        # A Discrete observation arrives as a Python int (Taxi, FrozenLake): the fast case.
        self._discrete = isinstance(space, spaces.Discrete)
        self._inner_step = env.step

    def _checked(self, obs: Any, call: str) -> Any:
        if self._box and type(obs) is np.ndarray and obs.shape == self._shape and obs.dtype == self._dtype:
            return obs  # equal but not identical dtypes (another byte order spelling): as declared
        space = self.env.observation_space
        mismatch = observation_mismatch(space, obs)
        if mismatch is not None:
            name = type(self.env.unwrapped).__name__
            raise ObservationError(
                f"{name}.{call}() returned an observation that does not fit its observation space: {mismatch}. "
                f"Fix the env's observation_space ({describe(space)}) or what it returns"
            )
        return cast_observation(space, obs)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        obs = self._checked(obs, "reset")
        outside = out_of_bounds(self.env.observation_space, obs)
        if outside is not None:
            raise ObservationError(
                f"{type(self.env.unwrapped).__name__}.reset() returned an observation outside its observation space: "
                f"{outside}. Widen the env's observation_space bounds or fix what it returns"
            )
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self._inner_step(action)
        # The common cases inline (identity tests: numpy's dtype singletons), the rest in _checked.
        if self._discrete:
            if obs.__class__ is not int:
                obs = self._checked(obs, "step")
        elif obs.__class__ is not np.ndarray or obs.dtype is not self._dtype or obs.shape != self._shape:
            obs = self._checked(obs, "step")
        return obs, float(reward), bool(terminated), bool(truncated), info
