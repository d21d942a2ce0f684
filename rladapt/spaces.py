"""The one space classifier: what kind a space is (vector, image, discrete index, nested), and the
small facts every layer needs about spaces, each defined once here: what counts as an image, the
leaves of a nested space, ``nvec``, the size of an action mask, how actions are stored and how a
stored action becomes the env's action. AutoAdapt, the wrappers, the networks, the collectors and
the agents all read these; nothing else answers the same questions."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
from gymnasium import spaces

from rladapt.errors import ActionMaskError

#: Leaf spaces no network can read; AutoAdapt drops them with a plan entry.
UNUSABLE_LEAVES = (spaces.Text, spaces.Graph, spaces.Sequence, spaces.OneOf)
#: Leaves that are a finite set of values (one index, or several).
DISCRETE_LEAVES = (spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)
#: Spaces made of other spaces: a composite action space is one of these whose leaves are
#: :data:`ACTION_LEAVES` (nesting allowed).
COMPOSITE_SPACES = (spaces.Dict, spaces.Tuple)
#: The leaves a composite action space may have.
ACTION_LEAVES = (*DISCRETE_LEAVES, spaces.Box)

Path = tuple[Any, ...]


def path_str(path: Path, root: str = "observation") -> str:
    """``("pixels", 0)`` -> ``observation['pixels'][0]``: how errors and plans name a leaf."""
    return root + "".join(f"[{p!r}]" for p in path)


def is_image(space: spaces.Space) -> bool:
    """A uint8 Box in [0, 255] whose shape is an image (:func:`image_layout`): at least 8x8
    pixels, HW, HWC (C in 1, 3, 4), or channel-first with any number of channels (a stack of
    frames, ``(4, 84, 84)``, or of channel-first images, ``(4, 3, 64, 64)``)."""
    if not isinstance(space, spaces.Box) or space.dtype != np.uint8:
        return False
    if not (np.all(space.low == 0) and np.all(space.high == 255)):
        return False
    return image_layout(space.shape) is not None


def image_layout(shape: tuple[int, ...]) -> str | None:
    """How an image shape is laid out, None when the shape is not an image:

    - ``"HW"``: one channel, ``(H, W)``;
    - ``"HWC"``: ``(H, W, C)`` with C in 1, 3, 4 (what envs render);
    - ``"CHW"``: ``(C, H, W)``, any C (frame stacks included: what networks read);
    - ``"stack"``: four or more dims, the last two H and W, every dim before them a channel
      (stacks of channel-first images).
    """
    if len(shape) == 2 and min(shape) >= 8:
        return "HW"
    if len(shape) == 3:
        if shape[-1] in (1, 3, 4) and min(shape[:2]) >= 8:
            return "HWC"
        if min(shape[1:]) >= 8:
            return "CHW"
    if len(shape) >= 4 and min(shape[-2:]) >= 8:
        return "stack"
    return None


#: The keys of an observation that carries a global state beside the agent's own observation
#: (``AutoAdapt(parallel_env, agent, global_state=True)``): the actor reads the first, a
#: centralised critic both.
GLOBAL_STATE_KEYS = ("observation", "state")


def has_global_state(space: spaces.Space) -> bool:
    """``space`` is ``Dict(observation=vector, state=vector)``: an agent's own observation and the
    global state for a centralised critic (MAPPO)."""
    return (isinstance(space, spaces.Dict) and tuple(sorted(space.spaces)) == tuple(sorted(GLOBAL_STATE_KEYS))
            and all(isinstance(space[k], spaces.Box) and not is_image(space[k]) for k in GLOBAL_STATE_KEYS))


def defaults_kind(space: spaces.Space) -> str:
    """The observation kind that per-kind defaults read: :func:`observation_kind`, except that an
    observation with a global state (:func:`has_global_state`) is the kind of the agent's own."""
    return observation_kind(space["observation"]) if has_global_state(space) else observation_kind(space)


def observation_kind(space: spaces.Space) -> str:
    """``"nested"`` (a Dict), ``"image"`` (:func:`is_image`), ``"index"`` (Discrete) or
    ``"vector"`` (any other Box) for an adapted observation space (the kinds of ``AgentSpec``)."""
    if isinstance(space, spaces.Dict):
        return "nested"
    if is_image(space):
        return "image"
    if isinstance(space, spaces.Discrete):
        return "index"
    if isinstance(space, spaces.Box):
        return "vector"
    raise TypeError(f"no observation kind for {space}; adapt the env with AutoAdapt(env, agent) first")


