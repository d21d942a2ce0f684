"""Proximal Policy Optimization (Schulman et al. 2017), with the known implementation details.

The details, each named where it happens (see "The 37 implementation details of PPO"):
orthogonal init (nets.py), GAE (buffers/rollout.py), advantage normalisation per minibatch,
clipped surrogate objective, optional clipped value loss, entropy bonus, global gradient clipping,
learning-rate (and optionally clip-range) annealing, shuffled minibatches over several epochs,
observation and reward normalisation for continuous control, approx_kl and clip fraction in the
metrics, optional early stop at ``target_kl``.

Example:
    >>> agent = PPO(seed=0)
    >>> env = AutoAdapt(gym.make("CartPole-v1"), agent)        # doctest: +SKIP
    >>> agent.learn(env, steps=100_000).evaluate(env).mean     # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from rladapt.agents.base import OnPolicyAgent, OnPolicyConfig
from rladapt.agents.nets import FlatParameters, NetworkFactory, make_actor_critic
from rladapt.buffers.rollout import RolloutBuffer, minibatch_indices
from rladapt.spec import AgentSpec

#: Per-kind defaults for settings left at None. Classic control: rl-zoo's CartPole settings;
#: images: CleanRL's Atari settings; continuous: CleanRL/SB3's MuJoCo settings, batched.
PPO_DEFAULTS: dict[str, dict[str, Any]] = {
    "vector": dict(num_envs=8, n_steps=32, batch_size=256, n_epochs=20, lr=1e-3, gamma=0.98, gae_lambda=0.8,
                   clip_range=0.2, anneal_clip=True, ent_coef=0.0, normalize_observations=False, normalize_rewards=False),
    "image": dict(num_envs=8, n_steps=128, batch_size=256, n_epochs=4, lr=2.5e-4, gamma=0.99, gae_lambda=0.95,
                  clip_range=0.1, anneal_clip=False, ent_coef=0.01, normalize_observations=False, normalize_rewards=False),
    "continuous": dict(num_envs=8, n_steps=256, batch_size=256, n_epochs=10, lr=1e-3, gamma=0.95, gae_lambda=0.95,
                       clip_range=0.2, anneal_clip=False, ent_coef=0.0, normalize_observations=True, normalize_rewards=True),
}


def adam(params: Any, lr: float, device: torch.device) -> torch.optim.Adam:
    """Adam with eps 1e-5 (a PPO detail); the fused kernel (one op for all parameters) where torch
    has one, which matters for small networks on CPU."""
    try:
        return torch.optim.Adam(params, lr=lr, eps=1e-5, fused=device.type in ("cpu", "cuda"))
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr, eps=1e-5)


def normalize(advantages: torch.Tensor) -> torch.Tensor:
    """Advantage normalisation: zero mean, unit std (a PPO detail)."""
    if advantages.numel() < 2:
        return advantages
    return (advantages - advantages.mean()) / (advantages.std() + 1e-8)


def default_kind(observation_kind: str, action_kind: str) -> str:
    """Which defaults row applies: images first, then continuous actions, else classic control."""
    if observation_kind in ("image", "nested"):
        return "image"
    return "continuous" if action_kind == "continuous" else "vector"


@dataclass
class PPOConfig(OnPolicyConfig):
    """PPO settings. None means "the default for this kind of env" (see ``PPO_DEFAULTS``).

    :param lr: Adam learning rate (annealed linearly to 0 when ``anneal_lr``).
    :param batch_size: minibatch size.
    :param n_epochs: passes over each rollout.
    :param clip_range: PPO clip range epsilon for the probability ratio.
    :param anneal_clip: anneal ``clip_range`` linearly to 0 along with the learning rate.
    :param clip_value: clip the value loss around the old values with ``clip_range``.
    :param ent_coef: entropy bonus coefficient.
    :param vf_coef: value loss coefficient.
    :param max_grad_norm: global gradient norm clip.
    :param anneal_lr: anneal the learning rate linearly to 0 over each ``learn`` call.
    :param normalize_advantage: standardise advantages per minibatch.
    :param target_kl: stop the epochs of an update early when approx_kl exceeds this (None: never).
    :param hidden: hidden layer sizes of the MLPs.
    :param network: your own network: a full actor-critic module, an encoder module
        (observations -> ``[B, F]`` features) or a factory ``(obs_space, action_space) -> module``.
    """

    lr: float | None = None
    batch_size: int | None = None
    n_epochs: int | None = None
    clip_range: float | None = None
    anneal_clip: bool | None = None
    clip_value: bool = False
    ent_coef: float | None = None
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    anneal_lr: bool = True
    normalize_advantage: bool = True
    target_kl: float | None = None
    hidden: tuple[int, ...] = (64, 64)
    network: nn.Module | NetworkFactory | None = None


class PPO(OnPolicyAgent):
    """Proximal Policy Optimization with a clipped surrogate objective.

    Accepts vector, image and nested observations; discrete, multi-discrete and continuous
    actions; invalid-action masks. Settings are keyword arguments (:class:`PPOConfig`).
    """

    spec: ClassVar[AgentSpec] = AgentSpec(
        observations=frozenset({"vector", "image", "nested"}),
        actions=frozenset({"discrete", "multi_discrete", "continuous"}),
        masks=True,
    )
    Config: ClassVar[type[PPOConfig]] = PPOConfig

    def default_settings(self, observation_kind: str, action_kind: str) -> dict[str, Any]:
        return PPO_DEFAULTS[default_kind(observation_kind, action_kind)]

    def build(self) -> None:
        super().build()
        hp = self.hp
        self.policy = make_actor_critic(
            self.observation_space, self.action_space, hp.network, hp.hidden, bool(hp.normalize_observations)
        ).to(self.device)
        self.params = FlatParameters(self.policy)  # one op to zero, clip and step all parameters
        self.optimizer = adam([self.params.param], hp.lr, self.device)

    def update(self, rollout: RolloutBuffer, progress: float) -> dict[str, float]:
        hp = self.hp
        # Annealing: learning rate (and optionally clip range) fall linearly to 0 over the run.
        lr = hp.lr * (1.0 - progress) if hp.anneal_lr else hp.lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        clip = hp.clip_range * (1.0 - progress) if hp.anneal_clip else hp.clip_range

        keys = ["observation", "action", "log_prob", "value", "advantage", "value_target"]
        if self.use_masks:
            keys.append("action_mask")
        batch = rollout.valid_transitions(keys)  # the reset steps of autoreset are not transitions
        full_batch_advantages = normalize(batch.get("advantage")) if hp.normalize_advantage else batch.get("advantage")
        stats = []
        for epoch in range(hp.n_epochs):
            # Diagnostics cost ops: computed in the last epoch (every epoch when target_kl is set).
            track = epoch == hp.n_epochs - 1 or hp.target_kl is not None
            for idx in minibatch_indices(batch.shape[0], hp.batch_size, self.generator):
                if idx is None:  # one minibatch holds the whole rollout
                    mb, advantages = batch, full_batch_advantages
                else:
                    mb = batch[idx]
                    advantages = normalize(mb.get("advantage")) if hp.normalize_advantage else mb.get("advantage")
                new_log_prob, entropy, new_value = self.policy.evaluate_actions(
                    mb.get("observation"), mb.get("action"), mb.get("action_mask", None), entropy=track or hp.ent_coef != 0
                )
                ratio = (new_log_prob - mb.get("log_prob")).exp()

                # Clipped surrogate objective.
                policy_loss = -torch.min(ratio * advantages, ratio.clamp(1 - clip, 1 + clip) * advantages).mean()

                # Value loss, optionally clipped around the old value estimates.
                returns = mb.get("value_target")
                if hp.clip_value:
                    old_value = mb.get("value")
                    clipped = old_value + (new_value - old_value).clamp(-clip, clip)
                    value_loss = 0.5 * torch.max((new_value - returns) ** 2, (clipped - returns) ** 2).mean()
                else:
                    value_loss = 0.5 * F.mse_loss(new_value, returns)

                loss = policy_loss + hp.vf_coef * value_loss
                if hp.ent_coef:  # entropy bonus
                    loss = loss - hp.ent_coef * entropy.mean()

                self.params.zero_grad()
                loss.backward()
                self.params.clip_grad_norm_(hp.max_grad_norm)
                self.optimizer.step()

                if track:
                    with torch.no_grad():  # approx_kl: http://joschu.net/blog/kl-approx.html
                        log_ratio = new_log_prob - mb.get("log_prob")
                        approx_kl = ((ratio - 1) - log_ratio).mean()
                        clip_fraction = ((ratio - 1).abs() > clip).float().mean()
                        stats.append(torch.stack([policy_loss, value_loss, entropy.mean(), approx_kl, clip_fraction]))
            if hp.target_kl is not None and float(approx_kl) > hp.target_kl:
                break

        policy_loss, value_loss, entropy, approx_kl, clip_fraction = torch.stack(stats).mean(0).tolist()
        values, returns = batch.get("value"), batch.get("value_target")
        var = returns.var()
        explained = float(1 - (returns - values).var() / var) if var > 0 else float("nan")
        return {
            "train/policy_loss": policy_loss,
            "train/value_loss": value_loss,
            "train/entropy": entropy,
            "train/approx_kl": approx_kl,
            "train/clip_fraction": clip_fraction,
            "train/explained_variance": explained,
            "train/epochs": epoch + 1,
            "train/lr": lr,
            "train/clip_range": clip,
        }
