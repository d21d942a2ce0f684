"""IMPALA (Espeholt et al. 2018): actors act with weights a few updates old, the learner corrects
for the lag with V-trace (:func:`rladapt.agents.vtrace.vtrace`).

How it maps on rladapt's collectors (nothing here knows which one runs)::

    learn(env, steps, workers=N)       N actor processes stream fixed-length trajectories
                                       (observations, actions, rewards, terminated/truncated,
                                       behaviour log-probs, masks) into shared-memory chunk slots,
                                       each with the newest weights it has seen
                                       (rladapt/collect/workers.py, streaming: fresh_weights=False);
                                       the learner batches n_steps rows of every actor, applies
                                       V-trace, publishes the weights through the versioned
                                       shared buffer (FlatState) and logs collect/policy_lag
    learn(env, steps, workers="distributed")   the same actors as torchrun ranks
    learn(env, steps)                  in-process: behaviour = target (V-trace = n-step returns)

The update, one gradient step per batch of ``n_steps x num_envs`` steps::

    log pi, entropy, V  = policy(observations, actions, masks)       # the learner's weights
    vs, advantage       = vtrace(behaviour log mu, log pi, rewards, V, V(last next obs), ...)
    loss = -(advantage * log pi) + vf_coef * (vs - V)^2 / 2 ... - ent_coef * entropy   (valid rows)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from rladapt.agents.on_policy import (
    ACTOR_CRITIC_SPEC,
    ActorCriticConfig,
    OnPolicyAgent,
    actor_critic_optimizer,
    actor_critic_search_space,
    default_kind,
)
from rladapt.agents.optim import set_lr
from rladapt.agents.vtrace import vtrace
from rladapt.buffers.rollout import RolloutBuffer
from rladapt.spec import AgentSpec
from rladapt.agents.tuning import SearchBudget

if TYPE_CHECKING:
    import optuna

__all__ = ["IMPALA", "IMPALAConfig", "IMPALA_DEFAULTS", "policy_terms"]

#: Per-kind defaults for settings left at None. The vector row is tuned for classic control
#: (CartPole-v1: training return 490 after 69k steps in-process, 89k and 150k with 2 workers; a
#: deterministic evaluation of 475 after 20k steps, median of 10 seeds); the image row follows the
#: paper's Atari settings (unroll 20, entropy 0.01, RMSprop lr 6e-4) over 16 envs (A2C's Atari row).
IMPALA_DEFAULTS: dict[str, dict[str, Any]] = {
    "vector": dict(num_envs=8, n_steps=16, lr=2e-3, gamma=0.99, gae_lambda=1.0, ent_coef=0.01,
                   normalize_observations=False, normalize_rewards=False, rms_prop=False),
    "image": dict(num_envs=16, n_steps=20, lr=6e-4, gamma=0.99, gae_lambda=1.0, ent_coef=0.01,
                  normalize_observations=False, normalize_rewards=False, rms_prop=True),
    "continuous": dict(num_envs=8, n_steps=16, lr=7e-4, gamma=0.99, gae_lambda=0.95, ent_coef=0.0,
                       normalize_observations=True, normalize_rewards=True, rms_prop=False, noise_beta=0.0),
    "box2d": dict(num_envs=8, n_steps=16, lr=7e-4, gamma=0.995, gae_lambda=1.0, ent_coef=1e-5,
                  normalize_observations=False, normalize_rewards=False, rms_prop=False),
}


def impala_search_space(trial: optuna.Trial, budget: SearchBudget) -> dict[str, Any]:
    """IMPALA's search space: A2C's shared part, plus V-trace's clipping thresholds."""
    settings = actor_critic_search_space(trial, budget)
    settings["rho_bar"] = trial.suggest_categorical("rho_bar", (0.5, 1.0, 2.0))
    settings["c_bar"] = trial.suggest_categorical("c_bar", (0.5, 1.0))
    return settings


@dataclass
class IMPALAConfig(ActorCriticConfig):
    """IMPALA settings: the actor-critics' (:class:`~rladapt.agents.on_policy.ActorCriticConfig`:
    ``lr``, ``ent_coef``, ``vf_coef`` (0.5 here, on ``0.5 * mean((vs - V)^2)``), ``max_grad_norm``,
    ``anneal_lr``, ``hidden``, ``network``) and V-trace's. None means "the default for this kind
    of env" (see ``IMPALA_DEFAULTS``). ``n_steps`` is the unroll length (rows of each actor's
    trajectory per update) and ``gae_lambda`` V-trace's ``lambda`` (the trace discount on ``c``).

    :param rho_bar: clip of V-trace's importance weights (the paper's rho-bar; None: unclipped).
    :param c_bar: clip of V-trace's trace weights (the paper's c-bar; None: unclipped).
    :param rms_prop: RMSprop (alpha 0.99, eps 1e-5, as in the paper); False: Adam.
    """

    vf_coef: float = 0.5
    rho_bar: float | None = 1.0
    c_bar: float | None = 1.0
    rms_prop: bool | None = None