def action_kind(space: spaces.Space) -> str:
    """``"discrete"``, ``"multi_discrete"`` (MultiDiscrete and MultiBinary), ``"continuous"`` or
    ``"composite"`` (a Dict or Tuple of those, :func:`action_leaves`) for an adapted action space."""
    if isinstance(space, COMPOSITE_SPACES):
        action_leaves(space)  # every leaf must be one an action head exists for
        return "composite"
    if isinstance(space, spaces.Discrete):
        return "discrete"
    if isinstance(space, (spaces.MultiDiscrete, spaces.MultiBinary)):
        return "multi_discrete"
    if isinstance(space, spaces.Box):
        return "continuous"
    raise TypeError(f"unsupported action space {space}; adapt the env with AutoAdapt(env, agent)")


def nvec(space: spaces.Space) -> np.ndarray:
    """The number of values of each dimension of a MultiDiscrete (its ``nvec``, flattened) or
    MultiBinary space (2 each), as int64."""
    if isinstance(space, spaces.MultiDiscrete):
        return space.nvec.reshape(-1).astype(np.int64)
    if isinstance(space, spaces.MultiBinary):
        return np.full(int(np.prod(space.shape)), 2, dtype=np.int64)
    raise TypeError(f"{space} has no nvec (MultiDiscrete and MultiBinary spaces have one)")


def dimension_starts(space: spaces.Space) -> np.ndarray:
    """The lowest value of each dimension of a MultiDiscrete (its ``start``, flattened) or
    MultiBinary space (0 each), as int64."""
    if isinstance(space, spaces.MultiDiscrete):
        return np.broadcast_to(np.asarray(space.start), space.nvec.shape).reshape(-1).astype(np.int64)
    return np.zeros(int(np.prod(space.shape)), dtype=np.int64)


def mask_size(space: spaces.Space) -> int:
    """Length of rladapt's normalised boolean action mask: ``n`` for ``Discrete(n)``,
    ``sum(nvec)`` (one mask per dimension, concatenated) for MultiDiscrete and MultiBinary, and
    for a composite space the masks of its discrete leaves concatenated in :func:`leaves` order
    (Box leaves have none): ``sum(mask_parts(space))``."""
    if isinstance(space, COMPOSITE_SPACES):
        parts = mask_parts(space)
        if not parts:
            raise ActionMaskError(f"invalid-action masks need a discrete leaf; every leaf of {describe(space)} is a Box")
        return int(sum(parts))
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    if isinstance(space, (spaces.MultiDiscrete, spaces.MultiBinary)):
        return int(nvec(space).sum())
    raise ActionMaskError(f"invalid-action masks need a Discrete, MultiDiscrete or MultiBinary action space, got {space}")


def stored_action(space: spaces.Space) -> tuple[tuple[int, ...], np.dtype]:
    """``(shape, dtype)`` of one action as agents store it: an int64 index from 0 for
    ``Discrete``, ``[D]`` int64 indices from 0 for MultiDiscrete/MultiBinary, ``[D]`` float32 for
    a Box (flattened). A composite space (Dict/Tuple) is stored flat: its leaves' stored actions
    side by side in :func:`leaves` order, :func:`action_widths` columns each (a Discrete leaf one
    column); int64 when every leaf is discrete, else float32 (indices are exact in float32 below
    2**24). :func:`env_action` turns stored actions into the env's."""
    if isinstance(space, COMPOSITE_SPACES):
        discrete = all(isinstance(leaf, DISCRETE_LEAVES) for _, leaf in action_leaves(space))
        return (int(sum(action_widths(space))),), np.dtype(np.int64 if discrete else np.float32)
    if isinstance(space, spaces.Discrete):
        return (), np.dtype(np.int64)
    if isinstance(space, (spaces.MultiDiscrete, spaces.MultiBinary)):
        return (int(np.prod(space.shape)),), np.dtype(np.int64)
    if isinstance(space, spaces.Box):
        return (int(np.prod(space.shape)),), np.dtype(np.float32)
    raise TypeError(f"unsupported action space {space}; adapt the env with AutoAdapt(env, agent)")


