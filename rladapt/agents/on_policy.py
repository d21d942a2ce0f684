"""The on-policy family (PPO, A2C, REINFORCE ...): collect ``n_steps`` vector steps with the current
weights, compute advantages (GAE) and value targets, update once, repeat.

A subclass writes ``build`` (networks, optimiser; :meth:`OnPolicyAgent.build_actor_critic` makes
the built-in actor-critic), ``act_batch`` (writing ``action``, ``log_prob`` and ``value``) and
``update(rollout, progress)``; ``rollout.transitions(keys)`` gives the valid transitions with their
``advantage`` and ``value_target``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from tensordict import TensorDictBase
from torch import nn

from rladapt.agents.base import Agent, AgentConfig, to_batch
from rladapt.agents.masks import masked_logits
from rladapt.agents.nets import ActorCritic, CategoricalHead, FlatParameters, NetworkFactory, RunningNorm, make_actor_critic
from rladapt.agents.noise import exploration_noise
from rladapt.agents.recurrent import STATE_KEY, RecurrentActorCritic, state_shape
from rladapt.agents.optim import adam
from rladapt.buffers.rollout import RolloutBuffer
from rladapt.collect.batch import OutSpecs
from rladapt.spec import AgentSpec
from rladapt.types import ActionValues
from rladapt.agents.tuning import GAE_LAMBDAS, GAMMAS, MAX_GRAD_NORMS, SearchBudget, suggest_hidden

if TYPE_CHECKING:
    import optuna

__all__ = ["ACTOR_CRITIC_SPEC", "ActorCriticConfig", "OnPolicyAgent", "OnPolicyConfig", "actor_critic_gradient",
           "actor_critic_loss", "actor_critic_optimizer", "actor_critic_search_space", "default_kind", "normalize"]

#: What the networks of :meth:`OnPolicyAgent.build_actor_critic` accept (the ``spec`` of PPO and A2C).
ACTOR_CRITIC_SPEC = AgentSpec(
    observations=frozenset({"vector", "image", "nested"}),
    actions=frozenset({"discrete", "multi_discrete", "continuous", "composite"}),
    masks=True,
)


def default_kind(observation_kind: str, action_kind: str, family: str = "other", rows: Any = None) -> str:
    """Which row of an on-policy agent's per-kind defaults applies: images (and nested
    observations) first; then the env family's row for its action kind where the table has one
    (``"box2d"``, ``"box2d_continuous"``, ``"mujoco"``: longer horizons than classic control;
    ``"board_game"``: longer rollouts);
    PettingZoo parallel envs (``"multi_agent"``) use the generic rows: the MAPPO paper's MPE
    settings made MAPPO collapse on 3 of 10 seeds of simple_spread (benchmarks/README.md);
    else ``"continuous"`` or ``"vector"`` (classic control, and every other family).

    :param observation_kind: the adapted observation kind.
    :param action_kind: the adapted action kind.
    :param family: the env family (:func:`rladapt.adapt.env_family`).
    :param rows: the table's row names (None: only the generic rows are considered).
    """
    if observation_kind in ("image", "nested"):
        return "image"
    generic = "continuous" if action_kind == "continuous" else "vector"
    specific = {("box2d", "vector"): "box2d", ("box2d", "continuous"): "box2d_continuous",
                ("mujoco", "continuous"): "mujoco", ("board_game", "vector"): "board_game"}.get((family, generic))
    return specific if rows is not None and specific in rows else generic


def normalize(advantages: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Advantage normalisation: zero mean, unit std (a PPO and A2C option); with ``dim``, each
    slice along it by its own statistics (``[k, n]`` rows: k minibatches in a few ops)."""
    if dim is None:
        if advantages.numel() < 2:
            return advantages
        return (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    if advantages.shape[dim] < 2:
        return advantages
    return (advantages - advantages.mean(dim, keepdim=True)) / (advantages.std(dim, keepdim=True) + 1e-8)


def actor_critic_optimizer(agent: "OnPolicyAgent") -> torch.optim.Optimizer:
    """The optimiser of an actor-critic's flat parameters (``agent.params``): RMSprop (alpha 0.99,
    eps 1e-5: the A3C and IMPALA papers, and SB3's A2C) when ``agent.hp.rms_prop``, else Adam (eps 1e-5).

    :param agent: an agent whose ``build_actor_critic`` ran, with ``hp.lr`` and ``hp.rms_prop``.
    """
    hp = agent.hp
    if hp.rms_prop:
        return torch.optim.RMSprop([agent.params.param], lr=hp.lr, alpha=0.99, eps=1e-5)
    return adam([agent.params.param], hp.lr, agent.device, eps=1e-5)


def actor_critic_loss(agent: "OnPolicyAgent", rollout: RolloutBuffer) -> tuple[torch.Tensor, dict[str, float]]:
    """The advantage actor-critic loss (Mnih et al. 2016) over a rollout's valid transitions, and
    its parts as metrics: ``-(advantage * log_prob) + vf_coef * 0.5 * (value_target - V)^2 - ent_coef *
    entropy`` (the value loss has the same ``0.5 * MSE`` form in every actor-critic: PPO, A2C, A3C,
    IMPALA, so ``vf_coef`` means the same in each), with the advantages standardised when ``agent.hp.normalize_advantage``. A2C takes one
    step of it per rollout; A3C's workers push its gradient into the shared parameters.

    :param agent: an on-policy agent with its actor-critic built (``policy.evaluate_actions``).
    :param rollout: the rollout, its advantages computed (:meth:`OnPolicyAgent.store`).
    """
    hp = agent.hp
    keys = ["observation", "action", "advantage", "value_target"] + (["action_mask"] if agent.use_masks else [])
    if hp.recurrent is not None:  # the rollout as sequence chunks, replayed from their stored states
        sequences = agent.sequences(rollout, keys)
        batch = sequences[sequences.get("valid")]
        observation, action, mask = sequences, sequences.get("action"), sequences.get("action_mask", None)
    else:
        batch = rollout.transitions(keys)
        observation, action, mask = batch.get("observation"), batch.get("action"), batch.get("action_mask", None)
    log_prob, entropy, value = agent.policy.evaluate_actions(observation, action, mask)
    advantages = normalize(batch.get("advantage")) if hp.normalize_advantage else batch.get("advantage")
    policy_loss = -(advantages * log_prob).mean()
    value_loss = 0.5 * F.mse_loss(value, batch.get("value_target"))
    entropy_loss = entropy.mean()
    loss = policy_loss - hp.ent_coef * entropy_loss + hp.vf_coef * value_loss
    return loss, {
        "train/policy_loss": policy_loss.item(),
        "train/value_loss": value_loss.item(),
        "train/entropy": entropy_loss.item(),
    }


def actor_critic_gradient(agent: "OnPolicyAgent", rollout: RolloutBuffer) -> dict[str, float]:
    """The gradient of :func:`actor_critic_loss`, written into ``agent.params.grad`` (zeroed
    first); returns the loss's metrics. Where the fast path's hand-written gradient applies
    (:mod:`rladapt.agents.fast`: the built-in vector actor-critic, Discrete actions) it is that
    one: PPO's clipped loss at importance ratio 1 (the rollout's ``log_prob`` came from these very
    weights) with no clip is the advantage actor-critic loss; autograd otherwise.

    :param agent: an on-policy agent with its actor-critic built, acting with its current weights.
    :param rollout: the rollout its current weights collected, advantages computed.
    """
    hp = agent.hp
    fast = agent.fast_path.gradient
    agent.params.zero_grad()
    if fast is None:
        loss, metrics = actor_critic_loss(agent, rollout)
        loss.backward()
        return metrics
    keys = ["observation", "action", "log_prob", "advantage", "value_target"] + (["action_mask"] if agent.use_masks else [])
    batch = rollout.transitions(keys)
    advantages = normalize(batch.get("advantage")) if hp.normalize_advantage else batch.get("advantage")
    log_prob = batch.get("log_prob")
    stats = fast.loss_and_grad(batch.get("observation"), batch.get("action"), log_prob, advantages,
                               batch.get("value_target"), batch.get("action_mask", None), math.inf, hp.vf_coef,
                               hp.ent_coef, track=True)
    return {
        "train/policy_loss": float(-(advantages * log_prob).mean()),
        "train/value_loss": float(stats[1]),
        "train/entropy": float(stats[2]),
    }


@dataclass
class OnPolicyConfig(AgentConfig):
    """Settings of on-policy agents (None: the per-kind default).

    :param n_steps: steps per env per rollout (a rollout is ``n_steps * num_envs`` steps).
    :param gamma: discount factor.
    :param gae_lambda: GAE lambda (1.0: Monte-Carlo advantages, bootstrapped at the rollout's end).
    :param normalize_observations: standardise float vector observations with running statistics.
    :param normalize_rewards: scale rewards by the running std of the discounted return.
    :param noise_beta: Box actions: the color of the exploration noise while collecting, its
        power spectrum ``1 / f**noise_beta`` (:mod:`rladapt.agents.noise`; 0 white, 1 pink),
        with the built-in actor-critic. The policy's distribution is unchanged: only its samples
        are correlated in time.
    :param log_std_init: Box actions: the initial log standard deviation of the built-in
        Gaussian policy (0: std 1; None: the per-kind default).
    :param fast: the hand-written fast path of the built-in vector actor-critic
        (:mod:`rladapt.agents.fast`): None uses each part (numpy acting, the hand-written gradient)
        where it applies, True requires both (an error names each part that does not apply, and
        why), False never.
    :param recurrent: ``"lstm"`` or ``"gru"``: a recurrent policy (:mod:`rladapt.agents.recurrent`:
        the encoder, then an actor and a critic core of ``recurrent_hidden`` units, then the
        ``hidden`` MLPs), its hidden state carried with the envs and reset at every episode
        start; act with ``act(obs, state=...)``. None: feed-forward.
    :param recurrent_hidden: units of each recurrent core.
    :param sequence_length: recurrent policies: steps per sequence chunk an update replays (it
        must divide ``n_steps``; None: the largest divisor of ``n_steps`` up to 16, which is
        backpropagation through 16 steps and a quarter of the replay steps of whole 64-step
        rollouts). Minibatches hold whole chunks (``batch_size // sequence_length`` of them),
        never shuffled steps.
    """

    n_steps: int | None = None
    gamma: float | None = None
    gae_lambda: float | None = None
    normalize_observations: bool | None = None
    normalize_rewards: bool | None = None
    noise_beta: float | None = None
    log_std_init: float | None = None
    fast: bool | None = None
    recurrent: str | None = None
    recurrent_hidden: int = 64
    sequence_length: int | None = None


@dataclass
class ActorCriticConfig(OnPolicyConfig):
    """Settings every actor-critic of the family has (PPO, A2C, A3C, IMPALA), with one meaning in
    each; an algorithm's Config adds its own and may change a default.

    :param lr: learning rate (None: the per-kind default).
    :param ent_coef: entropy bonus coefficient (None: the per-kind default).
    :param vf_coef: coefficient of the value loss ``0.5 * mean((V - R)^2)`` (CleanRL's form; its
        plain-MSE equivalent in SB3 is half of it); IMPALA's ``R`` is the V-trace target ``vs``.
        None: the per-kind default.
    :param max_grad_norm: global gradient norm clip.
    :param anneal_lr: anneal the learning rate linearly to 0 over each ``learn`` call.
    :param hidden: hidden layer sizes of the MLPs.
    :param network: your own network: a full actor-critic module, an encoder module
        (observations -> ``[B, F]`` features) or a factory ``(obs_space, action_space) -> module``.
    """

    lr: float | None = None
    ent_coef: float | None = None
    vf_coef: float | None = None
    max_grad_norm: float = 0.5
    anneal_lr: bool = False
    hidden: tuple[int, ...] = (64, 64)
    network: nn.Module | NetworkFactory | None = None


def actor_critic_search_space(trial: optuna.Trial, budget: SearchBudget) -> dict[str, Any]:
    """What A2C and IMPALA's search spaces share (ranges after rl-zoo's A2C, the rollout kept
    within the budget)."""
    return {
        "lr": trial.suggest_float("lr", 1e-5, 1e-2, log=True),
        "n_steps": trial.suggest_categorical("n_steps", budget.rollouts((5, 8, 16, 32, 64, 128, 256, 512))),
        "gamma": trial.suggest_categorical("gamma", GAMMAS),
        "gae_lambda": trial.suggest_categorical("gae_lambda", GAE_LAMBDAS),
        "ent_coef": trial.suggest_float("ent_coef", 1e-8, 0.1, log=True),
        "vf_coef": trial.suggest_float("vf_coef", 0.2, 1.0),
        "max_grad_norm": trial.suggest_categorical("max_grad_norm", MAX_GRAD_NORMS),
        "hidden": suggest_hidden(trial),
    }


class OnPolicyAgent(Agent):
    """Collects rollouts into a :class:`~rladapt.buffers.rollout.RolloutBuffer` with the current
    weights, computes GAE, and calls :meth:`update`. Subclasses build ``self.policy`` (an
    :class:`~rladapt.agents.nets.ActorCritic`-like module with ``get_value``) in ``build``, or
    override :meth:`value` for a network of their own."""

    Config: ClassVar[type[AgentConfig]] = OnPolicyConfig
    fresh_weights: ClassVar[bool] = True
    #: The storage of the current ``learn`` call.
    rollout: RolloutBuffer | None = None
    #: How the built-in actor-critic acts and computes gradients (:class:`rladapt.agents.fast.FastActorCritic`:
    #: its fast parts where they apply, torch otherwise), bound by :meth:`build_actor_critic`.
    fast_path: Any = None

    def build(self) -> None:
        self.reward_norm = RunningNorm(()) if self.hp.normalize_rewards else None

    def build_actor_critic(self, network: nn.Module | NetworkFactory | None, hidden: tuple[int, ...]) -> None:
        """Build ``self.policy``, the actor-critic for the bound spaces (observations normalised
        when ``normalize_observations``), ``self.params``, its parameters as one flat tensor (one
        op to zero, clip and step them all) for the optimizer, and the fast path where it applies
        (setting ``fast``). Call it from ``build``.

        :param network: your own network: a full actor-critic module, an encoder module
            (observations -> ``[B, F]`` features) or a factory ``(obs_space, action_space) -> module``;
            None: the built-in MLP or CNN.
        :param hidden: hidden layer sizes of the MLPs.
        """
        from rladapt.agents.fast import fast_path_for

        if self.hp.recurrent is not None:
            self.policy = self._recurrent_actor_critic(network, hidden).to(self.device)
        else:
            self.policy = make_actor_critic(
                self.observation_space, self.action_space, network, hidden, bool(self.hp.normalize_observations),
                self.hp.log_std_init or 0.0,
            ).to(self.device)
        self.params = FlatParameters(self.policy)
        self.fast_path = fast_path_for(self, self.hp.fast)

    def _recurrent_actor_critic(self, network: nn.Module | NetworkFactory | None, hidden: tuple[int, ...]) -> nn.Module:
        """The recurrent actor-critic of ``recurrent=...``; ``network`` may only be an encoder."""
        hp = self.hp
        if network is not None and not isinstance(network, nn.Module) and callable(network):
            network = network(self.observation_space, self.action_space)
        if network is not None and hasattr(network, "evaluate_actions"):
            raise ValueError(f"{type(self).__name__}(recurrent={hp.recurrent!r}) builds its own recurrent actor-critic; "
                             f"network= may be an encoder (observations -> [B, F] features), not a full actor-critic")
        steps, length = int(hp.n_steps), self.sequence_length()
        if steps % length:
            raise ValueError(f"{type(self).__name__}(sequence_length={length}) must divide n_steps={steps} "
                             f"(an update replays whole chunks of each env's rollout)")
        return RecurrentActorCritic(self.observation_space, self.action_space, hp.recurrent, hp.recurrent_hidden,
                                    tuple(hidden), bool(hp.normalize_observations), network, hp.log_std_init or 0.0)

    def state_specs(self) -> OutSpecs:
        """A recurrent policy's hidden state, ``recurrent_state`` (nothing when feed-forward)."""
        if self.hp.recurrent is None:
            return {}
        return {STATE_KEY: (state_shape(self.hp.recurrent, int(self.hp.recurrent_hidden)), torch.float32)}

    def sequence_length(self) -> int:
        """Steps per replayed chunk: ``sequence_length``, or the largest divisor of ``n_steps`` up to 16."""
        if self.hp.sequence_length is not None:
            return int(self.hp.sequence_length)
        steps = int(self.hp.n_steps)
        return next(length for length in range(min(16, steps), 0, -1) if steps % length == 0)

    def sequences(self, rollout: RolloutBuffer, keys: list) -> TensorDictBase:
        """A recurrent policy's rollout as ``[sequence_length, K]`` chunks (:meth:`RolloutBuffer.sequences`)
        with what the replay needs: ``is_init``, ``valid`` and the stored ``recurrent_state``."""
        return rollout.sequences([*keys, "is_init", "valid", STATE_KEY], self.sequence_length())

    def act_batch(self, td: TensorDictBase, deterministic: bool = False) -> TensorDictBase:
        """The actor-critic's action, through the path :meth:`build_actor_critic` bound (numpy
        acting where it applies). An agent that builds its own network writes its own ``act_batch``."""
        if self.fast_path is None:
            raise TypeError(f"{type(self).__name__}.act_batch acts with the actor-critic of build_actor_critic(), "
                            f"which its build() did not call: write an act_batch for its own network")
        return self.fast_path.act(td, deterministic, self.generator)

    def explore(self, td: TensorDictBase) -> TensorDictBase:
        """The policy's samples; for Box actions of the built-in actor-critic with colored noise
        (``noise_beta``), restarted at every episode start."""
        beta = self.hp.noise_beta
        if beta and self.act_kind == "continuous" and isinstance(self.policy, ActorCritic):
            noise = exploration_noise(self, td, beta, self.policy.head.action_shape[0])
            return self.policy(td, deterministic=False, generator=self.generator, noise=noise)
        return super().explore(td)

    def out_specs(self) -> OutSpecs:
        """The action, its ``log_prob`` and the state ``value`` (GAE reads it)."""
        return {**super().out_specs(), "log_prob": ((), torch.float32), "value": ((), torch.float32)}

    def value(self, observation: Any) -> torch.Tensor:
        """``V(observation)`` ``[B]``: the bootstrap at the end of a rollout."""
        return self.policy.get_value(observation) if self.fast_path is None else self.fast_path.value(observation)

    # -- the loop's hooks ----------------------------------------------------------------------
    def collect_steps(self) -> int:
        return int(self.hp.n_steps)

    def make_storage(self, num_envs: int, steps: int) -> RolloutBuffer:
        self.rollout = RolloutBuffer(self.hp.n_steps, num_envs, self.device)
        self._discounted_return = torch.zeros(num_envs, device=self.device)
        return self.rollout

    def store(self, rollout: RolloutBuffer, batch: TensorDictBase) -> RolloutBuffer:
        """Take the batch (no copy), scale rewards when ``normalize_rewards``, compute GAE."""
        rollout.set(batch)
        with torch.inference_mode():
            if self.hp.recurrent is not None:  # from the state after the last step
                last_value = self.policy.get_value(batch.get(("next", "observation"))[-1], batch.get(("next", STATE_KEY))[-1])
            else:
                last_value = self.value(batch.get(("next", "observation"))[-1])
        if self.reward_norm is not None:
            self._scale_rewards(rollout)
        rollout.compute_advantages(last_value, self.hp.gamma, self.hp.gae_lambda)
        return rollout

    def update(self, rollout: RolloutBuffer, progress: float) -> dict[str, float]:
        """One update from a full rollout (``rollout.transitions(keys)``); return metrics."""
        raise NotImplementedError(f"{type(self).__name__} defines no update(rollout, progress)")

    def after_update(self, rollout: RolloutBuffer) -> None:
        """Fold the rollout's observations into the running observation statistics."""
        norm = getattr(getattr(self, "policy", None), "update_obs_stats", None)
        if self.hp.normalize_observations and norm is not None:
            data = rollout.data
            norm(data.get("observation")[data.get("valid")])

    def _scale_rewards(self, rollout: RolloutBuffer) -> None:
        """Divide rewards by the running std of the discounted return (SB3's VecNormalize)."""
        data = rollout.data
        rewards, done, valid = data.get(("next", "reward")), data.get(("next", "done")), data.get("valid")
        returns = torch.empty_like(rewards)
        running, gamma = self._discounted_return, self.hp.gamma
        for t in range(len(rewards)):
            running = running * gamma + rewards[t]
            returns[t] = running
            running = running * (~done[t])
        self._discounted_return = running
        self.reward_norm.update(returns[valid])
        scale = float((self.reward_norm.var + self.reward_norm.epsilon).rsqrt())
        rewards.mul_(scale).clamp_(-self.reward_norm.clip, self.reward_norm.clip)

    def action_values(self, obs: Any, mask: np.ndarray | None = None, state: Any = None) -> ActionValues | None:
        """The policy's probability of every action (``Discrete`` actions, built-in networks).

        :param obs: one observation of the adapted env.
        :param mask: the valid-action mask, or None.
        :param state: recurrent policies: the state ``act`` is given with ``obs`` (None: an episode's start).
        """
        head, features = getattr(self.policy, "head", None), getattr(self.policy, "features", None)
        recurrent = isinstance(self.policy, RecurrentActorCritic)
        if not isinstance(head, CategoricalHead) or (features is None and not recurrent):
            return None
        with torch.inference_mode():
            if recurrent:
                hidden = self._initial_or_given_state(STATE_KEY, self.policy.state_shape, torch.float32, state)
                actor, _, _ = self.policy.step(self.policy.encoder(to_batch(obs, self.device)), hidden)
                logits = head(self.policy.actor_mlp(actor))
            else:
                logits = head(features(to_batch(obs, self.device))[0])
            if mask is not None:
                logits = masked_logits(logits, torch.as_tensor(np.asarray(mask, dtype=bool), device=self.device).unsqueeze(0))
            probs = torch.softmax(logits, -1)[0]
        return ActionValues(probs.cpu().numpy(), "prob")
