"""Twin Delayed DDPG (Fujimoto et al. 2018), with DDPG (Lillicrap et al. 2016) as its setting.

A deterministic ``tanh`` actor over ``Box(-1, 1)`` actions (AutoAdapt rescales the env's box to
it) and ``critics`` Q critics fused into one network (:class:`~rladapt.agents.nets.TwinQ`). TD3's
three changes to DDPG are each one setting, named where they happen in :meth:`TD3.update`:

- clipped double Q: the target takes the smaller of the two target critics (``critics=2``),
- target policy smoothing: clipped Gaussian noise on the target action
  (``target_policy_noise``, ``target_noise_clip``),
- delayed policy updates: the actor and the target networks move every ``policy_delay`` critic
  steps.

:class:`DDPG` is TD3 with the three turned off (``critics=1``, ``target_policy_noise=0``,
``policy_delay=1``); it is a preset of the same class, not a second implementation.

Exploration adds Gaussian noise of std ``action_noise`` to the actor's action, clipped to
[-1, 1]; the noise is colored in time (``noise_beta``, :mod:`rladapt.agents.noise`: pink by
default, as SAC's) and restarts at every episode start. Before ``learning_starts`` the actions are
uniformly random. The critics and the actor have one Adam each over one flat parameter tensor
(:class:`~rladapt.agents.nets.FlatParameters`), so zeroing, stepping and the Polyak update of
their targets are one op each.

Example:
    >>> agent = TD3(seed=0)
    >>> env = AutoAdapt(gym.make("Pendulum-v1"), agent)        # doctest: +SKIP
    >>> agent.learn(env, steps=20_000).evaluate(env).mean      # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from tensordict import TensorDictBase

from rladapt.agents.nets import DeterministicActor, FlatParameters, TwinQ, frozen_copy
from rladapt.agents.noise import exploration_noise
from rladapt.agents.off_policy import (
    REPLAY_ACTOR_CRITIC_DEFAULTS,
    ReplayActorCritic,
    ReplayActorCriticConfig,
    replay_actor_critic_search_space,
)
from rladapt.agents.optim import adam, adam_step
from rladapt.buffers import ReplayBuffer
from rladapt.spec import AgentSpec
from rladapt.agents.tuning import SearchBudget

if TYPE_CHECKING:
    import optuna

__all__ = ["DDPG", "DDPGConfig", "TD3", "TD3Config", "TD3_DEFAULTS"]

#: Per-kind defaults for settings left at None: the replay actor-critics' (as SAC's).
TD3_DEFAULTS: dict[str, dict[str, Any]] = REPLAY_ACTOR_CRITIC_DEFAULTS


def td3_search_space(trial: optuna.Trial, budget: SearchBudget) -> dict[str, Any]:
    """TD3's (and DDPG's) search space (rl-zoo's TD3 ranges: SAC's replay ranges plus the
    exploration noise)."""
    settings = replay_actor_critic_search_space(trial, budget)
    settings["action_noise"] = trial.suggest_categorical("action_noise", (0.05, 0.1, 0.2, 0.3, 0.5))
    settings["noise_beta"] = trial.suggest_categorical("noise_beta", (0.0, 1.0))  # white or pink
    return settings


@dataclass
class TD3Config(ReplayActorCriticConfig):
    """TD3 settings: those of every replay actor-critic (:class:`~rladapt.agents.off_policy.ReplayActorCriticConfig`:
    ``lr``, ``buffer_size``, ``batch_size``, ``gamma``, ``n_step``, ``tau`` (applied at every actor
    update, to the target actor and critics), ``noise_beta``, ``frame_dedup``, ``hidden``,
    ``network``) and TD3's own. None means "the default for this kind of env" (see ``TD3_DEFAULTS``).

    :param critics: how many critics: 2 (TD3's clipped double Q: the target is the smaller
        value) or 1 (DDPG); more take the minimum of all.
    :param policy_delay: critic gradient steps per actor step (and per target update).
    :param target_policy_noise: std of the Gaussian noise on the target action (target policy
        smoothing; 0: none).
    :param target_noise_clip: the target noise is clipped to ``[-target_noise_clip, target_noise_clip]``.
    :param action_noise: std of the exploration noise added to the actor's action while
        collecting (actions live in [-1, 1]).
    """

    critics: int = 2
    policy_delay: int = 2
    target_policy_noise: float = 0.2
    target_noise_clip: float = 0.5
    action_noise: float = 0.1


class TD3(ReplayActorCritic):
    """Twin delayed deep deterministic policy gradient: clipped double Q, target policy
    smoothing and delayed actor updates; :class:`DDPG` is its preset with the three off.

    Accepts vector and image observations and ``Box`` actions (squashed into [-1, 1] by
    AutoAdapt). Settings are keyword arguments (:class:`TD3Config`).
    """

    spec: ClassVar[AgentSpec] = AgentSpec(observations=frozenset({"vector", "image"}), actions=frozenset({"unit_continuous"}))
    Config: ClassVar[type[TD3Config]] = TD3Config
    search_space = staticmethod(td3_search_space)

    def build(self) -> None:
        hp, space = self.hp, self.action_space
        name = type(self).__name__
        if not isinstance(space, spaces.Box) or not (np.all(space.low == -1) and np.all(space.high == 1)):
            raise TypeError(f"{name} needs Box(-1, 1) actions, got {space}; adapt the env with AutoAdapt(env, agent)")
        if hp.critics < 1:
            raise ValueError(f"{name}(critics={hp.critics}): at least one critic")
        dim = int(np.prod(space.shape))
        critic_encoder, actor_encoder = self.encoders()
        hidden = tuple(hp.hidden)
        self.actor = DeterministicActor(self.observation_space, dim, hidden, actor_encoder).to(self.device)
        self.critic = TwinQ(self.observation_space, dim, True, hidden, critic_encoder, critics=hp.critics).to(self.device)
        # Targets first (frozen_copy flattens the copy), then the online networks' flat tensors.
        self.actor_target, self.actor_target_flat = frozen_copy(self.actor)
        self.critic_target, self.critic_target_flat = frozen_copy(self.critic)
        self.actor_params, self.critic_params = FlatParameters(self.actor), FlatParameters(self.critic)
        self.actor_optimizer = adam([self.actor_params.param], hp.lr, self.device)
        self.critic_optimizer = adam([self.critic_params.param], hp.lr, self.device)
        self.gradient_steps_done = 0

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor_optimizer": self.actor_optimizer, "critic_optimizer": self.critic_optimizer}

    def resume_state(self) -> dict[str, Any]:
        """The gradient steps done: they time the delayed actor updates."""
        return {"gradient_steps_done": int(getattr(self, "gradient_steps_done", 0))}

    def load_resume_state(self, state: dict[str, Any]) -> None:
        self.gradient_steps_done = int(state.get("gradient_steps_done", 0))

    # ------------------------------------------------------------------------------------------
    # Acting
    # ------------------------------------------------------------------------------------------

    def act_batch(self, td: TensorDictBase, deterministic: bool = False) -> TensorDictBase:
        """The actor's action; unless ``deterministic``, plus ``action_noise`` times colored
        Gaussian noise (restarted where ``is_init`` marks an episode start), clipped to [-1, 1]."""
        action = self.actor(td.get("observation"))
        if not deterministic and self.hp.action_noise > 0:
            noise = exploration_noise(self, td, self.hp.noise_beta, self.actor.dim)
            action = (action + self.hp.action_noise * noise).clamp_(-1.0, 1.0)
        td.set("action", action)
        return td

    # ------------------------------------------------------------------------------------------
    # Learning
    # ------------------------------------------------------------------------------------------

    def update(self, replay: ReplayBuffer, progress: float) -> dict[str, float]:
        hp = self.hp
        keys = ("observation", "action", ("next", "reward"), ("next", "observation"), ("next", "discount"))
        critic_losses, actor_losses, q_means = [], [], []
        for obs, action, reward, next_obs, discount in self.minibatches(replay, keys):

            # Critic target: r + gamma^k * min_i Q_target_i(s', mu_target(s') + clipped noise).
            with torch.no_grad():
                next_action = self.actor_target(next_obs)
                if hp.target_policy_noise > 0:  # target policy smoothing
                    noise = torch.randn(next_action.shape, generator=self.generator, device=self.device)
                    noise = (noise * hp.target_policy_noise).clamp_(-hp.target_noise_clip, hp.target_noise_clip)
                    next_action = (next_action + noise).clamp_(-1.0, 1.0)
                next_q = self.critic_target(next_obs, next_action).min(0).values  # clipped double Q
                target = reward + discount * next_q
            q = self.critic(obs, action)  # [critics, B]: every critic in one pass
            critic_loss = 0.5 * (q - target).pow(2).mean(1).sum()
            self.critic_params.zero_grad()
            critic_loss.backward()
            adam_step(self.critic_optimizer)
            critic_losses.append(critic_loss.detach())
            q_means.append(q.detach()[0].mean())

            # Delayed policy update: maximise Q_1(s, mu(s)) through the critic with its parameters
            # detached (only the actor moves), then move both targets towards the online networks.
            self.gradient_steps_done += 1
            if self.gradient_steps_done % hp.policy_delay == 0:
                actor_loss = -self.critic(obs, self.actor(obs), detach_params=True)[0].mean()
                self.actor_params.zero_grad()
                actor_loss.backward()
                adam_step(self.actor_optimizer)
                self.critic_target_flat.lerp_(self.critic_params.param.detach(), hp.tau)
                self.actor_target_flat.lerp_(self.actor_params.param.detach(), hp.tau)
                actor_losses.append(actor_loss.detach())
        metrics = {"train/critic_loss": torch.stack(critic_losses).mean().item(),
                   "train/q": torch.stack(q_means).mean().item(), "train/lr": hp.lr}
        if actor_losses:
            metrics["train/actor_loss"] = torch.stack(actor_losses).mean().item()
        return metrics


@dataclass
class DDPGConfig(TD3Config):
    """DDPG settings: :class:`TD3Config` with one critic, no target policy smoothing and an actor
    step after every critic step (``critics=1, target_policy_noise=0, policy_delay=1``)."""

    critics: int = 1
    policy_delay: int = 1
    target_policy_noise: float = 0.0


class DDPG(TD3):
    """Deep deterministic policy gradient: :class:`TD3` with ``critics=1``, ``policy_delay=1``
    and ``target_policy_noise=0`` (:class:`DDPGConfig`); the same code, TD3's per-kind defaults."""

    Config: ClassVar[type[TD3Config]] = DDPGConfig