def env_action(space: spaces.Space, action: np.ndarray) -> np.ndarray:
    """A batch of stored actions (:func:`stored_action`, leading batch dim) -> the env's actions:
    the space's ``start`` added back, shaped and typed like the space, Box actions clipped to
    the bounds (policies may sample outside them; the stored action stays the sample). A
    composite space gives a dict (Dict) or tuple (Tuple) of batched leaf actions, nested like the
    space: what gymnasium's vector envs take."""
    if isinstance(space, COMPOSITE_SPACES):
        columns = np.cumsum([0, *action_widths(space)])
        flat = [env_action(leaf, _leaf_columns(leaf, action[:, a:b])) for (_, leaf), a, b
                in zip(action_leaves(space), columns[:-1], columns[1:])]
        return nest_like(space, iter(flat))
    if isinstance(space, spaces.Discrete):
        start = int(space.start)
        return action + start if start else action
    batch = action.shape[:1]
    if isinstance(space, (spaces.MultiDiscrete, spaces.MultiBinary)):
        return (action + dimension_starts(space)).reshape(batch + space.shape).astype(space.dtype, copy=False)
    if isinstance(space, spaces.Box):
        clipped = np.clip(action, space.low.reshape(-1), space.high.reshape(-1))
        return clipped.reshape(batch + space.shape).astype(space.dtype, copy=False)
    raise TypeError(f"unsupported action space {space}; adapt the env with AutoAdapt(env, agent)")


def _leaf_columns(leaf: spaces.Space, columns: np.ndarray) -> np.ndarray:
    """A leaf's columns of a flat composite action -> that leaf's own stored form."""
    if isinstance(leaf, spaces.Discrete):
        return columns[:, 0].astype(np.int64, copy=False)
    if isinstance(leaf, DISCRETE_LEAVES):
        return columns.astype(np.int64, copy=False)
    return columns.astype(np.float32, copy=False)


def nest_like(space: spaces.Space, values: Iterator[Any]) -> Any:
    """Leaf values in :func:`leaves` order -> a dict (Dict) or tuple (Tuple) nested like ``space``."""
    if isinstance(space, spaces.Dict):
        return {key: nest_like(sub, values) for key, sub in space.spaces.items()}
    if isinstance(space, spaces.Tuple):
        return tuple(nest_like(sub, values) for sub in space.spaces)
    return next(values)


def action_leaves(space: spaces.Space) -> list[tuple[Path, spaces.Space]]:
    """The leaves of a composite action space with their paths, each checked to be one of
    :data:`ACTION_LEAVES` (a ``TypeError`` names the first that is not). A plain space is its own
    single leaf (path ``()``)."""
    found = list(leaves(space))
    for path, leaf in found:
        if not isinstance(leaf, ACTION_LEAVES):
            raise TypeError(f"{path_str(path, 'action')} is {describe(leaf)}; action leaves must be Discrete, MultiDiscrete, MultiBinary or Box")
    return found


def action_widths(space: spaces.Space) -> list[int]:
    """Columns of each leaf (:func:`action_leaves` order) in the flat stored action of a
    composite space: 1 for a Discrete leaf, the number of elements for the others."""
    return [1 if isinstance(leaf, spaces.Discrete) else int(np.prod(leaf.shape)) for _, leaf in action_leaves(space)]


def mask_parts(space: spaces.Space) -> list[int]:
    """The sizes of the independent categorical choices of an action space, in the order of its
    normalised mask (:func:`mask_size` is their sum): ``[n]`` for ``Discrete(n)``, ``nvec`` for
    MultiDiscrete/MultiBinary, none for a Box, and the leaves' parts in order for a composite space."""
    parts: list[int] = []
    for _, leaf in action_leaves(space):
        if isinstance(leaf, spaces.Discrete):
            parts.append(int(leaf.n))
        elif isinstance(leaf, DISCRETE_LEAVES):
            parts.extend(int(n) for n in nvec(leaf))
    return parts


