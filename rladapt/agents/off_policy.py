"""The off-policy family (DQN, SAC, Q-learning ...): collect ``train_freq`` vector steps per
iteration into a replay buffer, acting uniformly at random (among the valid actions) before
``learning_starts`` steps and with the agent's exploration afterwards; then ``gradient_steps``
gradient steps once ``learning_starts`` steps are collected. Worker processes may collect ahead with
weights a few updates old (``fresh_weights = False``).

A subclass writes ``build`` (networks, optimiser), ``build_replay(num_envs)`` (or overrides
``store`` to learn from each batch without replay, as tabular Q-learning does), ``act_batch`` and
``update(replay, progress)``.

The replay actor-critics (SAC, TD3, DDPG) share more: :class:`ReplayActorCritic` holds their
settings (learning rate, replay, n-step targets, Polyak rate, colored exploration noise, encoders),
their per-kind defaults, the replay they build and the minibatches a gradient step reads; each
algorithm's file keeps only its networks, its acting and its losses.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from tensordict import TensorDictBase
from torch import nn

from rladapt.agents.base import Agent, AgentConfig
from rladapt.agents.masks import epsilon_greedy, random_actions
from rladapt.agents.nets import NetworkFactory
from rladapt.buffers import ReplayBuffer
from rladapt.agents.tuning import GAMMAS, SearchBudget, suggest_hidden

if TYPE_CHECKING:
    import optuna

__all__ = ["EpsilonGreedyAgent", "OffPolicyAgent", "OffPolicyConfig", "REPLAY_ACTOR_CRITIC_DEFAULTS", "ReplayActorCritic",
           "ReplayActorCriticConfig", "replay_actor_critic_search_space",
           "replay_frame_stack"]


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

    The default :meth:`store` hands the batch to the replay buffer (``extend_steps`` of a
    :class:`ReplayBuffer`, else ``extend`` per step), which copies it and leaves out the rows
    with ``valid == False`` (the reset step of NEXT_STEP autoreset is not a transition). Before
    ``learning_starts`` the agent acts uniformly at random among the valid actions
    (:meth:`random_actions`); afterwards through ``act_batch(td, deterministic=False)``, i.e. with
    the agent's exploration.
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
        """Write every step of the batch into the replay buffer (which copies it): rladapt's
        :class:`ReplayBuffer` takes all steps in one ``extend_steps`` call, any other buffer one
        ``extend`` per step."""
        if isinstance(replay, ReplayBuffer):
            replay.extend_steps(batch)
        else:
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


#: Per-kind defaults of the replay actor-critics (SAC, TD3, DDPG) for settings left at None.
REPLAY_ACTOR_CRITIC_DEFAULTS: dict[str, dict[str, Any]] = {
    # Classic control and Box2D: 4 envs, one gradient step per env step, 128x128 (TD3 on
    # Pendulum-v1 at 10k steps, seed 0: -87.8 in 19 s CPU; 256x256: -85.6 in 63 s).
    "continuous": dict(num_envs=4, learning_starts=1000, train_freq=4, gradient_steps=16, lr=1e-3,
                       buffer_size=1_000_000, batch_size=256, gamma=0.99, hidden=(128, 128)),
    "image": dict(num_envs=4, learning_starts=20_000, train_freq=1, gradient_steps=1, lr=3e-4,
                  buffer_size=100_000, batch_size=64, gamma=0.99, hidden=(256, 256)),
    # MuJoCo locomotion: the SAC and TD3 papers' and SB3's settings (256x256, lr 3e-4, 10k random steps first).
    "mujoco": dict(num_envs=4, learning_starts=10_000, train_freq=4, gradient_steps=16, lr=3e-4,
                   buffer_size=1_000_000, batch_size=256, gamma=0.99, hidden=(256, 256)),
}


@dataclass
class ReplayActorCriticConfig(OffPolicyConfig):
    """Settings every replay actor-critic has (SAC, TD3, DDPG). None means "the default for this
    kind of env" (see :data:`REPLAY_ACTOR_CRITIC_DEFAULTS` and the agent's own table).

    :param lr: Adam learning rate (actor and critics; SAC's temperature too).
    :param buffer_size: replay capacity in transitions (over all envs).
    :param batch_size: minibatch size of a gradient step.
    :param gamma: discount factor.
    :param n_step: length of the multi-step return (1: one-step targets).
    :param tau: Polyak rate of the target networks.
    :param noise_beta: continuous actions: the color of the exploration noise while collecting,
        its power spectrum ``1 / f**noise_beta`` (:mod:`rladapt.agents.noise`): 0 white
        (independent per step, SB3's ``NormalActionNoise``), 1 pink (the default: correlated in
        time, so exploration can build momentum), 2 red. Training and evaluation are unchanged.
    :param frame_dedup: store the frames of stacked image observations once (None: on when the
        observation is a stack of ``spec.frame_stack`` images).
    :param hidden: hidden layer sizes of the actor and critic MLPs.
    :param network: your own encoder (observations -> ``[B, F]`` features), or a factory
        ``(observation_space, action_space) -> encoder``; the actor and the critics each get one
        (a factory is called twice; a module is used by the critics, and deep-copied for the actor).
    """

    lr: float | None = None
    buffer_size: int | None = None
    batch_size: int | None = None
    gamma: float | None = None
    n_step: int = 1
    tau: float = 0.005
    noise_beta: float = 1.0
    frame_dedup: bool | None = None
    hidden: tuple[int, ...] | None = None
    network: nn.Module | NetworkFactory | None = None


def replay_actor_critic_search_space(trial: optuna.Trial, budget: SearchBudget) -> dict[str, Any]:
    """SAC's search space, which TD3 and DDPG extend (ranges after rl-zoo's SAC; warm-up and
    replay kept within the budget)."""
    return {
        "lr": trial.suggest_float("lr", 1e-5, 1e-2, log=True),
        "gamma": trial.suggest_categorical("gamma", GAMMAS),
        "batch_size": trial.suggest_categorical("batch_size", (64, 128, 256, 512)),
        "buffer_size": trial.suggest_categorical("buffer_size", budget.capacities((10_000, 100_000, 1_000_000))),
        "learning_starts": trial.suggest_categorical("learning_starts", budget.warmups((0, 1_000, 10_000, 20_000))),
        "train_freq": trial.suggest_categorical("train_freq", (1, 4, 8)),
        "gradient_steps": trial.suggest_categorical("gradient_steps", (1, 4, 8, 16)),
        "tau": trial.suggest_categorical("tau", (0.001, 0.005, 0.01, 0.02, 0.05)),
        "hidden": suggest_hidden(trial),
    }


class ReplayActorCritic(OffPolicyAgent):
    """The family of SAC, TD3 and DDPG: an actor and Q critics trained from a replay buffer of
    single (or n-step) transitions. A subclass writes ``build`` (with :meth:`encoders`),
    ``act_batch`` and ``update`` (reading :meth:`minibatches`)."""

    Config: ClassVar[type[AgentConfig]] = ReplayActorCriticConfig

    def default_settings(self, observation_kind: str, action_kind: str) -> dict[str, Any]:
        """Image observations, MuJoCo locomotion, or the rest (classic control, Box2D)."""
        if observation_kind == "image":
            return REPLAY_ACTOR_CRITIC_DEFAULTS["image"]
        return REPLAY_ACTOR_CRITIC_DEFAULTS["mujoco" if self.env_family == "mujoco" else "continuous"]

    def encoders(self) -> tuple[nn.Module | None, nn.Module | None]:
        """The critics' and the actor's encoders from the ``network`` setting (None: the
        default encoder for the observation space)."""
        network = self.hp.network
        if network is None:
            return None, None
        if isinstance(network, nn.Module):
            return network, copy.deepcopy(network)
        return network(self.observation_space, self.action_space), network(self.observation_space, self.action_space)

    def build_replay(self, num_envs: int) -> ReplayBuffer:
        hp = self.hp
        return ReplayBuffer(hp.buffer_size, num_envs=num_envs, n_step=hp.n_step, gamma=hp.gamma,
                            frame_stack=replay_frame_stack(self, hp.frame_dedup), seed=self.config.seed)

    def minibatches(self, replay: ReplayBuffer, keys: tuple[Any, ...]) -> Iterator[list[torch.Tensor | None]]:
        """``gradient_steps`` minibatches of ``batch_size`` transitions, each the tensors of
        ``keys`` (None for a key the replay lacks, e.g. ``action_mask`` without masks). One sample
        call serves them all: the same distribution as a call per step, with less overhead."""
        size = self.hp.batch_size
        whole = replay.sample(self.hp.gradient_steps * size, self.generator)
        whole = [whole.get(key, None) for key in keys]
        for i in range(self.hp.gradient_steps):
            yield [None if t is None else t[i * size : (i + 1) * size] for t in whole]
