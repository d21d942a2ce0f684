"""Observation conversions gymnasium lacks: nested/discrete spaces to float vectors, to one index,
and nested Dicts with images kept as images.

gymnasium's ``FlattenObservation`` one-hot encodes Discrete leaves as int64 and needs a second
``DtypeObservation`` wrapper (and a second Python call per step) to reach float32; it also cannot
drop unusable leaves (Text, Graph, Sequence). These wrappers do each conversion in one pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import cv2
import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rladapt.spaces import (
    DISCRETE_LEAVES,
    Path,
    dimension_starts,
    get_leaf,
    image_layout,
    index_size,
    is_image,
    leaves,
    nvec,
    path_str,
    vector_size,
)


def _vector_writer(space: spaces.Space) -> Callable[[Any, np.ndarray], None]:
    """A function writing one leaf's value as floats into a slice of the output vector."""
    if isinstance(space, spaces.Discrete):
        start = int(space.start)

        def one_hot(value: Any, out: np.ndarray) -> None:
            out[:] = 0.0
            out[int(value) - start] = 1.0

        return one_hot
    if isinstance(space, spaces.MultiDiscrete):
        offsets = np.concatenate([[0], np.cumsum(nvec(space))[:-1]])
        starts = dimension_starts(space)

        def multi_one_hot(value: Any, out: np.ndarray) -> None:
            out[:] = 0.0
            out[offsets + np.asarray(value).reshape(-1) - starts] = 1.0

        return multi_one_hot

    def flat(value: Any, out: np.ndarray) -> None:
        out[:] = np.asarray(value).reshape(-1)

    return flat


def _bounds(space: spaces.Space) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(space, spaces.Box):
        return space.low.reshape(-1).astype(np.float32), space.high.reshape(-1).astype(np.float32)
    size = vector_size(space)
    return np.zeros(size, np.float32), np.ones(size, np.float32)


class VectorObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Turns any observation made of Box, Discrete, MultiDiscrete and MultiBinary leaves (nested in
    Dict/Tuple or not) into one flat float32 vector: Box leaves flattened, discrete leaves one-hot,
    leaves concatenated in space order. Leaves listed in ``drop`` are left out.

    Example:
        >>> env = VectorObservation(gym.make("Blackjack-v1"))
        >>> env.observation_space
        Box(0.0, 1.0, (45,), float32)

    :param env: the env to wrap.
    :param drop: paths (tuples of Dict keys / Tuple indices) of leaves to leave out.
    """

    def __init__(self, env: gym.Env, drop: Sequence[Sequence[Any]] = ()):
        gym.utils.RecordConstructorArgs.__init__(self, drop=[list(p) for p in drop])
        gym.ObservationWrapper.__init__(self, env)
        dropped = {tuple(p) for p in drop}
        kept = [(p, s) for p, s in leaves(env.observation_space) if p not in dropped]
        if not kept:
            raise ValueError("VectorObservation: no leaf left to convert")
        self._nested = kept[0][0] != () or len(kept) > 1
        self._paths: list[Path] = []
        self._leaves: list[spaces.Space] = []
        self._writers: list[tuple[slice, Callable[[Any, np.ndarray], None]]] = []
        lows, highs, offset = [], [], 0
        for path, leaf in kept:
            size = vector_size(leaf)
            self._paths.append(path)
            self._leaves.append(leaf)
            self._writers.append((slice(offset, offset + size), _vector_writer(leaf)))
            low, high = _bounds(leaf)
            lows.append(low)
            highs.append(high)
            offset += size
        self._size = offset
        # A plain Box only needs a reshape and a cast, a single Discrete a one-hot: skip the per-leaf loop.
        leaf = kept[0][1]
        self._plain_box = not self._nested and isinstance(leaf, spaces.Box)
        self._one_hot_start = int(leaf.start) if not self._nested and isinstance(leaf, spaces.Discrete) else None
        self.observation_space = spaces.Box(np.concatenate(lows), np.concatenate(highs), dtype=np.float32)

    def describe_index(self, index: int, root: str = "observation") -> str:
        """Where entry ``index`` of the vector comes from in the wrapped env's observation, as
        its own keys name it: ``observation['vel'][1]`` (a Box leaf's element, in the leaf's shape),
        ``observation['mode'] (one-hot entry 2)`` (a discrete leaf).

        :param index: an index into this wrapper's observation vector.
        :param root: what to call the observation.
        :raises IndexError: ``index`` is outside the vector.
        """
        if not 0 <= index < self._size:
            raise IndexError(f"index {index} is outside the observation vector of size {self._size}")
        for path, leaf, (where, _) in zip(self._paths, self._leaves, self._writers):
            if where.start <= index < where.stop:
                name, offset = path_str(path, root), index - where.start
                if not isinstance(leaf, spaces.Box):
                    return f"{name} (one-hot entry {offset})"
                element = np.unravel_index(offset, leaf.shape) if leaf.shape else ()
                return name + (f"[{', '.join(str(int(i)) for i in element)}]" if element else "")
        raise AssertionError("the writers cover the whole vector")  # pragma: no cover

    def observation(self, observation: Any) -> np.ndarray:
        if self._plain_box:
            return np.asarray(observation, dtype=np.float32).reshape(self._size)
        if self._one_hot_start is not None:
            one_hot = np.zeros(self._size, dtype=np.float32)
            one_hot[int(observation) - self._one_hot_start] = 1.0
            return one_hot
        out = np.empty(self._size, dtype=np.float32)
        for path, (where, write) in zip(self._paths, self._writers):
            write(get_leaf(observation, path), out[where])
        return out


class FlatIndexObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Turns an observation of discrete leaves (Tuple/Dict of Discrete, MultiDiscrete, MultiBinary)
    into one index of a ``Discrete(product of sizes)``: the mixed-radix number of its digits, first
    leaf most significant. Tabular agents need one state index.

    Example:
        >>> env = FlatIndexObservation(gym.make("Blackjack-v1"))
        >>> env.observation_space
        Discrete(704)

    :param env: the env to wrap.
    """

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        size = index_size(env.observation_space)
        if size is None:
            raise ValueError(f"FlatIndexObservation needs discrete leaves, got {env.observation_space}")
        self._paths: list[Path] = []
        radices: list[int] = []
        starts: list[int] = []
        self._flat: list[bool] = []
        for path, leaf in leaves(env.observation_space):
            self._paths.append(path)
            if isinstance(leaf, spaces.Discrete):
                radices.append(int(leaf.n))
                starts.append(int(leaf.start))
                self._flat.append(False)
            else:
                radices.extend(int(n) for n in nvec(leaf))
                starts.extend(int(s) for s in dimension_starts(leaf))
                self._flat.append(True)
        self._radices = tuple(radices)
        self._starts = np.array(starts, dtype=np.int64)
        self.observation_space = spaces.Discrete(size)

    def observation(self, observation: Any) -> int:
        digits = []
        for path, flat in zip(self._paths, self._flat):
            value = get_leaf(observation, path)
            digits.extend(np.asarray(value).reshape(-1).tolist() if flat else [int(value)])
        return int(np.ravel_multi_index(tuple(np.array(digits) - self._starts), self._radices))


