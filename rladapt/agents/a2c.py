"""Advantage Actor-Critic (Mnih et al. 2016, synchronous): PPO's parts, one plain gradient step.

Same networks, rollout storage and GAE as :mod:`rladapt.agents.ppo`; the update is a single
step of ``-(advantage * log_prob)`` plus value loss and entropy bonus over the whole rollout, with
RMSprop as in the paper (and Stable-Baselines3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar


from rladapt.agents.on_policy import (
    actor_critic_search_space,
    ACTOR_CRITIC_SPEC, ActorCriticConfig, OnPolicyAgent, actor_critic_loss, actor_critic_optimizer, default_kind,
)
from rladapt.agents.optim import set_lr
from rladapt.buffers.rollout import RolloutBuffer
from rladapt.spec import AgentSpec
from rladapt.agents.tuning import SearchBudget

if TYPE_CHECKING:
    import optuna

#: Per-kind defaults for settings left at None (SB3 / rl-zoo A2C settings).
A2C_DEFAULTS: dict[str, dict[str, Any]] = {
    "vector": dict(num_envs=8, n_steps=5, lr=7e-4, gamma=0.99, gae_lambda=1.0, ent_coef=0.0,
                   normalize_observations=False, normalize_rewards=False),
    "image": dict(num_envs=16, n_steps=5, lr=7e-4, gamma=0.99, gae_lambda=1.0, ent_coef=0.01,
                  normalize_observations=False, normalize_rewards=False),
    "continuous": dict(num_envs=8, n_steps=8, lr=7e-4, gamma=0.95, gae_lambda=0.9, ent_coef=0.0,
                       normalize_observations=True, normalize_rewards=True, noise_beta=0.0),
    "box2d": dict(num_envs=8, n_steps=5, lr=8.3e-4, anneal_lr=True, gamma=0.995, gae_lambda=1.0, ent_coef=1e-5,
                  normalize_observations=False, normalize_rewards=False),
}


def a2c_search_space(trial: optuna.Trial, budget: SearchBudget) -> dict[str, Any]:
    """A2C's search space (ranges after rl-zoo's, the rollout kept within the budget)."""
    settings = actor_critic_search_space(trial, budget)
    settings["normalize_advantage"] = trial.suggest_categorical("normalize_advantage", (False, True))
    return settings


@dataclass
class A2CConfig(ActorCriticConfig):
    """A2C settings: the actor-critics' (:class:`~rladapt.agents.on_policy.ActorCriticConfig`:
    ``lr``, ``ent_coef``, ``vf_coef`` (1.0 here: SB3's ``vf_coef=0.5`` on the plain MSE, its A2C
    default), ``max_grad_norm``, ``anneal_lr`` (None here: the per-kind default, on for Box2D
    envs), ``hidden``, ``network``) and A2C's own. None means "the default for this kind of env"
    (see ``A2C_DEFAULTS``).

    :param normalize_advantage: standardise advantages over the rollout.
    :param rms_prop: RMSprop (alpha 0.99, eps 1e-5) as in the paper; False: Adam.
    """

    vf_coef: float = 1.0
    anneal_lr: bool | None = None
    normalize_advantage: bool = False
    rms_prop: bool = True


class A2C(OnPolicyAgent):
    """Synchronous advantage actor-critic. Same spaces and masks support as PPO."""

    spec: ClassVar[AgentSpec] = ACTOR_CRITIC_SPEC
    Config: ClassVar[type[A2CConfig]] = A2CConfig
    search_space = staticmethod(a2c_search_space)

    def default_settings(self, observation_kind: str, action_kind: str) -> dict[str, Any]:
        return {"anneal_lr": False, **A2C_DEFAULTS[default_kind(observation_kind, action_kind, self.env_family, A2C_DEFAULTS)]}

    def build(self) -> None:
        super().build()
        hp = self.hp
        self.build_actor_critic(hp.network, hp.hidden)
        self.optimizer = actor_critic_optimizer(self)

    def update(self, rollout: RolloutBuffer, progress: float) -> dict[str, float]:
        hp = self.hp
        lr = hp.lr * (1.0 - progress) if hp.anneal_lr else hp.lr
        set_lr(self.optimizer, lr)
        loss, metrics = actor_critic_loss(self, rollout)
        self.params.zero_grad()
        loss.backward()
        self.params.clip_grad_norm_(hp.max_grad_norm)
        self.optimizer.step()
        return {**metrics, "train/lr": lr}
