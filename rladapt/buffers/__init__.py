"""Transition storage: replay (uniform, prioritised, n-step, frame-deduplicating).

Rollout storage for on-policy agents lives in :mod:`rladapt.buffers.rollout`; its public names are
also reachable from this package (loaded on first use, so this module does not depend on it).
"""

from __future__ import annotations

import importlib
from typing import Any

from rladapt.buffers.replay import PrioritizedReplayBuffer, ReplayBuffer
from rladapt.buffers.sumtree import SumTree

__all__ = ["ReplayBuffer", "PrioritizedReplayBuffer", "SumTree"]


def __getattr__(name: str) -> Any:
    # Lazy re-export of rollout storage: the two modules are written separately and neither import
    # should break the other.
    if name.startswith("_") or name == "rollout":
        raise AttributeError(f"module 'rladapt.buffers' has no attribute {name!r}")
    try:
        rollout = importlib.import_module("rladapt.buffers.rollout")
    except ModuleNotFoundError as exc:
        if exc.name != "rladapt.buffers.rollout":
            raise
        raise AttributeError(f"module 'rladapt.buffers' has no attribute {name!r}") from None
    try:
        return getattr(rollout, name)
    except AttributeError:
        raise AttributeError(f"module 'rladapt.buffers' has no attribute {name!r}") from None
