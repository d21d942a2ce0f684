"""Invalid-action masks from every common convention, normalised in one place.

gymnasium has no mask wrapper: Taxi puts ``info["action_mask"]`` in its infos, sb3-contrib envs
expose an ``action_masks()`` method, PettingZoo-style envs carry ``"action_mask"`` in a Dict
observation, and SRL envs expose ``get_invalid_actions()`` (indices of the invalid actions).
:class:`ActionMask` reads any one of them and writes a boolean ``info["action_mask"]`` at reset and
at every step, shaped for the action space: ``(n,)`` for ``Discrete(n)``, ``(sum(nvec),)``
(per-dimension masks, concatenated) for ``MultiDiscrete(nvec)``, ``(2 * n,)`` for ``MultiBinary(n)``,
and for a Dict/Tuple action space the masks of its discrete leaves concatenated in leaf order
(:func:`rladapt.spaces.mask_size`). A composite space's mask comes from the env nested like the
action space, one entry per discrete leaf (:func:`rladapt.spaces.flatten_mask`), by any convention.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rladapt.errors import ActionMaskError
from rladapt.spaces import COMPOSITE_SPACES, flatten_mask, mask_parts, mask_size
from rladapt.wrappers.actions import MASK_KEY

#: The conventions, by name: where each finds the mask.
SOURCES = {
    "info": "info['action_mask'] (gymnasium Taxi convention)",
    "action_masks": "env.action_masks() (sb3-contrib convention)",
    "observation": "observation['action_mask'] (PettingZoo convention)",
    "invalid_actions": "env.get_invalid_actions() (SRL convention: invalid indices)",
}


def mask_shape(action_space: spaces.Space) -> tuple[int]:
    """The shape of the normalised boolean mask for an action space (``(mask_size,)``)."""
    return (mask_size(action_space),)


def _has_method(env: gym.Env, name: str) -> bool:
    try:
        return callable(env.get_wrapper_attr(name))
    except AttributeError:
        return False


def detect_mask_source(env: gym.Env, reset_info: dict[str, Any] | None) -> str | None:
    """Which convention ``env`` uses for masks, or None. ``reset_info`` is the info of one reset."""
    space = env.observation_space
    if isinstance(space, spaces.Dict) and MASK_KEY in space.spaces:
        return "observation"
    if _has_method(env, "action_masks"):
        return "action_masks"
    if _has_method(env, "get_invalid_actions"):
        return "invalid_actions"
    if reset_info is not None and MASK_KEY in reset_info:
        return "info"
    return None


class ActionMask(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Normalises an env's invalid-action mask into a boolean ``info["action_mask"]``.

    The mask is present after ``reset`` and after every ``step``; a mask of the wrong shape, or one
    that masks every action of a dimension outside a terminal state, raises
    :class:`~rladapt.errors.ActionMaskError` naming the step. With ``source="observation"`` the
    ``"action_mask"`` key leaves the observation (a ``{"observation", "action_mask"}`` Dict becomes
    its ``"observation"`` entry). The wrapped env's ``metadata["action_mask"]`` is True.

    Example:
        >>> env = ActionMask(gym.make("Taxi-v4"), source="info")
        >>> obs, info = env.reset(seed=0)
        >>> info["action_mask"]
        array([ True,  True, False, False, False, False])

    :param env: the env to wrap.
    :param source: the convention to read: ``"info"``, ``"action_masks"``, ``"observation"`` or
        ``"invalid_actions"`` (see :data:`SOURCES`).
    """

    def __init__(self, env: gym.Env, source: str):
        if source not in SOURCES:
            raise ValueError(f"unknown mask source {source!r}; choose one of {sorted(SOURCES)}")
        gym.utils.RecordConstructorArgs.__init__(self, source=source)
        gym.Wrapper.__init__(self, env)
        self.source = source
        self._shape = mask_shape(env.action_space)
        self._splits = None
        if isinstance(env.action_space, (spaces.MultiDiscrete, spaces.MultiBinary, *COMPOSITE_SPACES)):
            self._splits = np.cumsum(mask_parts(env.action_space))[:-1]
        self._composite = isinstance(env.action_space, COMPOSITE_SPACES)
        if source == "invalid_actions" and not isinstance(env.action_space, (spaces.Discrete, *COMPOSITE_SPACES)):
            raise ActionMaskError("get_invalid_actions() gives indices of a Discrete action space (or, nested like it, of "
                                  f"a Dict/Tuple action space's discrete leaves); this env's is {env.action_space}")
        self._method = None
        if source in ("action_masks", "invalid_actions"):
            self._method = env.get_wrapper_attr("action_masks" if source == "action_masks" else "get_invalid_actions")
        self._unwrap_observation = False
        if source == "observation":
            space = env.observation_space
            if not isinstance(space, spaces.Dict) or MASK_KEY not in space.spaces:
                raise ActionMaskError(f"source='observation' needs a Dict observation with an 'action_mask' key, got {space}")
            rest = {k: s for k, s in space.spaces.items() if k != MASK_KEY}
            self._unwrap_observation = list(rest) == ["observation"]
            self.observation_space = rest["observation"] if self._unwrap_observation else spaces.Dict(rest)
        self.metadata = {**env.metadata, "action_mask": True}
        self._step = 0

    def _read(self, obs: Any, info: dict[str, Any]) -> np.ndarray:
        if self.source == "info":
            raw = info.get(MASK_KEY)
            if raw is None:
                raise ActionMaskError(f"info has no 'action_mask' at step {self._step} of the episode (the mask source is info['action_mask'])")
        elif self.source == "observation":
            raw = obs[MASK_KEY]
        elif self.source == "action_masks":
            raw = self._method()
        elif self._composite:
            raw = flatten_mask(self.env.action_space, self._method(), invalid_indices=True)
        else:
            raw = np.ones(self._shape, dtype=bool)
            raw[np.asarray(self._method(), dtype=np.int64)] = False
        if self._composite and isinstance(raw, (dict, tuple, list)):
            raw = flatten_mask(self.env.action_space, raw)
        elif self._splits is not None and isinstance(raw, (tuple, list)) and len(raw) == len(self._splits) + 1:
            # one mask per dimension, the form MultiDiscrete.sample(mask=...) takes
            raw = np.concatenate([np.asarray(part).reshape(-1) for part in raw])
        mask = raw if type(raw) is np.ndarray else np.asarray(raw)
        if mask.dtype != bool:
            mask = mask.astype(bool)
        if mask.shape != self._shape:
            mask = mask.reshape(-1)
            if mask.shape != self._shape:
                raise ActionMaskError(
                    f"action mask from {SOURCES[self.source]} has shape {np.shape(raw)} at step {self._step}, "
                    f"expected {self._shape} for {self.env.action_space}"
                )
        return mask

    def _check(self, mask: np.ndarray) -> None:
        if self._splits is None:
            if not np.count_nonzero(mask):  # 5x cheaper than mask.any() on small arrays
                raise ActionMaskError(f"every action is masked at step {self._step} of the episode (mask from {SOURCES[self.source]})")
        else:
            for dim, part in enumerate(np.split(mask, self._splits)):
                if not part.any():
                    raise ActionMaskError(
                        f"every action of dimension {dim} is masked at step {self._step} of the episode (mask from {SOURCES[self.source]})"
                    )

    def _strip(self, obs: Any) -> Any:
        if self.source != "observation":
            return obs
        if self._unwrap_observation:
            return obs["observation"]
        return {k: v for k, v in obs.items() if k != MASK_KEY}

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._step = 0
        mask = self._read(obs, info)
        self._check(mask)
        info = dict(info)
        info[MASK_KEY] = mask
        return self._strip(obs), info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._step += 1
        mask = self._read(obs, info)
        if not (terminated or truncated):
            self._check(mask)
        info = dict(info)
        info[MASK_KEY] = mask
        return self._strip(obs), reward, terminated, truncated, info
