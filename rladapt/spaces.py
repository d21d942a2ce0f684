"""Classify gymnasium spaces for AutoAdapt's rules: vector, image, discrete index, nested."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
from gymnasium import spaces

#: Leaf spaces no network can read; AutoAdapt drops them with a plan entry.
UNUSABLE_LEAVES = (spaces.Text, spaces.Graph, spaces.Sequence, spaces.OneOf)
#: Leaves that are a finite set of values (one index, or several).
DISCRETE_LEAVES = (spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)

Path = tuple[Any, ...]


def path_str(path: Path, root: str = "observation") -> str:
    """``("pixels", 0)`` -> ``observation['pixels'][0]``: how errors and plans name a leaf."""
    return root + "".join(f"[{p!r}]" for p in path)


def is_image(space: spaces.Space) -> bool:
    """A uint8 Box in [0, 255] shaped HW, HWC or CHW (C in 1, 3, 4), at least 8x8 pixels."""
    if not isinstance(space, spaces.Box) or space.dtype != np.uint8:
        return False
    if not (np.all(space.low == 0) and np.all(space.high == 255)):
        return False
    return image_layout(space.shape) is not None


def image_layout(shape: tuple[int, ...]) -> str | None:
    """``"HW"``, ``"HWC"`` or ``"CHW"`` for an image shape, None when the shape is not an image."""
    if len(shape) == 2 and min(shape) >= 8:
        return "HW"
    if len(shape) == 3:
        if shape[-1] in (1, 3, 4) and min(shape[:2]) >= 8:
            return "HWC"
        if shape[0] in (1, 3, 4) and min(shape[1:]) >= 8:
            return "CHW"
    return None


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
        elif isinstance(leaf, spaces.MultiDiscrete):
            total *= math.prod(int(n) for n in leaf.nvec.reshape(-1))
        elif isinstance(leaf, spaces.MultiBinary):
            total *= 2 ** int(np.prod(leaf.shape))
        else:
            return None
    return total


def vector_size(space: spaces.Space) -> int:
    """Length of the float vector a non-image leaf becomes (one-hot for discrete leaves)."""
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    if isinstance(space, spaces.MultiDiscrete):
        return int(space.nvec.sum())
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
