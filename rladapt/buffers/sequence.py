"""Sequence replay for world-model agents (DreamerV3): one circular stream of steps per env,
sampled as ``[batch, length]`` windows of consecutive steps.

A step is what the world model reads at one time index: the observation, the action that led to
it (zeros at an episode's first step), the reward received on arriving, ``is_first`` (an episode
starts here: the model resets its state) and ``is_terminal`` (the episode ended here by
termination, not truncation). Windows may cross episode boundaries, as in DreamerV3: ``is_first``
inside a window tells the model where to start again. The keys and their shapes are fixed by the
first :meth:`SequenceReplay.add`.

>>> import torch
>>> rb = SequenceReplay(100, num_envs=2)
>>> for t in range(10):
...     rb.add({"x": torch.full((2, 1), float(t))})
>>> window = rb.sample(3, 4, np.random.default_rng(0))["x"]
>>> tuple(window.shape), bool((window[:, 1:] - window[:, :-1] == 1).all())
((3, 4, 1), True)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["SequenceReplay"]


class SequenceReplay:
    """Circular per-env streams of steps (see the module docstring).

    :param capacity: steps kept over all envs; each env keeps ``capacity // num_envs`` of them.
    :param num_envs: the number of env streams.
    """

    def __init__(self, capacity: int, num_envs: int) -> None:
        if capacity < num_envs or num_envs < 1:
            raise ValueError(f"SequenceReplay needs num_envs >= 1 and capacity >= num_envs; got capacity={capacity}, "
                             f"num_envs={num_envs}")
        self.capacity, self._num_envs = int(capacity), int(num_envs)
        self.env_capacity = self.capacity // self._num_envs
        self.storage: dict[str, torch.Tensor] = {}
        self.written = np.zeros(self._num_envs, dtype=np.int64)  # steps ever written per env (the cursor)

    @property
    def num_envs(self) -> int:
        """Number of env streams."""
        return self._num_envs

    def __len__(self) -> int:
        return int(np.minimum(self.written, self.env_capacity).sum())

    def add(self, step: dict[str, torch.Tensor], env_ids: np.ndarray | None = None) -> None:
        """Append one step to each of the given envs' streams (copied).

        :param step: ``key -> [len(env_ids), ...]`` tensors.
        :param env_ids: the envs the rows belong to (None: every env, in order).
        """
        envs = np.arange(self._num_envs) if env_ids is None else np.asarray(env_ids, dtype=np.int64).reshape(-1)
        if len(envs) == 0:
            return
        if not self.storage:
            self.storage = {k: torch.zeros((self._num_envs, self.env_capacity, *v.shape[1:]), dtype=v.dtype)
                            for k, v in step.items()}
        if set(step) != set(self.storage):
            raise KeyError(f"SequenceReplay stores {sorted(self.storage)}; this step has {sorted(step)}")
        slots = torch.from_numpy(self.written[envs] % self.env_capacity)
        index = torch.from_numpy(envs)
        for key, value in step.items():
            self.storage[key][index, slots] = value.detach().to("cpu", self.storage[key].dtype)
        self.written[envs] += 1

    def sample(self, batch_size: int, length: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """``batch_size`` windows of ``length`` consecutive steps of one env each, uniformly over
        every window that lies in the stored part of a stream: ``key -> [batch_size, length, ...]``.

        :param batch_size: windows per batch.
        :param length: steps per window.
        :param rng: the numpy generator drawing the windows (the agent's, so a resumed run draws the same).
        """
        stored = np.minimum(self.written, self.env_capacity)
        windows = np.maximum(stored - length + 1, 0)
        if windows.sum() == 0:
            raise ValueError(f"SequenceReplay holds no window of {length} steps yet ({len(self)} steps over "
                             f"{self._num_envs} envs); collect more before sampling")
        pick = rng.choice(int(windows.sum()), size=batch_size)
        env = np.searchsorted(np.cumsum(windows), pick, side="right")
        offset = pick - (np.cumsum(windows) - windows)[env]
        oldest = self.written[env] - stored[env]  # absolute index of each stream's oldest kept step
        slots = (oldest[:, None] + offset[:, None] + np.arange(length)[None]) % self.env_capacity
        env_t, slots_t = torch.from_numpy(env[:, None]), torch.from_numpy(slots)
        return {key: value[env_t, slots_t] for key, value in self.storage.items()}

    def state_dict(self) -> dict[str, Any]:
        """The contents and cursors as tensors (``config[3]`` is the number of envs, as the
        checkpoint reader expects of every replay)."""
        return {"config": torch.tensor([self.capacity, 0, 0, self._num_envs], dtype=torch.int64),
                "written": torch.from_numpy(self.written.copy()),
                "storage": {key: value for key, value in self.storage.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` into a buffer of the same capacity and envs.

        :param state: what :meth:`state_dict` returned (possibly after a save/load round trip).
        """
        capacity, _, _, num_envs = (int(x) for x in state["config"].tolist())
        if (capacity, num_envs) != (self.capacity, self._num_envs):
            raise ValueError(f"sequence replay state was saved with capacity {capacity} over {num_envs} envs; "
                             f"this buffer has {self.capacity} over {self._num_envs}")
        self.written = state["written"].numpy().copy()
        self.storage = {key: value.clone() for key, value in state["storage"].items()}

    def __repr__(self) -> str:
        return f"SequenceReplay(capacity={self.capacity}, len={len(self)}, num_envs={self._num_envs})"
