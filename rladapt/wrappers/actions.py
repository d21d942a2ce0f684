"""Action conversions gymnasium lacks. Each keeps ``info["action_mask"]`` in step with the action
space it exposes, so masks stay correct through every conversion."""

from __future__ import annotations

from functools import reduce
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rladapt.spaces import action_leaves, dimension_starts, get_leaf, nest_like, nvec, path_str

MASK_KEY = "action_mask"


def product_mask(dimension_masks: np.ndarray, nvec: np.ndarray) -> np.ndarray:
    """Per-dimension masks concatenated (shape ``(sum(nvec),)``) -> the mask of the flattened
    ``Discrete(prod(nvec))``: a joint action is valid when every one of its components is valid.
    Flat indices follow C order, as ``np.ravel_multi_index``."""
    parts = np.split(np.asarray(dimension_masks, dtype=bool), np.cumsum(nvec)[:-1])
    joint = reduce(lambda acc, part: acc[..., None] & part, parts[1:], parts[0])
    return joint.reshape(-1)


class _JointIndexAction(gym.ActionWrapper):
    """What the wrappers that flatten an action space into one ``Discrete`` share: the mask of
    the joint actions in ``info["action_mask"]``, made by :meth:`_joint_mask` from the
    normalised mask (an :class:`~rladapt.wrappers.ActionMask` inside: ``metadata["action_mask"]``);
    an env's raw mask left unused (``mask=False``) passes as it is."""

    def _joint_mask(self, mask: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _convert(self, info: dict[str, Any]) -> dict[str, Any]:
        if MASK_KEY in info and self.env.metadata.get("action_mask"):
            info = dict(info)
            info[MASK_KEY] = self._joint_mask(info[MASK_KEY])
        return info

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        return obs, self._convert(info)

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(self.action(action))
        return obs, reward, terminated, truncated, self._convert(info)


class FlattenMultiDiscreteAction(_JointIndexAction, gym.utils.RecordConstructorArgs):
    """Exposes a MultiDiscrete (or MultiBinary) action space as one ``Discrete(prod(nvec))``, for
    agents that pick one action from a list. Index ``i`` maps to ``np.unravel_index(i, nvec)``
    (first dimension most significant). Per-dimension masks in ``info["action_mask"]`` become the
    product mask of the joint actions.

    Example:
        >>> class Switches(gym.Env):      # a dial with 3 settings and a 2-way switch
        ...     action_space = spaces.MultiDiscrete([3, 2])
        ...     observation_space = spaces.Discrete(1)
        >>> FlattenMultiDiscreteAction(Switches()).action_space
        Discrete(6)

    :param env: the env to wrap.
    """

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        _JointIndexAction.__init__(self, env)
        inner = env.action_space
        self._nvec = nvec(inner)
        start = dimension_starts(inner)
        # A lookup table: one row per joint action, in the inner space's dtype and shape.
        grid = np.stack(np.unravel_index(np.arange(int(np.prod(self._nvec))), self._nvec), axis=-1) + start
        self._table = grid.astype(inner.dtype).reshape(-1, *inner.shape)
        self.action_space = spaces.Discrete(len(self._table))

    def action(self, action: Any) -> np.ndarray:
        return self._table[int(action)].copy()

    def _joint_mask(self, mask: np.ndarray) -> np.ndarray:
        return product_mask(mask, self._nvec)


class UnitBoxAction(gym.ActionWrapper, gym.utils.RecordConstructorArgs):
    """Exposes a finite Box action space as Box(-1, 1): actions are clipped to [-1, 1], then mapped
    affinely onto the env's bounds. gymnasium's ``RescaleAction`` does not clip, and its
    ``ClipAction`` exposes infinite bounds, so the two together cannot show the agent [-1, 1].

    Example:
        >>> env = UnitBoxAction(gym.make("Pendulum-v1"))   # torque in [-2, 2]
        >>> env.action_space
        Box(-1.0, 1.0, (1,), float32)

    :param env: the env to wrap; its action space must be a Box with finite bounds (an integer
        Box gets a float32 unit box, and the env the nearest integer inside its bounds).
    """

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ActionWrapper.__init__(self, env)
        inner = env.action_space
        if not isinstance(inner, spaces.Box) or not (np.all(np.isfinite(inner.low)) and np.all(np.isfinite(inner.high))):
            raise ValueError(f"UnitBoxAction needs a Box action space with finite bounds, got {inner}")
        # An integer Box gets a float unit box (an int64 Box(-1, 1) holds only -1, 0, 1); its
        # actions are mapped in float, then rounded and clipped to the integer bounds.
        self._integer = np.issubdtype(inner.dtype, np.integer)
        unit_dtype = np.float32 if self._integer else inner.dtype
        self._low, self._high = inner.low, inner.high
        self._center = ((inner.high.astype(np.float64) + inner.low) / 2).astype(unit_dtype)
        self._half = ((inner.high.astype(np.float64) - inner.low) / 2).astype(unit_dtype)
        self.action_space = spaces.Box(-1.0, 1.0, shape=inner.shape, dtype=unit_dtype)

    def action(self, action: Any) -> np.ndarray:
        unit = np.clip(np.asarray(action, dtype=self._center.dtype), -1.0, 1.0)
        value = self._center + self._half * unit
        if self._integer:
            return np.clip(np.rint(value), self._low, self._high).astype(self.env.action_space.dtype)
        return value


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


def composite_grid(space: spaces.Space, bins: int | tuple[int, ...]) -> list[tuple[Any, spaces.Space, list[int]]]:
    """How a composite action space (Dict/Tuple, possibly nested) becomes one ``Discrete``: each
    leaf with its path and the number of values of each of its dimensions: ``[n]`` for
    ``Discrete(n)``, ``nvec`` for MultiDiscrete/MultiBinary, ``bins`` per dimension for a Box
    (discretised to bin centers, as gymnasium's ``DiscretizeAction``). The flat action count is
    the product of all of them.

    :param space: the composite action space.
    :param bins: bins per Box dimension: one int for all, or one per Box dimension (all Box
        leaves' dimensions in leaf order).
    """
    found = action_leaves(space)
    box_dims = sum(int(np.prod(leaf.shape)) for _, leaf in found if isinstance(leaf, spaces.Box))
    per_box = np.broadcast_to(np.asarray(bins, dtype=np.int64), (box_dims,)) if box_dims else np.zeros(0, np.int64)
    grid, used = [], 0
    for path, leaf in found:
        if isinstance(leaf, spaces.Discrete):
            sizes = [int(leaf.n)]
        elif isinstance(leaf, spaces.Box):
            width = int(np.prod(leaf.shape))
            sizes = [int(b) for b in per_box[used : used + width]]
            used += width
        else:
            sizes = [int(n) for n in nvec(leaf)]
        grid.append((path, leaf, sizes))
    return grid


class FlattenCompositeAction(_JointIndexAction, gym.utils.RecordConstructorArgs):
    """Exposes a composite action space (a Dict or Tuple of Discrete, MultiDiscrete, MultiBinary
    and Box leaves, possibly nested) as one ``Discrete``, for agents that pick one action from a
    list (DQN, Q-learning). Box leaves are discretised to ``bins`` bin centers per dimension (as
    gymnasium's ``DiscretizeAction``, which handles a Box alone); every dimension of every leaf
    is one factor of the flat index, first leaf most significant (C order, as
    ``np.ravel_multi_index``). Per-leaf masks in ``info["action_mask"]`` (the discrete leaves'
    masks concatenated) become the product mask of the joint actions; Box dimensions are never
    masked. gymnasium has no wrapper for this.

    Example:
        >>> env = gym.make("rladapt/HybridReach-v0")
        >>> env.action_space
        Dict('direction': Discrete(4), 'strength': Box(0.0, 1.0, (1,), float32))
        >>> FlattenCompositeAction(env, bins=7).action_space
        Discrete(28)

    :param env: the env to wrap.
    :param bins: bins per Box dimension: one int for all, or one per Box dimension in leaf order.
    """

    def __init__(self, env: gym.Env, bins: int | tuple[int, ...] = 7):
        gym.utils.RecordConstructorArgs.__init__(self, bins=bins)
        _JointIndexAction.__init__(self, env)
        grid = composite_grid(env.action_space, bins)
        self._leaves = [(path, leaf, sizes) for path, leaf, sizes in grid]
        self._factors = np.asarray([n for *_, sizes in grid for n in sizes], dtype=np.int64)
        # The mask gets all-True factors spliced in where a Box dimension is.
        self._mask_factors = [not isinstance(leaf, spaces.Box) for _, leaf, sizes in self._leaves for _ in sizes]
        self._centers = {}
        for i, (_, leaf, sizes) in enumerate(self._leaves):
            if isinstance(leaf, spaces.Box):
                low, high = leaf.low.reshape(-1).astype(np.float64), leaf.high.reshape(-1).astype(np.float64)
                if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
                    raise ValueError(f"FlattenCompositeAction needs Box leaves with finite bounds, got {leaf}")
                edges = [np.linspace(low[d], high[d], n + 1) for d, n in enumerate(sizes)]
                self._centers[i] = [0.5 * (e[:-1] + e[1:]) for e in edges]
        self.action_space = spaces.Discrete(int(np.prod(self._factors.astype(object))))

    def action(self, action: Any) -> Any:
        """Flat index -> the composite action (nested like the inner space)."""
        digits = iter(np.unravel_index(int(action), self._factors))
        values = []
        for i, (_, leaf, sizes) in enumerate(self._leaves):
            own = np.asarray([next(digits) for _ in sizes], dtype=np.int64)
            if isinstance(leaf, spaces.Discrete):
                values.append(np.int64(leaf.start + own[0]))
            elif isinstance(leaf, spaces.Box):
                centers = [c[k] for c, k in zip(self._centers[i], own)]
                values.append(np.asarray(centers, dtype=leaf.dtype).reshape(leaf.shape))
            else:
                values.append((own + dimension_starts(leaf)).astype(leaf.dtype).reshape(leaf.shape))
        return nest_like(self.env.action_space, iter(values))

    def index(self, action: Any) -> int:
        """A composite action (Box values taken to their nearest bin center) -> its flat index:
        the inverse of :meth:`action`."""
        digits: list[int] = []
        for i, (path, leaf, sizes) in enumerate(self._leaves):
            value = np.asarray(get_leaf(action, path))
            if isinstance(leaf, spaces.Discrete):
                digits.append(int(value) - int(leaf.start))
            elif isinstance(leaf, spaces.Box):
                flat = value.reshape(-1)
                digits.extend(int(np.argmin(np.abs(c - v))) for c, v in zip(self._centers[i], flat))
            else:
                digits.extend((value.reshape(-1).astype(np.int64) - dimension_starts(leaf)).tolist())
        return int(np.ravel_multi_index(digits, self._factors))

    def _joint_mask(self, mask: np.ndarray) -> np.ndarray:
        parts = iter(np.split(np.asarray(mask, dtype=bool),
                              np.cumsum([n for n, masked in zip(self._factors, self._mask_factors) if masked])[:-1]))
        full = [next(parts) if masked else np.ones(n, dtype=bool) for n, masked in zip(self._factors, self._mask_factors)]
        return product_mask(np.concatenate(full), self._factors)


class FlattenBoxAction(gym.ActionWrapper, gym.utils.RecordConstructorArgs):
    """Exposes a composite action space whose leaves are all Box (a Dict or Tuple, possibly
    nested) as one flat Box: the leaves' elements side by side in leaf order, bounds
    concatenated, for agents with one continuous policy (SAC). gymnasium's ``TransformAction``
    would need the function as an argument; this class rebuilds from the env's spec.

    Example:
        >>> env = gym.make("rladapt/Reach-v0")
        >>> env.action_space
        Dict('heading': Box(-1.0, 1.0, (2,), float32), 'strength': Box(0.0, 1.0, (1,), float32))
        >>> FlattenBoxAction(env).action_space
        Box([-1. -1.  0.], 1.0, (3,), float32)

    :param env: the env to wrap; every leaf of its action space must be a Box.
    """

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ActionWrapper.__init__(self, env)
        self._leaves = action_leaves(env.action_space)
        bad = next((path for path, leaf in self._leaves if not isinstance(leaf, spaces.Box)), None)
        if bad is not None:
            raise ValueError(f"FlattenBoxAction needs Box leaves only; {path_str(bad, 'action')} is not a Box")
        low = np.concatenate([leaf.low.reshape(-1) for _, leaf in self._leaves])
        high = np.concatenate([leaf.high.reshape(-1) for _, leaf in self._leaves])
        dtype = np.result_type(*[leaf.dtype for _, leaf in self._leaves])
        self._columns = np.cumsum([0, *[int(np.prod(leaf.shape)) for _, leaf in self._leaves]])
        self.action_space = spaces.Box(low.astype(dtype), high.astype(dtype), dtype=dtype)

    def action(self, action: Any) -> Any:
        flat = np.asarray(action).reshape(-1)
        values = [flat[a:b].astype(leaf.dtype).reshape(leaf.shape)
                  for (_, leaf), a, b in zip(self._leaves, self._columns[:-1], self._columns[1:])]
        return nest_like(self.env.action_space, iter(values))
