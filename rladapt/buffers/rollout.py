"""Rollout storage for on-policy agents: a preallocated ``[n_steps, num_envs]`` TensorDict.

Allocated once, from the first collector step (so it holds exactly the keys the policy writes, in
their dtypes), then written in place. ``next/observation`` is not stored: the next observation of
row ``t`` is the observation of row ``t + 1`` (and of the collector's current step after the last row).
"""

from __future__ import annotations

from typing import Iterator

import torch
from tensordict import TensorDict, TensorDictBase

#: Keys of the collector's step that on-policy storage does not need.
SKIPPED_KEYS = (("next", "observation"), ("next", "action_mask"))


class RolloutBuffer:
    """``n_steps`` consecutive vector steps of ``num_envs`` envs.

    :param n_steps: steps per env per rollout.
    :param device: torch device of the storage.
    """

    def __init__(self, n_steps: int, device: torch.device | str = "cpu") -> None:
        self.n_steps = n_steps
        self.device = torch.device(device)
        self.data: TensorDict | None = None
        self._keys: list = []
        self._rows: list[list[torch.Tensor]] = []

    @torch.inference_mode(False)  # normal tensors, even when the first add runs in inference mode
    def _allocate(self, step: TensorDictBase) -> None:
        template = step.exclude(*SKIPPED_KEYS)
        data = torch.zeros_like(template.unsqueeze(0).expand(self.n_steps, *template.batch_size)).to(self.device)
        n = (self.n_steps, *template.batch_size)
        data.set("advantage", torch.zeros(n, dtype=torch.float32, device=self.device))
        data.set("value_target", torch.zeros(n, dtype=torch.float32, device=self.device))
        self.data = data
        # (key, per-row views): add() copies into these without TensorDict indexing.
        self._keys = list(template.keys(include_nested=True, leaves_only=True))
        rows = [data.get(key).unbind(0) for key in self._keys]
        self._rows = [[r[t] for r in rows] for t in range(self.n_steps)]  # row t: one view per key

    def add(self, t: int, step: TensorDictBase) -> None:
        """Copy one collector step into row ``t`` (in place)."""
        if self.data is None:
            self._allocate(step)
        torch._foreach_copy_(self._rows[t], [step.get(key) for key in self._keys])  # one call for all keys

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

    def valid_transitions(self, keys: list) -> TensorDict:
        """The valid rows, flattened to ``[B]`` (only ``keys``). No copy when every row is valid."""
        flat = self.data.select(*keys).reshape(-1)
        valid = self.data.get("valid").reshape(-1)
        if bool(valid.all()):
            return flat
        return flat[valid]


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