def to_channel_first(image: np.ndarray, layout: str, size: tuple[int, int] | None, grayscale: bool) -> np.ndarray:
    """One image leaf -> uint8 channel-first (C, H, W), optionally grayscale and resized (W, H order
    as in gymnasium's ResizeObservation: ``size`` is (height, width)). A ``"stack"`` of
    channel-first images is already what networks read: it passes unchanged."""
    if layout == "stack":
        return np.ascontiguousarray(image)
    if layout == "CHW":
        image = np.transpose(image, (1, 2, 0))
    elif layout == "HW":
        image = image[:, :, None]
    if grayscale and image.shape[-1] == 3:
        image = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)[:, :, None]
    if size is not None and image.shape[:2] != tuple(size):
        resized = cv2.resize(np.ascontiguousarray(image), (size[1], size[0]), interpolation=cv2.INTER_AREA)
        image = resized.reshape(size[0], size[1], -1)
    return np.ascontiguousarray(np.transpose(image, (2, 0, 1)))


def image_target_shape(shape: tuple[int, ...], size: tuple[int, int] | None, grayscale: bool) -> tuple[int, int, int]:
    """The (C, H, W) shape ``to_channel_first`` produces for an image of ``shape`` (a ``"stack"``
    keeps its shape)."""
    layout = image_layout(shape)
    if layout == "stack":
        return tuple(shape)
    if layout == "HW":
        channels, height, width = 1, *shape
    elif layout == "HWC":
        height, width, channels = shape
    else:
        channels, height, width = shape
    if grayscale and channels == 3:
        channels = 1
    if size is not None:
        height, width = size
    return channels, height, width


class NestedObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Turns a nested observation into the flat Dict that multi-input networks read: each image leaf
    kept as a uint8 channel-first image under its path name (``"a/b"``), every other usable leaf
    concatenated into one float32 ``"vector"`` entry. Leaves in ``drop`` are left out.

    Example:
        >>> class Camera(gym.Env):
        ...     observation_space = spaces.Dict({"pixels": spaces.Box(0, 255, (64, 64, 3), np.uint8),
        ...                                      "pos": spaces.Box(-1, 1, (2,)), "mode": spaces.Discrete(3)})
        ...     action_space = spaces.Discrete(2)
        >>> NestedObservation(Camera()).observation_space
        Dict('pixels': Box(0, 255, (3, 64, 64), uint8), 'vector': Box(..., (5,), float32))

    :param env: the env to wrap.
    :param drop: paths of leaves to leave out (e.g. Text leaves).
    :param image_size: (height, width) images larger than this are resized to; None keeps sizes.
    :param grayscale: convert RGB image leaves to one channel.
    """

    def __init__(
        self,
        env: gym.Env,
        drop: Sequence[Sequence[Any]] = (),
        image_size: Sequence[int] | None = None,
        grayscale: bool = False,
    ):
        gym.utils.RecordConstructorArgs.__init__(
            self, drop=[list(p) for p in drop], image_size=None if image_size is None else list(image_size), grayscale=grayscale
        )
        gym.ObservationWrapper.__init__(self, env)
        dropped = {tuple(p) for p in drop}
        self._images: list[tuple[str, Path, str, tuple[int, int] | None]] = []
        vector_leaves: list[tuple[Path, spaces.Space]] = []
        entries: dict[str, spaces.Space] = {}
        for path, leaf in leaves(env.observation_space):
            if path in dropped:
                continue
            if is_image(leaf):
                height, width = image_target_shape(leaf.shape, None, False)[-2:]
                larger = image_size is not None and (height > image_size[0] or width > image_size[1])
                larger = larger and image_layout(leaf.shape) != "stack"  # stacks are not resized
                size = tuple(image_size) if larger else None
                name = "/".join(str(p) for p in path) or "image"
                entries[name] = spaces.Box(0, 255, image_target_shape(leaf.shape, size, grayscale), np.uint8)
                self._images.append((name, path, image_layout(leaf.shape), size))
            elif isinstance(leaf, (spaces.Box, *DISCRETE_LEAVES)):
                vector_leaves.append((path, leaf))
        self._grayscale = grayscale
        self._vector_paths: list[Path] = [p for p, _ in vector_leaves]
        self._writers = []
        lows, highs, offset = [], [], 0
        for _, leaf in vector_leaves:
            size = vector_size(leaf)
            self._writers.append((slice(offset, offset + size), _vector_writer(leaf)))
            low, high = _bounds(leaf)
            lows.append(low)
            highs.append(high)
            offset += size
        self._vector_size = offset
        if offset:
            entries["vector"] = spaces.Box(np.concatenate(lows), np.concatenate(highs), dtype=np.float32)
        if not entries:
            raise ValueError("NestedObservation: no usable leaf left")
        self.observation_space = spaces.Dict(entries)

    def observation(self, observation: Any) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for name, path, layout, size in self._images:
            out[name] = to_channel_first(np.asarray(get_leaf(observation, path)), layout, size, self._grayscale)
        if self._vector_size:
            vector = np.empty(self._vector_size, dtype=np.float32)
            for path, (where, write) in zip(self._vector_paths, self._writers):
                write(get_leaf(observation, path), vector[where])
            out["vector"] = vector
        return out


class _TransposeImage(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Moves an image's axes from layout ``source`` to ``target`` (gymnasium has no transpose
    wrapper: ``ReshapeObservation`` reshapes, which scrambles pixels)."""

    source: str
    axes: tuple[int, int, int]

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        space = env.observation_space
        if not isinstance(space, spaces.Box) or image_layout(space.shape) != self.source:
            raise ValueError(f"{type(self).__name__} needs a {self.source} image observation, got {space}")
        self.observation_space = spaces.Box(
            np.transpose(space.low, self.axes), np.transpose(space.high, self.axes), dtype=space.dtype
        )

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.transpose(observation, self.axes))


class ChannelFirstObservation(_TransposeImage):
    """Moves the channel axis of an HWC image first (HWC -> CHW), as torch convolutions expect.

    Example:
        >>> env = ChannelFirstObservation(gym.make("CarRacing-v3"))
        >>> env.observation_space
        Box(0, 255, (3, 96, 96), uint8)

    :param env: the env to wrap; its observation must be an HWC image.
    """

    source, axes = "HWC", (2, 0, 1)


class ChannelLastObservation(_TransposeImage):
    """Moves the channel axis of a CHW image last (CHW -> HWC), so gymnasium's image wrappers
    (ResizeObservation, GrayscaleObservation), which expect HWC, can process it.

    :param env: the env to wrap; its observation must be a CHW image.
    """

    source, axes = "CHW", (1, 2, 0)
