"""The off-policy family (DQN, SAC, Q-learning ...): collect ``train_freq`` vector steps per
iteration into a replay buffer, acting uniformly at random (among the valid actions) before
``learning_starts`` steps and with the agent's exploration afterwards; then ``gradient_steps``
gradient steps once ``learning_starts`` steps are collected. Worker processes may collect ahead with
weights a few updates old (``fresh_weights = False``).

A subclass writes ``build`` (networks, optimiser), ``build_replay(num_envs)`` (or overrides
``store`` to learn from each batch without replay, as tabular Q-learning does), ``act_batch`` and
``update(replay, progress)``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from tensordict import TensorDictBase

from rladapt.agents.base import Agent, AgentConfig
from rladapt.agents.masks import epsilon_greedy, random_actions

__all__ = ["EpsilonGreedyAgent", "OffPolicyAgent", "OffPolicyConfig", "replay_frame_stack"]


@dataclass
class OffPolicyConfig(AgentConfig):
    """Settings of off-policy agents (None: the per-kind default).

    :param learning_starts: env steps collected (with uniformly random valid actions) before the
        first update.
    :param train_freq: vector steps collected per iteration (``train_freq * num_envs`` env steps).
    :param gradient_steps: gradient steps per iteration.
    """

    learning_starts: int | None = None
    train_freq: int | None = None
    gradient_steps: int | None = None


def replay_frame_stack(agent: Agent, frame_dedup: bool | None) -> int | None:
    """The replay's ``frame_stack``: the stack size when observations are stacked image frames
    (``(spec.frame_stack, H, W)``, as AutoAdapt stacks Atari frames) so each frame is stored once;
    None otherwise. ``frame_dedup`` forces it on (True) or off (False)."""
    shape = getattr(agent.observation_space, "shape", None) or ()
    stacked = agent.obs_kind == "image" and len(shape) == 3 and shape[0] == agent.spec.frame_stack > 1
    if frame_dedup is None:
        frame_dedup = stacked
    return int(shape[0]) if frame_dedup and agent.obs_kind == "image" else None


class OffPolicyAgent(Agent):
    """Stores every collected step in a replay buffer (:meth:`build_replay`) and calls
    :meth:`update` once ``learning_starts`` steps are collected.

    The default :meth:`store` hands each row of the batch to the replay buffer's ``extend``, which
    copies it and leaves out the rows with ``valid == False`` (the reset step of NEXT_STEP
    autoreset is not a transition). Before ``learning_starts`` the agent acts uniformly at random
    among the valid actions (:meth:`random_actions`); afterwards through
    ``act_batch(td, deterministic=False)``, i.e. with the agent's exploration.
    """

    Config: ClassVar[type[AgentConfig]] = OffPolicyConfig
    fresh_weights: ClassVar[bool] = False

    #: The replay buffer (kept across ``learn`` calls; rebuilt when the number of envs changes).
    replay: Any = None

    def build_replay(self, num_envs: int) -> Any:
        """A replay buffer for ``num_envs`` envs (None: the agent keeps no replay)."""
        return None

    def random_actions(self, td: TensorDictBase) -> TensorDictBase:
        """Write uniformly random (valid, when ``action_mask`` is present) actions into ``td``."""
        td.set("action", random_actions(self.action_space, td.shape[0], self.generator, td.get("action_mask", None), self.device))
        return td

    def explore(self, td: TensorDictBase) -> TensorDictBase:
        """Uniformly random valid actions before ``learning_starts``, then the agent's exploration."""
        if self.num_timesteps < (self.hp.learning_starts or 0):
            return self.random_actions(td)
        return self.act_batch(td, deterministic=False)

    # -- the loop's hooks ----------------------------------------------------------------------
    def collect_steps(self) -> int:
        return int(self.hp.train_freq)

    def make_storage(self, num_envs: int, steps: int) -> Any:
        """The replay buffer, kept across ``learn`` calls with the same number of envs."""
        if self.replay is None or self.replay.num_envs not in (None, num_envs):
            if self.replay is not None and len(self.replay):
                warnings.warn(f"{type(self).__name__}: the replay buffer of {len(self.replay):,} transitions is per env "
                              f"and was filled by {self.replay.num_envs} envs; this run has {num_envs}: it starts "
                              f"an empty one", stacklevel=2)
            self.replay = self.build_replay(num_envs)
        return self.replay

    def store(self, replay: Any, batch: TensorDictBase) -> Any:
        """Write every step of the batch into the replay buffer (which copies it)."""
        for t in range(batch.shape[0]):
            replay.extend(batch[t])
        return replay

    def ready(self, replay: Any) -> bool:
        """Once ``learning_starts`` env steps are collected."""
        return self.num_timesteps >= (self.hp.learning_starts or 0)


class EpsilonGreedyAgent(OffPolicyAgent):
    """An off-policy agent with ``Discrete`` actions that explores epsilon-greedily (DQN, QLearning).

    Its Config has ``exploration_initial_eps``, ``exploration_final_eps`` and
    ``exploration_fraction``; its ``act_batch`` finds the greedy actions and passes them through
    :meth:`epsilon_greedy`.
    """

    @property
    def epsilon(self) -> float:
        """The current epsilon: falls linearly over ``exploration_fraction`` of the learn call."""
        hp = self.hp
        frac = min(1.0, self.progress / hp.exploration_fraction) if hp.exploration_fraction else 1.0
        return hp.exploration_initial_eps + frac * (hp.exploration_final_eps - hp.exploration_initial_eps)

    def epsilon_greedy(self, greedy: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """The greedy actions, each replaced with probability :attr:`epsilon` by a uniformly random
        valid action (:func:`rladapt.agents.masks.epsilon_greedy`).

        :param greedy: ``[B]`` greedy actions.
        :param scores: ``[B, n]`` uniform random scores (``torch.rand``, drawn by the caller, which
            may also use them to break greedy ties); the random action is the valid one of highest score.
        :param mask: ``[B, n]`` valid-action mask, or None (every action is valid).
        """
        return epsilon_greedy(scores, mask, self.epsilon, self.generator, greedy=greedy, scores=scores)