def flatten_mask(space: spaces.Space, raw: Any, invalid_indices: bool = False) -> np.ndarray:
    """A composite action space's mask as an env gives it, nested like the space (a dict for a
    Dict, a tuple or list for a Tuple), -> rladapt's flat boolean mask (:func:`mask_size`).

    Each discrete leaf's entry is its own mask (shape ``(n,)`` for ``Discrete(n)``, ``(sum(nvec),)``
    or ``nvec``-shaped per dimension for MultiDiscrete); a missing (or None) entry means every
    value of that leaf is valid; Box leaves have no entry. An array of the flat length is taken as
    it is (already flat). With ``invalid_indices`` each entry lists the leaf's invalid indices
    instead (the ``get_invalid_actions()`` convention).

    :param space: the composite action space.
    :param raw: the mask as the env gives it.
    :param invalid_indices: entries are indices of invalid values, not boolean masks.
    """
    flat = not isinstance(raw, (dict, tuple, list)) or (
        not isinstance(raw, dict) and all(isinstance(x, (bool, int, np.bool_, np.integer)) for x in raw))
    if flat:  # already rladapt's flat mask (an array, or a list of bools)
        return np.asarray(raw, dtype=bool).reshape(-1)
    pieces = []
    for path, leaf in action_leaves(space):
        if not isinstance(leaf, DISCRETE_LEAVES):
            continue
        size = mask_size(leaf)
        try:
            entry = get_leaf(raw, path)
        except (KeyError, IndexError, TypeError):
            entry = None
        if entry is None:
            pieces.append(np.ones(size, dtype=bool))
        elif invalid_indices:
            part = np.ones(size, dtype=bool)
            part[np.asarray(entry, dtype=np.int64).reshape(-1)] = False
            pieces.append(part)
        else:
            part = np.asarray(entry, dtype=bool).reshape(-1)
            if part.shape != (size,):
                raise ActionMaskError(f"the mask of {path_str(path, 'action')} has shape {np.shape(entry)}; {describe(leaf)} needs ({size},)")
            pieces.append(part)
    return np.concatenate(pieces)


def action_at(space: spaces.Space, actions: Any, index: int) -> Any:
    """Entry ``index`` of a batch of env actions (:func:`env_action`), nested like ``space``;
    a Discrete leaf's action as a Python int."""
    if isinstance(space, spaces.Dict):
        return {key: action_at(sub, actions[key], index) for key, sub in space.spaces.items()}
    if isinstance(space, spaces.Tuple):
        return tuple(action_at(sub, value, index) for sub, value in zip(space.spaces, actions))
    return int(actions[index]) if isinstance(space, spaces.Discrete) else actions[index]


def leaves(space: spaces.Space, path: Path = ()) -> Iterator[tuple[Path, spaces.Space]]:
    """Every non-composite leaf of a (possibly nested) Dict/Tuple space, with its path."""
    if isinstance(space, spaces.Dict):
        for key, sub in space.spaces.items():
            yield from leaves(sub, (*path, key))
    elif isinstance(space, spaces.Tuple):
        for i, sub in enumerate(space.spaces):
            yield from leaves(sub, (*path, i))
    else:
        yield path, space


def get_leaf(value: Any, path: Path) -> Any:
    """The entry of a nested observation at ``path``."""
    for key in path:
        value = value[key]
    return value


def index_size(space: spaces.Space) -> int | None:
    """Number of distinct values of a space made only of discrete leaves, else None."""
    total = 1
    for _, leaf in leaves(space):
        if isinstance(leaf, spaces.Discrete):
            total *= int(leaf.n)
        elif isinstance(leaf, (spaces.MultiDiscrete, spaces.MultiBinary)):
            total *= math.prod(int(n) for n in nvec(leaf))
        else:
            return None
    return total


def vector_size(space: spaces.Space) -> int:
    """Length of the float vector a non-image leaf becomes (one-hot for discrete leaves)."""
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    if isinstance(space, spaces.MultiDiscrete):
        return int(nvec(space).sum())
    if isinstance(space, (spaces.MultiBinary, spaces.Box)):
        return int(np.prod(space.shape))
    raise TypeError(f"{space} has no vector form")


def describe(space: spaces.Space) -> str:
    """Short human form of a space for plans and errors: ``uint8[210,160,3] image``, ``Discrete(6)``."""
    if isinstance(space, spaces.Box):
        shape = ",".join(str(s) for s in space.shape)
        text = f"{space.dtype}[{shape}]"
        if is_image(space):
            return f"{text} image"
        low, high = np.unique(space.low), np.unique(space.high)
        if low.size == 1 and high.size == 1 and np.isfinite(low[0]) and np.isfinite(high[0]):
            return f"{text} in [{low[0]:g}, {high[0]:g}]"
        return text
    if isinstance(space, spaces.Discrete):
        return f"Discrete({space.n})" if space.start == 0 else f"Discrete({space.n}, start={space.start})"
    if isinstance(space, spaces.MultiDiscrete):
        return f"MultiDiscrete({space.nvec.tolist()})"
    if isinstance(space, spaces.MultiBinary):
        return f"MultiBinary({space.n})"
    if isinstance(space, spaces.Dict):
        return "Dict(" + ", ".join(f"{k}: {describe(s)}" for k, s in space.spaces.items()) + ")"
    if isinstance(space, spaces.Tuple):
        return "Tuple(" + ", ".join(describe(s) for s in space.spaces) + ")"
    return type(space).__name__


