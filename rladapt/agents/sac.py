"""Soft Actor-Critic (Haarnoja et al. 2018), continuous and discrete (Christodoulou 2019).

Continuous actions: a tanh-squashed Gaussian policy over ``Box(-1, 1)`` (AutoAdapt rescales the
env's box to it), twin Q critics with clipped double-Q targets, Polyak-averaged target critics and
automatic entropy tuning towards ``target_entropy = -action_dim``. Discrete actions (chosen by the
action space): a categorical policy whose expectations over actions are computed exactly, Q-values
of every action from the critics, invalid-action masks respected in acting and in the targets,
``target_entropy = target_entropy_scale * log(n)``.

One gradient step is one backward pass: the critic loss, the actor loss (through the critics with
their parameters detached, so that it moves only the actor) and the temperature loss are summed,
and one Adam step updates all parameters (they live in one flat tensor). The actor's loss is thus
computed with the critics of before the step, not after it as in two-optimizer implementations;
this changes nothing measurable and halves the work per gradient step. The twin critics are one
network computing both with batched matmuls (:class:`~rladapt.agents.nets.TwinQ`).

Example:
    >>> agent = SAC(seed=0)
    >>> env = AutoAdapt(gym.make("Pendulum-v1"), agent)        # doctest: +SKIP
    >>> agent.learn(env, steps=20_000).evaluate(env).mean      # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from tensordict import TensorDictBase
from torch import nn

from rladapt.agents.base import to_batch
from rladapt.agents.masks import bootstrap_mask, masked_logits, masked_sample, random_actions
from rladapt.agents.nets import CategoricalActor, FlatParameters, SquashedGaussianActor, TwinQ, frozen_copy
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
from rladapt.types import ActionValues

#: Per-kind defaults for settings left at None: the replay actor-critics' table and discrete actions.
SAC_DEFAULTS: dict[str, dict[str, Any]] = {
    **REPLAY_ACTOR_CRITIC_DEFAULTS,
    "discrete": dict(num_envs=4, learning_starts=1000, train_freq=4, gradient_steps=16, lr=3e-4, buffer_size=100_000,
                     batch_size=128, gamma=0.99, hidden=(64, 64)),
}


@dataclass
class SACConfig(ReplayActorCriticConfig):
    """SAC settings: those of every replay actor-critic (:class:`~rladapt.agents.off_policy.ReplayActorCriticConfig`:
    ``lr``, ``buffer_size``, ``batch_size``, ``gamma``, ``n_step``, ``tau`` (applied every gradient
    step), ``noise_beta``, ``frame_dedup``, ``hidden``, ``network``) and the temperature's. None
    means "the default for this kind of env" (see ``SAC_DEFAULTS``).

    :param ent_coef: entropy temperature alpha: ``"auto"`` (tuned towards ``target_entropy``) or a float.
    :param ent_coef_init: initial alpha when tuned.
    :param target_entropy: entropy target; None: ``-action_dim`` (continuous) or
        ``target_entropy_scale * log(n)`` (discrete).
    :param target_entropy_scale: discrete actions: fraction of the maximum entropy ``log(n)`` to aim for.
    """

    ent_coef: float | str = "auto"
    ent_coef_init: float = 1.0
    target_entropy: float | None = None
    target_entropy_scale: float = 0.89


class SAC(ReplayActorCritic):
    """Soft actor-critic: maximum-entropy off-policy actor-critic with twin critics.

    Accepts vector and image observations, ``Box`` actions (squashed into [-1, 1]) and ``Discrete``
    actions with invalid-action masks. Settings are keyword arguments (:class:`SACConfig`).
    """

    spec: ClassVar[AgentSpec] = AgentSpec(
        observations=frozenset({"vector", "image"}), actions=frozenset({"unit_continuous", "discrete"}), masks=True
    )
    Config: ClassVar[type[SACConfig]] = SACConfig
    search_space = staticmethod(replay_actor_critic_search_space)

    def default_settings(self, observation_kind: str, action_kind: str) -> dict[str, Any]:
        if observation_kind != "image" and action_kind == "discrete":
            return SAC_DEFAULTS["discrete"]
        return super().default_settings(observation_kind, action_kind)

    def build(self) -> None:
        hp = self.hp
        space = self.action_space
        self.discrete = isinstance(space, spaces.Discrete)
        if not self.discrete and not isinstance(space, spaces.Box):
            raise TypeError(f"SAC needs Box or Discrete actions, got {space}; adapt the env with AutoAdapt(env, agent)")
        n = int(space.n) if self.discrete else int(np.prod(space.shape))
        critic_encoder, actor_encoder = self.encoders()
        hidden = tuple(hp.hidden)
        if self.discrete:
            self.actor = CategoricalActor(self.observation_space, n, hidden, actor_encoder)
        else:
            self.actor = SquashedGaussianActor(self.observation_space, n, hidden, actor_encoder)
            self.low, self.high = space.low.reshape(-1), space.high.reshape(-1)
            self.unit = bool(np.all(self.low == -1) and np.all(self.high == 1))
            self.stored_box = spaces.Box(-1.0, 1.0, (n,), np.float32)  # what the squashed policy outputs
        self.critic = TwinQ(self.observation_space, n, not self.discrete, hidden, critic_encoder)
        self.actor.to(self.device)
        self.critic.to(self.device)
        self.critic_target, self.target_flat = frozen_copy(self.critic)
        self.auto_alpha = hp.ent_coef == "auto"
        if not self.auto_alpha and not isinstance(hp.ent_coef, (int, float)):
            raise ValueError(f"ent_coef must be 'auto' or a number, got {hp.ent_coef!r}")
        init = math.log(hp.ent_coef_init if self.auto_alpha else float(hp.ent_coef))
        log_alpha = torch.tensor([init], device=self.device)
        if self.auto_alpha:
            self.log_alpha = nn.Parameter(log_alpha)
        else:
            self.register_buffer("log_alpha", log_alpha)
        if hp.target_entropy is not None:
            self.target_entropy = float(hp.target_entropy)
        else:
            self.target_entropy = hp.target_entropy_scale * math.log(n) if self.discrete else -float(n)
        # Actor, critics and temperature in one flat tensor: one zero_grad, one Adam step.
        self.params = FlatParameters(self)
        self.optimizer = adam([self.params.param], hp.lr, self.device)
        # The critics' slice of that tensor (contiguous, same order as their targets' flat tensor):
        # the Polyak update of all target parameters is one lerp_.
        first, offset = next(self.critic.parameters()), 0
        for p in self.params.params:
            if p is first:
                break
            offset += p.numel()
        self.critic_flat = self.params.param.detach()[offset : offset + self.target_flat.numel()]

    # ------------------------------------------------------------------------------------------
    # Acting
    # ------------------------------------------------------------------------------------------

    def env_action(self, action: np.ndarray) -> Any:
        if not self.discrete and not self.unit:  # an unadapted box: rescale [-1, 1] to its bounds
            action = self.low + (action + 1.0) * 0.5 * (self.high - self.low)
        return super().env_action(action)

    def random_actions(self, td: TensorDictBase) -> TensorDictBase:
        if self.discrete:
            return super().random_actions(td)
        # Stored actions live in [-1, 1] (env_action rescales them to an unadapted box).
        td.set("action", random_actions(self.stored_box, td.shape[0], self.generator, device=self.device))
        return td

    def explore(self, td: TensorDictBase) -> TensorDictBase:
        """Random actions before ``learning_starts``; then the policy, sampled with colored noise
        (continuous actions, ``noise_beta``) restarted at every episode start (``is_init``)."""
        if self.discrete or not self.hp.noise_beta or self.num_timesteps < (self.hp.learning_starts or 0):
            return super().explore(td)
        noise = exploration_noise(self, td, self.hp.noise_beta, self.actor.dim)
        action, _ = self.actor(td.get("observation"), False, self.generator, noise=noise)
        td.set("action", action)
        return td

    def act_batch(self, td: TensorDictBase, deterministic: bool = False) -> TensorDictBase:
        obs = td.get("observation")
        if self.discrete:
            action, _ = masked_sample(self.actor(obs), td.get("action_mask", None), deterministic, self.generator)
        else:
            action, _ = self.actor(obs, deterministic, self.generator)
        td.set("action", action)
        return td

    def action_values(self, obs: Any, mask: np.ndarray | None = None) -> ActionValues | None:
        """Discrete actions: the policy's probability of every action for one observation (the
        terminal view of ``play``); None for continuous actions."""
        if not self.discrete:
            return None
        with torch.inference_mode():
            logits = self.actor(to_batch(obs, self.device))[0]
            if mask is not None:
                logits = masked_logits(logits, torch.as_tensor(np.asarray(mask, dtype=bool), device=self.device))
        return ActionValues(torch.softmax(logits, -1).cpu().numpy(), "prob")

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}

    # ------------------------------------------------------------------------------------------
    # Learning
    # ------------------------------------------------------------------------------------------

    def update(self, replay: ReplayBuffer, progress: float) -> dict[str, float]:
        hp = self.hp
        keys = ("observation", "action", ("next", "reward"), ("next", "observation"), ("next", "discount"),
                "action_mask", ("next", "action_mask"))
        step = self._discrete_step if self.discrete else self._continuous_step
        stats = []
        for batch in self.minibatches(replay, keys):
            alpha = self.log_alpha.detach().exp()
            critic_loss, actor_loss, alpha_loss, entropy = step(alpha, *batch)
            loss = critic_loss + actor_loss + alpha_loss if self.auto_alpha else critic_loss + actor_loss
            self.params.zero_grad()
            loss.backward()
            adam_step(self.optimizer)
            self.target_flat.lerp_(self.critic_flat, hp.tau)  # Polyak update of the target critics
            stats.append(torch.stack([critic_loss.detach(), actor_loss.detach(), entropy, alpha.squeeze()]))
        critic_loss, actor_loss, entropy, alpha = torch.stack(stats).mean(0).tolist()
        return {"train/critic_loss": critic_loss, "train/actor_loss": actor_loss, "train/entropy": entropy,
                "train/alpha": alpha, "train/lr": hp.lr}

    def _continuous_step(self, alpha: torch.Tensor, obs: Any, action: torch.Tensor, reward: torch.Tensor,
                         next_obs: Any, discount: torch.Tensor, mask: Any, next_mask: Any) -> tuple[torch.Tensor, ...]:
        # Soft clipped double-Q target: r + gamma * (min_i Q_target_i(s', a') - alpha * log pi(a'|s')).
        with torch.no_grad():
            next_action, next_log_prob = self.actor(next_obs, False, self.generator)
            next_q = self.critic_target(next_obs, next_action).min(0).values - alpha * next_log_prob
            target = reward + discount * next_q
        q = self.critic(obs, action)  # [2, B]: both critics in one pass
        critic_loss = 0.5 * (q - target).pow(2).mean(1).sum()

        # Actor: maximise min_i Q_i(s, a~pi) - alpha * log pi, through critics with detached parameters.
        new_action, log_prob = self.actor(obs, False, self.generator)
        q_pi = self.critic(obs, new_action, detach_params=True).min(0).values
        actor_loss = (alpha * log_prob - q_pi).mean()

        # Temperature: move log alpha so that the policy's entropy approaches target_entropy.
        alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
        return critic_loss, actor_loss, alpha_loss, -log_prob.detach().mean()

    def _discrete_step(self, alpha: torch.Tensor, obs: Any, action: torch.Tensor, reward: torch.Tensor,
                       next_obs: Any, discount: torch.Tensor, mask: Any, next_mask: Any) -> tuple[torch.Tensor, ...]:
        # Exact expectation over next actions: V(s') = sum_a pi(a|s') (min_i Q_target_i(s', a) - alpha log pi(a|s')).
        with torch.no_grad():
            next_log_pi = self._log_policy(next_obs, next_mask)
            next_q = self.critic_target(next_obs).min(0).values
            next_v = (next_log_pi.exp() * (next_q - alpha * next_log_pi)).sum(-1)
            target = reward + discount * next_v
        q_all = self.critic(obs)  # [2, B, n]
        q = q_all.gather(-1, action.long().view(1, -1, 1).expand(2, -1, 1)).squeeze(-1)
        critic_loss = 0.5 * (q - target).pow(2).mean(1).sum()

        # Actor: minimise sum_a pi(a|s) (alpha log pi(a|s) - min_i Q_i(s, a)), Q held fixed.
        log_pi = self._log_policy(obs, mask)
        pi = log_pi.exp()
        actor_loss = (pi * (alpha * log_pi - q_all.detach().min(0).values)).sum(-1).mean()

        # Temperature: towards target_entropy (with masks and no explicit target: a fraction of
        # log(number of valid actions), the maximum entropy in each state).
        entropy = -(pi.detach() * log_pi.detach()).sum(-1)
        target_entropy = self.target_entropy
        if mask is not None and self.hp.target_entropy is None:
            target_entropy = self.hp.target_entropy_scale * mask.sum(-1).clamp(min=1).float().log()
        alpha_loss = (self.log_alpha * (entropy - target_entropy)).mean()
        return critic_loss, actor_loss, alpha_loss, entropy.mean()

    def _log_policy(self, obs: Any, mask: torch.Tensor | None) -> torch.Tensor:
        return torch.log_softmax(masked_logits(self.actor(obs), bootstrap_mask(mask)), -1)
