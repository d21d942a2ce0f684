"""The agent contract as types: what each layer reads from an agent, written where every layer can
import it (this module imports nothing of rladapt). :class:`~rladapt.agents.base.Agent` satisfies
them all; a custom agent built on it inherits them.

- :class:`CollectingAgent`: what every collector (in-process, worker processes, torchrun ranks)
  calls while stepping the envs.
- :class:`ActingAgent`: what acting outside training reads (``evaluate``, ``play``, an agent as
  an opponent or a seat at a human table).
- :class:`LearningAgent`: what the training loop, its callbacks and checkpoints read: a
  collecting and acting agent with the storage/update cycle, the run's counters and resume state.
- :class:`SelfPlayAgent`: what the self-play collector reads from a search agent (AlphaZero,
  MuZero) that plays whole games instead of stepping envs.

The collector's side of the contract is :class:`rladapt.collect.Collector`. Code that takes an
agent annotates it with the narrowest of these it needs; none probes an agent with ``getattr``.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from tensordict import TensorDictBase

__all__ = ["ActingAgent", "CollectingAgent", "LearningAgent", "SelfPlayAgent"]


@runtime_checkable
class CollectingAgent(Protocol):
    """What a collector reads from the agent it acts with: the policy (``explore``, the specs,
    ``env_action``) and, for collectors in other processes, the agent's recipe and counters. No
    collector asks which kind of agent it serves."""

    observation_space: Any
    action_space: Any
    #: Whether the envs hand action masks to ``explore``.
    use_masks: bool
    device: Any
    generator: Any
    #: The agent's settings (a dataclass): workers rebuild the agent from them.
    config: Any
    #: The family of the env the agent was bound to (workers bind their copy to the same).
    env_family: str
    num_timesteps: int
    num_updates: int
    #: The fraction of the run done, in [0, 1] (schedules read it in the workers too).
    progress: float
    #: True when the agent's updates need data from its current weights (on-policy): worker
    #: processes then collect in lockstep; False lets them run ahead with older weights.
    fresh_weights: bool

    def explore(self, td: TensorDictBase) -> TensorDictBase:
        """Act on a batch of observations while collecting; writes the keys of ``out_specs``."""
        ...

    def out_specs(self) -> dict[str, Any]:
        """``key -> (shape of one env's entry, dtype)`` of what ``explore`` writes."""
        ...

    def state_specs(self) -> dict[str, Any]:
        """``key -> (shape, dtype)`` of the state carried between steps (empty: none)."""
        ...

    def env_action(self, action: Any) -> Any:
        """Stored actions (a numpy batch) -> the env's actions."""
        ...

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        """The weights remote collectors receive (torch's ``Module.state_dict``)."""
        ...


@runtime_checkable
class ActingAgent(Protocol):
    """What acting outside training reads: ``evaluate``, ``play``, an agent seated as an
    opponent or at a human table."""

    observation_space: Any
    action_space: Any
    #: The agent's settings (a dataclass): opponents copy an agent from them.
    config: Any
    #: What the agent declares it needs of an env (:class:`rladapt.spec.AgentSpec`).
    spec: Any
    use_masks: bool
    #: The family of the env the agent was bound to (:func:`rladapt.adapt.env_family`).
    env_family: str

    def act(self, obs: Any, mask: np.ndarray | None = None, deterministic: bool = True, state: Any = None) -> Any:
        """One env's action (and the next recurrent state when the agent has one)."""
        ...

    def act_and_values(self, obs: Any, mask: np.ndarray | None = None, deterministic: bool = True,
                       state: Any = None) -> Any:
        """:meth:`act`, and the agent's view of each action (what ``play`` shows)."""
        ...

    def state_specs(self) -> dict[str, Any]:
        """``key -> (shape, dtype)`` of the state carried between steps (empty: none)."""
        ...

    def torch_threads(self) -> AbstractContextManager[None]:
        """Run torch with the agent's thread setting inside the block."""
        ...


@runtime_checkable
class LearningAgent(CollectingAgent, ActingAgent, Protocol):
    """What the training loop (:func:`rladapt.train.learn`), its callbacks and checkpoints read:
    the collect/store/update cycle, the run's counters, and what a checkpoint saves and restores."""

    #: The settings with the per-kind defaults filled in (``config`` with no None left).
    hp: Any
    num_episodes: int
    #: The run the schedules count over: its first env step, its planned steps, its directory.
    run_start: int
    run_steps: int
    run_dir: Path | None
    #: ``(run_start, run_steps, run_dir)`` of a run a mid-run checkpoint left unfinished.
    unfinished_run: tuple[int, int, Path | None] | None
    np_random: np.random.Generator

    def make_collector(self, source: Any, num_envs: int, workers: Any) -> Any:
        """The agent's own collector, or None for the usual ones (stepping envs)."""
        ...

    def collect_steps(self) -> int:
        """Vector steps per iteration."""
        ...

    def make_storage(self, num_envs: int, steps: int) -> Any:
        """Where the collected batches go (a rollout, a replay buffer, the last batch)."""
        ...

    def store(self, storage: Any, batch: TensorDictBase) -> Any:
        """Put one collected batch into the storage; returns the storage."""
        ...

    def ready(self, storage: Any) -> bool:
        """Whether the storage holds enough for an update."""
        ...

    def update(self, storage: Any, progress: float) -> dict[str, float]:
        """One update from the storage; returns its metrics."""
        ...

    def after_update(self, storage: Any) -> None:
        """After the update (e.g. clear an on-policy rollout)."""
        ...

    def settings(self, resolved: bool = False) -> dict[str, Any]:
        """The settings as a dict (``resolved``: with the per-kind defaults filled in)."""
        ...

    def save(self, path: str | Path, training_state: bool = False) -> Path:
        """Write a checkpoint; returns its path."""
        ...

    def optimizers(self) -> dict[str, Any]:
        """The optimisers a checkpoint with training state saves."""
        ...

    def resume_state(self) -> dict[str, Any]:
        """Agent-specific training state beyond weights and optimisers (e.g. a noise process)."""
        ...

    def load_resume_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`resume_state` returned."""
        ...

    def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:
        """Load weights (torch's ``Module.load_state_dict``)."""
        ...


@runtime_checkable
class SelfPlayAgent(LearningAgent, Protocol):
    """What the self-play collector (:mod:`rladapt.search.selfplay`) reads from a search agent
    that plays whole games against itself."""

    #: The turn-based game the agent searches (:class:`rladapt.search.game.TurnBasedGame`).
    game: Any

    def self_play_game(self, game: Any) -> dict[str, np.ndarray]:
        """Play one game against itself from the game's start; returns its positions' training
        samples (one row per position)."""
        ...

    def weights_changed(self) -> None:
        """Drop what was computed with the old weights (e.g. cached network evaluations)."""
        ...

    def reseed(self, seed: int | None) -> None:
        """Reseed the agent's generators (each self-play worker gets its own seed)."""
        ...
