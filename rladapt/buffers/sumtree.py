"""A vectorised sum/min segment tree for prioritised replay.

The tree is two flat float64 arrays (sum and min) of size ``2 * n`` where ``n`` is the smallest power
of two at least ``capacity``; leaf ``i`` lives at ``n + i`` and node ``k`` has children ``2k`` and
``2k + 1``. Every operation works on a whole batch of leaves at once: an update walks the
``log2(n)`` levels once with numpy fancy indexing, and sampling descends all queries level by level,
so no Python loop ever runs per element.
"""

from __future__ import annotations

import numpy as np


class SumTree:
    """Sum and min over non-negative leaf priorities, with batched updates and prefix-sum search.

    A leaf of priority 0 is never sampled (it stands for an empty or evicted slot) and is ignored by
    :attr:`min` (so importance weights normalise over live transitions only).

    :param capacity: number of leaves (slots of the replay storage).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"SumTree capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.n = 1 << max(1, (self.capacity - 1).bit_length())
        self.sum = np.zeros(2 * self.n, dtype=np.float64)
        self.min_ = np.full(2 * self.n, np.inf, dtype=np.float64)

    @property
    def total(self) -> float:
        """Sum of all leaf priorities."""
        return float(self.sum[1])

    @property
    def min(self) -> float:
        """Smallest positive leaf priority (``inf`` when every leaf is 0)."""
        return float(self.min_[1])

    def __getitem__(self, index: np.ndarray | int) -> np.ndarray:
        """Priorities of the given leaves."""
        return self.sum[np.asarray(index) + self.n]

    def update(self, index: np.ndarray, priority: np.ndarray | float) -> None:
        """Set the priorities of leaves ``index`` (duplicates: one of the values wins).

        :param index: int array of leaf indices in ``[0, capacity)``.
        :param priority: non-negative priorities, broadcast against ``index``.
        """
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        if index.size == 0:
            return
        priority = np.broadcast_to(np.asarray(priority, dtype=np.float64), index.shape)
        if np.any(priority < 0) or not np.all(np.isfinite(priority)):
            raise ValueError("priorities must be finite and >= 0")
        pos = index + self.n
        self.sum[pos] = priority
        self.min_[pos] = np.where(priority > 0, priority, np.inf)
        if index.size > self.n // 8:
            self._rebuild()  # touching a large share of leaves: one bottom-up pass is cheaper
            return
        # Recompute parents from their children (not by adding deltas) so duplicate indices and
        # float rounding never make a parent drift from the sum of its children.
        while pos[0] > 1:
            pos = pos >> 1
            left = pos << 1
            self.sum[pos] = self.sum[left] + self.sum[left + 1]
            self.min_[pos] = np.minimum(self.min_[left], self.min_[left + 1])

    def set_all(self, priority: np.ndarray) -> None:
        """Replace every leaf priority at once (``priority`` has ``capacity`` entries)."""
        priority = np.asarray(priority, dtype=np.float64)
        self.sum[self.n : self.n + self.capacity] = priority
        self.sum[self.n + self.capacity :] = 0.0
        leaves = self.sum[self.n :]
        self.min_[self.n :] = np.where(leaves > 0, leaves, np.inf)
        self._rebuild()

    def _rebuild(self) -> None:
        lo = self.n >> 1
        while lo >= 1:
            self.sum[lo : 2 * lo] = self.sum[2 * lo : 4 * lo : 2] + self.sum[2 * lo + 1 : 4 * lo : 2]
            self.min_[lo : 2 * lo] = np.minimum(
                self.min_[2 * lo : 4 * lo : 2], self.min_[2 * lo + 1 : 4 * lo : 2]
            )
            lo >>= 1

    def find(self, mass: np.ndarray) -> np.ndarray:
        """Leaves whose cumulative-priority interval contains each ``mass`` in ``[0, total)``.

        Leaf ``i`` is returned for a uniform ``mass`` with probability ``priority[i] / total``.
        A subtree of zero mass is never entered, so a leaf of priority 0 is never returned while
        the total is positive (float rounding at interval edges cannot reach an empty slot).
        """
        if self.sum[1] <= 0:
            raise ValueError("cannot sample from a SumTree whose priorities are all 0")
        mass = np.array(mass, dtype=np.float64).reshape(-1)
        node = np.ones(mass.shape, dtype=np.int64)
        while node[0] < self.n:
            left = node << 1
            left_sum = self.sum[left]
            go_right = (mass >= left_sum) & (self.sum[left + 1] > 0)
            go_right |= left_sum <= 0
            mass -= np.where(go_right, left_sum, 0.0)
            node = left + go_right
        return node - self.n

    def state_dict(self) -> dict[str, np.ndarray]:
        """Leaf priorities (the inner nodes are rebuilt on load)."""
        return {"priority": self.sum[self.n : self.n + self.capacity].copy()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.set_all(np.asarray(state["priority"]))
