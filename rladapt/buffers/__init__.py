"""Storage: rollouts for on-policy agents, replay (uniform, prioritised, n-step,
frame-deduplicating) for off-policy agents."""

from __future__ import annotations

from rladapt.buffers.replay import PrioritizedReplayBuffer, ReplayBuffer
from rladapt.buffers.sequence import SequenceReplay
from rladapt.buffers.rollout import RolloutBuffer, minibatch_indices
from rladapt.buffers.sumtree import SumTree

__all__ = ["PrioritizedReplayBuffer", "ReplayBuffer", "RolloutBuffer", "SequenceReplay", "SumTree", "minibatch_indices"]
