"""Rollout storage for on-policy agents: the collected ``[n_steps, num_envs]`` batch plus the
advantages and value targets computed on it.

The batch is the collector's own (written in place by the envs' steps: no copy); this buffer adds
``advantage`` and ``value_target``, preallocated once. ``next/observation`` of row ``t`` is the
observation of row ``t + 1`` (the batch stores them as one tensor), and the last row's is the
bootstrap observation.
"""

from __future__ import annotations

from typing import Iterator

import torch
from tensordict import TensorDict, TensorDictBase


class RolloutBuffer:
    """``n_steps`` consecutive vector steps of ``num_envs`` envs, with GAE.

    :param n_steps: steps per env per rollout.
    :param num_envs: envs.
    :param device: torch device of the advantages (the batch's).
    """

    def __init__(self, n_steps: int, num_envs: int, device: torch.device | str = "cpu") -> None:
        self.n_steps, self.num_envs = n_steps, num_envs
        self.device = torch.device(device)
        self.advantage = torch.zeros((n_steps, num_envs), dtype=torch.float32, device=self.device)
        self.value_target = torch.zeros_like(self.advantage)
        #: The rollout: the collected batch's entries plus ``advantage`` and ``value_target``.
        self.data: TensorDict | None = None

    def set(self, batch: TensorDictBase) -> None:
        """Take a collected batch ``[n_steps, num_envs]`` (its tensors, not a copy)."""
        if tuple(batch.batch_size) != (self.n_steps, self.num_envs):
            raise ValueError(f"a rollout of {self.n_steps} steps x {self.num_envs} envs got a batch of {tuple(batch.batch_size)}")
        data = batch.copy()  # a new TensorDict over the batch's tensors
        data.set("advantage", self.advantage)
        data.set("value_target", self.value_target)
        self.data = data

    def compute_advantages(self, last_value: torch.Tensor, gamma: float, gae_lambda: float) -> None:
        """Generalised advantage estimation, exact under NEXT_STEP autoreset.

        For row ``t``, the next value is ``value[t + 1]`` (``last_value`` after the last row). When
        row ``t`` ends an episode, row ``t + 1`` is the invalid reset step whose observation is the
        true final observation, so ``value[t + 1]`` is the bootstrap a truncation needs;
        termination multiplies it by zero. A done also stops the recursion, so the invalid row never
        leaks into the advantages of valid ones. Writes ``advantage`` and ``value_target``.
        """
        data = self.data
        values = data.get("value")
        rewards = data.get(("next", "reward"))
        terminated = data.get(("next", "terminated"))
        done = data.get(("next", "done"))
        next_values = torch.cat([values[1:], last_value.reshape(1, -1).to(values)])
        deltas = rewards + gamma * next_values * (~terminated) - values
        decay = (gamma * gae_lambda) * (~done).float()
        advantages = data.get("advantage")
        running = torch.zeros_like(last_value, dtype=torch.float32).reshape(-1)
        for t in reversed(range(self.n_steps)):
            running = torch.addcmul(deltas[t], decay[t], running, out=advantages[t])
        torch.add(advantages, values, out=data.get("value_target"))

    def transitions(self, keys: list) -> TensorDict:
        """The valid rows, flattened to ``[B]`` (only ``keys``). No copy when every row is valid."""
        flat = self.data.select(*keys).reshape(-1)
        valid = self.data.get("valid").reshape(-1)
        if bool(valid.all()):
            return flat
        return flat[valid]

    def sequences(self, keys: list, length: int) -> TensorDict:
        """The rollout cut into chunks of ``length`` consecutive steps per env: a ``[length, K]``
        TensorDict (only ``keys``) whose column ``c * num_envs + n`` is steps ``c * length ..
        (c + 1) * length - 1`` of env ``n`` (``K = n_steps // length * num_envs``). Every row is
        kept, the invalid autoreset rows too (``valid`` says which count): a recurrent policy
        replays each chunk from the state stored at its first row.

        :param keys: the entries to keep (``observation``, ``is_init``, ``valid``, the stored state ...).
        :param length: steps per chunk; it must divide ``n_steps``.
        """
        if length < 1 or self.n_steps % length:
            raise ValueError(f"sequence chunks of {length} steps do not divide the rollout's {self.n_steps} steps")
        chunks, n = self.n_steps // length, self.num_envs

        def cut(x: torch.Tensor) -> torch.Tensor:
            rest = x.shape[2:]
            return x.reshape(chunks, length, n, *rest).transpose(0, 1).reshape(length, chunks * n, *rest)

        return self.data.select(*keys).apply(cut, batch_size=[length, chunks * n])


def minibatch_indices(n: int, batch_size: int, generator: torch.Generator | None) -> Iterator[torch.Tensor | None]:
    """Shuffled index chunks of ``batch_size`` covering ``n`` samples (the last may be smaller).

    Yields ``None`` once when one minibatch holds everything: the whole batch, no shuffle needed.
    """
    if batch_size >= n:
        yield None
        return
    perm = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        chunk = perm[start : start + batch_size]
        if len(chunk) < batch_size // 2 and start > 0:  # fold a tiny remainder into nothing
            return
        yield chunk