def observation_mismatch(space: spaces.Space, obs: Any, root: str = "observation") -> str | None:
    """Why ``obs`` does not fit ``space``'s structure and shapes (the first leaf that does not),
    naming the leaf and both shapes; None when it fits. Values and dtypes are not judged here:
    see :func:`out_of_bounds` and :func:`cast_observation`.

    :param space: the declared observation space.
    :param obs: one observation.
    :param root: how the message names the observation.
    """
    for path, leaf in leaves(space):
        try:
            value = get_leaf(obs, path)
        except (KeyError, IndexError, TypeError):
            keys = sorted(obs) if isinstance(obs, dict) else type(obs).__name__
            return f"{path_str(path, root)} is missing (the observation has {keys}) but the space declares {describe(leaf)}"
        if isinstance(leaf, spaces.Discrete):
            if np.ndim(value) != 0 or not np.issubdtype(np.asarray(value).dtype, np.integer):
                return f"{path_str(path, root)} is {value!r} but the space declares {describe(leaf)} (one integer)"
        elif isinstance(leaf, (spaces.Box, spaces.MultiBinary, spaces.MultiDiscrete)):
            shape = np.shape(value)
            if shape != leaf.shape:
                return f"{path_str(path, root)} has shape {shape} but the space declares shape {leaf.shape} ({describe(leaf)})"
    return None


def out_of_bounds(space: spaces.Space, obs: Any, root: str = "observation") -> str | None:
    """Which value of ``obs`` lies outside ``space``'s bounds (or is not a valid value of a
    discrete leaf), naming the leaf, the element and the bounds; None when all are inside.
    Call it after :func:`observation_mismatch` found no mismatch.

    :param space: the declared observation space.
    :param obs: one observation.
    :param root: how the message names the observation.
    """
    for path, leaf in leaves(space):
        value = np.asarray(get_leaf(obs, path))
        if isinstance(leaf, spaces.Box):
            outside = ~((value >= leaf.low) & (value <= leaf.high))
        elif isinstance(leaf, spaces.Discrete):
            outside = np.asarray(not (leaf.start <= int(value) < leaf.start + leaf.n))
        elif isinstance(leaf, (spaces.MultiBinary, spaces.MultiDiscrete)):
            start = dimension_starts(leaf).reshape(leaf.shape)  # MultiDiscrete(start=...) shifts every dimension
            outside = ~((value >= start) & (value < start + nvec(leaf).reshape(leaf.shape)))
        else:
            continue
        if outside.any():
            where = tuple(int(i) for i in np.argwhere(outside)[0]) if outside.ndim else ()
            element = f"{path_str(path, root)}{list(where) if where else ''}"
            if isinstance(leaf, spaces.Box):
                low, high = leaf.low[where] if where else leaf.low, leaf.high[where] if where else leaf.high
                return f"{element} = {value[where] if where else value} is outside the declared bounds [{low}, {high}]"
            return f"{element} = {value[where] if where else value} is not a value of {describe(leaf)}"
    return None


def cast_observation(space: spaces.Space, obs: Any) -> Any:
    """``obs`` with every Box leaf as a numpy array of the space's dtype (the dtype gymnasium
    promises); other leaves unchanged. Call it after :func:`observation_mismatch` found no mismatch.

    :param space: the declared observation space.
    :param obs: one observation.
    """
    if isinstance(space, spaces.Box):
        return np.asarray(obs, dtype=space.dtype)
    if isinstance(space, spaces.Dict):
        return {key: cast_observation(sub, obs[key]) for key, sub in space.spaces.items()}
    if isinstance(space, spaces.Tuple):
        return tuple(cast_observation(sub, value) for sub, value in zip(space.spaces, obs))
    return obs
