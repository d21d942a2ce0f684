"""The agent contract as types: what each layer reads from an agent, written where every layer can
import it (this module imports nothing of rladapt). :class:`~rladapt.agents.base.Agent` satisfies
them all; a custom agent built on it inherits them.

- :class:`CollectingAgent`: what every collector (in-process, worker processes, torchrun ranks)
  calls while stepping the envs.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from tensordict import TensorDictBase

__all__ = ["CollectingAgent"]


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