def policy_terms(agent: "IMPALA", data: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(log_prob, entropy, value)`` ``[T, N]`` of a ``[T, N]`` batch's actions under the
    agent's current weights (all rows, valid or not: the caller masks), with gradients."""
    T, N = data.batch_size
    keys = ["observation", "action"] + (["action_mask"] if agent.use_masks else [])
    flat = data.select(*keys).reshape(-1)
    log_prob, entropy, value = agent.policy.evaluate_actions(
        flat.get("observation"), flat.get("action"), flat.get("action_mask", None))
    return log_prob.reshape(T, N), entropy.reshape(T, N), value.reshape(T, N)


class IMPALA(OnPolicyAgent):
    """Importance-weighted actor-learner: asynchronous actors, a V-trace learner. Same spaces and
    masks support as PPO (vector, image and nested observations; discrete, multi-discrete and
    continuous actions). ``learn(env, steps, workers=N)`` runs ``N`` actor processes."""

    spec: ClassVar[AgentSpec] = ACTOR_CRITIC_SPEC
    Config: ClassVar[type[IMPALAConfig]] = IMPALAConfig
    search_space = staticmethod(impala_search_space)
    #: Actors keep acting while the learner updates: streaming collection with a policy lag.
    fresh_weights: ClassVar[bool] = False

    def default_settings(self, observation_kind: str, action_kind: str) -> dict[str, Any]:
        return dict(IMPALA_DEFAULTS[default_kind(observation_kind, action_kind, self.env_family, IMPALA_DEFAULTS)])

    def build(self) -> None:
        if self.hp.recurrent is not None:  # V-trace over replayed sequences is not built yet
            raise ValueError(f"IMPALA(recurrent={self.hp.recurrent!r}): IMPALA's V-trace learner has no recurrent "
                             "policy yet; use PPO, A2C or A3C with recurrent=..., or IMPALA without it")
        super().build()
        self.build_actor_critic(self.hp.network, self.hp.hidden)
        self.optimizer = actor_critic_optimizer(self)

    def store(self, rollout: RolloutBuffer, batch: Any) -> RolloutBuffer:
        """Take the batch (no copy; rewards scaled when ``normalize_rewards``): V-trace needs the
        learner's values, computed in :meth:`update`."""
        rollout.set(batch)
        if self.reward_norm is not None:
            self._scale_rewards(rollout)
        return rollout

    def update(self, rollout: RolloutBuffer, progress: float) -> dict[str, float]:
        hp = self.hp
        lr = hp.lr * (1.0 - progress) if hp.anneal_lr else hp.lr
        set_lr(self.optimizer, lr)
        data = rollout.data
        valid = data.get("valid")
        log_prob, entropy, value = policy_terms(self, data)
        with torch.no_grad():
            bootstrap = self.value(data.get(("next", "observation"))[-1])
        vs, advantage = vtrace(
            data.get("log_prob"), log_prob.detach(), data.get(("next", "reward")), value.detach(), bootstrap,
            data.get(("next", "terminated")), data.get(("next", "done")), hp.gamma, hp.rho_bar, hp.c_bar, hp.gae_lambda)
        policy_loss = -(advantage * log_prob)[valid].mean()
        value_loss = 0.5 * (vs - value)[valid].pow(2).mean()
        entropy_mean = entropy[valid].mean()
        loss = policy_loss + hp.vf_coef * value_loss - hp.ent_coef * entropy_mean

        self.params.zero_grad()
        loss.backward()
        self.params.clip_grad_norm_(hp.max_grad_norm)
        self.optimizer.step()
        ratio = torch.exp(log_prob.detach() - data.get("log_prob"))[valid]
        return {
            "train/policy_loss": policy_loss.item(),
            "train/value_loss": value_loss.item(),
            "train/entropy": entropy_mean.item(),
            "train/importance_ratio": ratio.mean().item(),
            "train/lr": lr,
        }
