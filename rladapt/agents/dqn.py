"""Deep Q-Network (Mnih et al. 2015) with the Rainbow-era options that matter most.

Each option is named where it happens in :meth:`DQN.update`: n-step returns and prioritised
replay (the replay buffer computes both), double DQN (Van Hasselt et al. 2016: the online network
picks the next action, the target network values it), a dueling head (nets.py), Huber loss,
global gradient clipping, hard or Polyak target updates. Exploration is epsilon-greedy with a
linear schedule, or Boltzmann (softmax over Q / temperature). Invalid-action masks are respected
when acting greedily, when exploring, and in the bootstrap target (max over the valid next actions).

Distributional DQN (``distributional=``): ``"qr"`` learns ``quantiles`` quantiles of the return
of every action with the quantile Huber loss (QR-DQN, Dabney et al. 2018,
:func:`quantile_huber_loss`); ``"c51"`` a categorical distribution over ``atoms`` fixed returns in
``[v_min, v_max]``, trained by cross-entropy against the projected target distribution (C51,
Bellemare et al. 2017, :func:`categorical_projection`). Acting and the choice of the next action
use the distribution's mean. ``noisy=True`` replaces the MLP and head layers with noisy linear
layers (Fortunato et al. 2018; :class:`~rladapt.agents.nets.NoisyLinear`), their noise drawn
anew before every acting batch and every gradient step. Both combine with double, dueling,
n-step and prioritised replay; :class:`Rainbow` (C51 + dueling + noisy + 3-step + prioritised +
double) and the :class:`QRDQN` and :class:`C51` presets only change defaults.

Example:
    >>> agent = DQN(seed=0)
    >>> env = AutoAdapt(gym.make("CartPole-v1"), agent)        # doctest: +SKIP
    >>> agent.learn(env, steps=50_000).evaluate(env).mean      # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from tensordict import TensorDictBase
from torch import nn

from rladapt.agents.base import to_batch
from rladapt.agents.fast_q import q_gradient_for
from rladapt.agents.masks import bootstrap_mask, masked_logits, sample_categorical
from rladapt.agents.nets import FlatParameters, NetworkFactory, QNetwork, frozen_copy
from rladapt.agents.off_policy import EpsilonGreedyAgent, OffPolicyConfig, replay_frame_stack
from rladapt.agents.optim import adam, adam_step, set_lr
from rladapt.buffers import ReplayBuffer
from rladapt.spec import AgentSpec
from rladapt.types import ActionValues
from rladapt.agents.tuning import GAMMAS, SearchBudget, suggest_hidden

if TYPE_CHECKING:
    import optuna

#: Per-kind defaults for settings left at None. Vector: tuned for classic control (CartPole solved
#: in 50k steps; see benchmarks/dqn_cartpole.py); image: the Nature/rl-zoo Atari settings.
DQN_DEFAULTS: dict[str, dict[str, Any]] = {
    "vector": dict(num_envs=4, learning_starts=1000, train_freq=8, gradient_steps=8, batch_size=64,
                   lr=2e-3, anneal_lr=True, buffer_size=50_000, gamma=0.99, n_step=1, huber=False,
                   target_update_interval=32, exploration_fraction=0.2, exploration_final_eps=0.02,
                   hidden=(256, 256)),
    "image": dict(num_envs=4, learning_starts=50_000, train_freq=1, gradient_steps=1, batch_size=32,
                  lr=1e-4, anneal_lr=False, buffer_size=100_000, gamma=0.99, n_step=1, huber=True,
                  target_update_interval=1000, exploration_fraction=0.1, exploration_final_eps=0.01,
                  hidden=(64, 64)),
}

#: Per-kind defaults of the distributional settings (used when ``distributional`` is set).
#: Vector: a support wide enough for classic-control and Box2D discounted returns (|G| <= 100 at
#: gamma 0.99 with rewards in [-1, 1] a step); image: the C51 paper's support for clipped rewards
#: and QR-DQN's 200 quantiles.
DISTRIBUTIONAL_DEFAULTS: dict[str, dict[str, Any]] = {
    "vector": dict(quantiles=25, atoms=51, v_min=-100.0, v_max=100.0),
    "image": dict(quantiles=200, atoms=51, v_min=-10.0, v_max=10.0),
}


def quantile_huber_loss(quantiles: torch.Tensor, target: torch.Tensor, kappa: float = 1.0) -> torch.Tensor:
    """QR-DQN's quantile Huber loss (Dabney et al. 2018, eq. 10), one value per transition.

    With ``N`` predicted quantiles ``theta_i`` at the midpoints ``tau_i = (2i + 1) / (2N)`` and
    ``M`` target samples ``T_j``, ``u_ij = T_j - theta_i`` and the Huber loss
    ``L(u) = u^2 / 2`` for ``|u| <= kappa``, ``kappa (|u| - kappa / 2)`` beyond::

        loss = sum_i mean_j |tau_i - 1{u_ij < 0}| * L(u_ij) / kappa

    :param quantiles: ``[B, N]`` predicted quantiles of the taken action.
    :param target: ``[B, M]`` target quantiles (``r + discount * theta'_j``; held fixed).
    :param kappa: the Huber threshold (1 in the paper).
    :return: ``[B]`` losses (weight them for prioritised replay, then average).
    """
    n = quantiles.shape[-1]
    tau = (torch.arange(n, device=quantiles.device, dtype=quantiles.dtype) + 0.5) / n
    u = target.unsqueeze(-2) - quantiles.unsqueeze(-1)  # [B, N, M]
    abs_u = u.abs()
    huber = torch.where(abs_u <= kappa, 0.5 * u.pow(2), kappa * (abs_u - 0.5 * kappa))
    weight = (tau.unsqueeze(-1) - (u.detach() < 0).to(u.dtype)).abs()
    return (weight * huber / kappa).sum(-2).mean(-1)


def categorical_projection(probs: torch.Tensor, reward: torch.Tensor, discount: torch.Tensor,
                           support: torch.Tensor) -> torch.Tensor:
    """C51's target: the distribution of ``r + discount * Z'`` projected onto the fixed support
    (Bellemare et al. 2017, algorithm 1).

    Each atom ``z_j`` of the next distribution moves to ``Tz_j = r + discount * z_j``, clipped to
    ``[v_min, v_max]``; its probability is split between the two neighbouring atoms of the support
    in proportion to closeness (all of it to one atom when ``Tz_j`` falls on it). A terminal
    transition (discount 0) puts all the mass at ``r``'s place on the support.

    :param probs: ``[B, K]`` probabilities of the next state's chosen action.
    :param reward: ``[B]`` (n-step) rewards.
    :param discount: ``[B]`` discounts (``gamma^k``; 0 where the episode terminated).
    :param support: ``[K]`` evenly spaced atoms from ``v_min`` to ``v_max``.
    :return: ``[B, K]`` target probabilities (each row sums to the row of ``probs``' sum).
    """
    k = support.shape[0]
    v_min, v_max = support[0], support[-1]
    delta = (v_max - v_min) / (k - 1)
    tz = (reward.unsqueeze(-1) + discount.unsqueeze(-1) * support).clamp(v_min, v_max)
    b = ((tz - v_min) / delta).clamp(0, k - 1)
    lower, upper = b.floor(), b.ceil()
    # lower == upper (Tz on an atom): the whole probability goes to that atom.
    lower_weight = upper - b + (lower == upper).to(b.dtype)
    upper_weight = b - lower
    target = torch.zeros_like(probs)
    target.scatter_add_(-1, lower.long(), probs * lower_weight)
    target.scatter_add_(-1, upper.long(), probs * upper_weight)
    return target


def masked_max_q(q: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Q-values with invalid actions pushed to ``MASKED_LOGIT`` (finite, so ``0 * q`` stays 0).
    A row with no valid action (a final observation) is left unmasked."""
    return masked_logits(q, bootstrap_mask(mask))


def q_replay_search_space(trial: optuna.Trial, budget: SearchBudget) -> dict[str, Any]:
    """What the DQN family's search spaces share (ranges after rl-zoo's DQN; warm-up and replay
    kept within the budget)."""
    return {
        "lr": trial.suggest_float("lr", 1e-5, 1e-2, log=True),
        "gamma": trial.suggest_categorical("gamma", GAMMAS),
        "batch_size": trial.suggest_categorical("batch_size", (32, 64, 128, 256)),
        "buffer_size": trial.suggest_categorical("buffer_size", budget.capacities((10_000, 50_000, 100_000, 1_000_000))),
        "learning_starts": trial.suggest_categorical("learning_starts", budget.warmups((0, 1_000, 5_000, 10_000, 20_000))),
        "train_freq": trial.suggest_categorical("train_freq", (1, 4, 8, 16)),
        "gradient_steps": trial.suggest_categorical("gradient_steps", (1, 2, 4, 8)),
        "target_update_interval": trial.suggest_categorical("target_update_interval", (1, 10, 32, 100, 1_000)),
        "n_step": trial.suggest_categorical("n_step", (1, 3, 5)),
        "hidden": suggest_hidden(trial),
    }


def dqn_search_space(trial: optuna.Trial, budget: SearchBudget) -> dict[str, Any]:
    """DQN's (and C51's) search space: the family's, plus epsilon's schedule."""
    settings = q_replay_search_space(trial, budget)
    settings["exploration_fraction"] = trial.suggest_float("exploration_fraction", 0.05, 0.5)
    settings["exploration_final_eps"] = trial.suggest_float("exploration_final_eps", 0.0, 0.2)
    return settings


def qrdqn_search_space(trial: optuna.Trial, budget: SearchBudget) -> dict[str, Any]:
    """QR-DQN's search space: DQN's, plus the number of quantiles (rl-zoo: 10 to 200)."""
    settings = dqn_search_space(trial, budget)
    settings["quantiles"] = trial.suggest_categorical("quantiles", (10, 25, 50, 100, 200))
    return settings


def rainbow_search_space(trial: optuna.Trial, budget: SearchBudget) -> dict[str, Any]:
    """Rainbow's search space: the family's without epsilon (its noisy layers explore), plus the
    layers' initial noise scale."""
    settings = q_replay_search_space(trial, budget)
    settings["noisy_std"] = trial.suggest_categorical("noisy_std", (0.1, 0.25, 0.5, 1.0))
    return settings


@dataclass
class DQNConfig(OffPolicyConfig):
    """DQN settings. None means "the default for this kind of env" (see ``DQN_DEFAULTS``).

    :param lr: Adam learning rate.
    :param anneal_lr: anneal the learning rate linearly to 0 over each ``learn`` call (settles the
        final greedy policy; on by default for vector observations).
    :param buffer_size: replay capacity in transitions (over all envs).
    :param batch_size: minibatch size of a gradient step.
    :param gamma: discount factor.
    :param n_step: length of the multi-step return (1: one-step Q-learning targets, the default:
        against 3 steps, CartPole-v1 at 50k steps, held-out seeds 5-14, reached 475 on 10 of 10
        seeds instead of 4, LunarLander-v3 at 100k 235.6 instead of 99.2, MountainCar-v0 at 120k
        -113.3 instead of -126.8, Acrobot-v1 equal).
    :param double: double DQN (the online network picks the next action, the target network values it).
    :param dueling: dueling head, ``Q = V + A - mean(A)``.
    :param prioritized: replay sampling: None (uniform), ``"proportional"`` or ``"rank"``.
    :param alpha: prioritisation exponent.
    :param beta: initial importance-sampling exponent (annealed to 1 over the learn call).
    :param target_update_interval: gradient steps between target updates.
    :param tau: target update rate: 1.0 copies the online network (hard update), less than 1 moves
        the target by ``tau`` towards it (Polyak) every ``target_update_interval`` gradient steps.
    :param huber: Huber (smooth L1) loss on the TD error; False: squared error. None: Huber for
        images (clipped Atari rewards), squared error for vectors: with returns of order 100
        (CartPole) Huber caps the pull of terminal transitions and the Q-values can drift upwards
        without bound under frequent target updates.
    :param max_grad_norm: global gradient norm clip (None: no clipping).
    :param exploration: ``"epsilon"`` (epsilon-greedy) or ``"boltzmann"`` (sample softmax(Q / temperature)).
    :param exploration_initial_eps: epsilon at the start of each learn call.
    :param exploration_final_eps: epsilon after the schedule.
    :param exploration_fraction: fraction of the learn call over which epsilon falls linearly.
    :param temperature: Boltzmann temperature.
    :param frame_dedup: store the frames of stacked image observations once (None: on when the
        observation is a stack of ``spec.frame_stack`` images).
    :param hidden: hidden layer sizes of the MLP over vector observations (vector default 256x256:
        CartPole-v1 at 50k steps, seeds 0-9, reached 475 on 8 of 10 seeds, against 5 of 10 with 64x64
        and twice as many gradient steps).
    :param network: your own encoder (observations -> ``[B, F]`` features), or a factory
        ``(observation_space, action_space) -> encoder``; the Q head is added on top.
    :param distributional: None (one Q-value per action), ``"qr"`` (QR-DQN: ``quantiles``
        quantiles per action, quantile Huber loss) or ``"c51"`` (C51: a categorical distribution
        over ``atoms`` returns in ``[v_min, v_max]``, cross-entropy to the projected target).
        ``huber`` does not apply to them.
    :param quantiles: QR-DQN: quantiles per action (None: 25 for vectors, 200 for images).
    :param kappa: QR-DQN: the quantile Huber loss's threshold.
    :param atoms: C51: atoms of the support (None: 51).
    :param v_min: C51: the smallest return of the support (None: -100 for vectors, -10 for images).
    :param v_max: C51: the largest return of the support (None: 100 for vectors, 10 for images).
    :param noisy: noisy linear layers (factorised Gaussian, Fortunato et al. 2018) in the MLP and
        the head, drawn anew for every acting batch and gradient step; greedy acting and
        evaluation use the mean weights. The epsilon schedule still applies: set
        ``exploration_initial_eps=exploration_final_eps=0`` to explore by the noise alone (as
        :class:`Rainbow` does).
    :param noisy_std: the noisy layers' initial noise scale ``sigma_0``.
    :param fast: the hand-written gradient of the TD loss (:mod:`rladapt.agents.fast_q`: the
        built-in vector Q-network without dueling, noisy or distributional heads; the same
        gradient as autograd, ~2x faster for the 256x256 default). None: wherever it applies;
        True: required (a ``ValueError`` says why it does not apply); False: autograd always.
    """

    lr: float | None = None
    anneal_lr: bool | None = None
    buffer_size: int | None = None
    batch_size: int | None = None
    gamma: float | None = None
    n_step: int | None = None
    double: bool = True
    dueling: bool = False
    prioritized: str | None = None
    alpha: float = 0.6
    beta: float = 0.4
    target_update_interval: int | None = None
    tau: float = 1.0
    huber: bool | None = None
    max_grad_norm: float | None = 10.0
    exploration: str = "epsilon"
    exploration_initial_eps: float = 1.0
    exploration_final_eps: float | None = None
    exploration_fraction: float | None = None
    temperature: float = 1.0
    frame_dedup: bool | None = None
    hidden: tuple[int, ...] | None = None
    network: nn.Module | NetworkFactory | None = None
    distributional: str | None = None
    quantiles: int | None = None
    kappa: float = 1.0
    atoms: int | None = None
    v_min: float | None = None
    v_max: float | None = None
    noisy: bool = False
    noisy_std: float = 0.5
    fast: bool | None = None


class DQN(EpsilonGreedyAgent):
    """Deep Q-learning for discrete actions, with double, dueling, n-step and prioritised options.

    Accepts vector, image and nested observations, ``Discrete`` actions (AutoAdapt discretises
    ``Box`` actions for it) and invalid-action masks. Settings are keyword arguments (:class:`DQNConfig`).
    """

    spec: ClassVar[AgentSpec] = AgentSpec(
        observations=frozenset({"vector", "image", "nested"}), actions=frozenset({"discrete"}), masks=True
    )
    Config: ClassVar[type[DQNConfig]] = DQNConfig
    search_space = staticmethod(dqn_search_space)

    def default_settings(self, observation_kind: str, action_kind: str) -> dict[str, Any]:
        kind = "image" if observation_kind in ("image", "nested") else "vector"
        return {**DQN_DEFAULTS[kind], **DISTRIBUTIONAL_DEFAULTS[kind]}

    def build(self) -> None:
        hp = self.hp
        if hp.exploration not in ("epsilon", "boltzmann"):
            raise ValueError(f"exploration must be 'epsilon' or 'boltzmann', got {hp.exploration!r}")
        if not isinstance(self.action_space, spaces.Discrete):
            raise TypeError(f"DQN needs Discrete actions, got {self.action_space}; adapt the env with AutoAdapt(env, agent)")
        network = hp.network
        if network is not None and not isinstance(network, nn.Module) and callable(network):
            network = network(self.observation_space, self.action_space)
        atoms = 1
        if hp.distributional == "qr":
            atoms = hp.quantiles
        elif hp.distributional == "c51":
            if not (math.isfinite(hp.v_min) and math.isfinite(hp.v_max) and hp.v_min < hp.v_max):
                raise ValueError(f"{type(self).__name__}(v_min={hp.v_min}, v_max={hp.v_max}): the C51 support needs "
                                 f"finite v_min < v_max")
            atoms = hp.atoms
            self.register_buffer("support", torch.linspace(hp.v_min, hp.v_max, atoms, device=self.device))
        elif hp.distributional is not None:
            raise ValueError(f"distributional must be None, 'qr' or 'c51', got {hp.distributional!r}")
        self.q = QNetwork(self.observation_space, int(self.action_space.n), tuple(hp.hidden), hp.dueling, network,
                          atoms=atoms, noisy=hp.noisy, noisy_std=hp.noisy_std).to(self.device)
        self.q_target, self.target_flat = frozen_copy(self.q)
        self.params = FlatParameters(self.q)  # one op to zero, clip, step and copy all parameters
        self.optimizer = adam([self.params.param], hp.lr, self.device)
        # The TD loss's gradient: written out by hand where it applies, autograd otherwise (bound once).
        self.q_gradient = q_gradient_for(self, hp.fast)
        self.gradient_steps_done = 0

    def resume_state(self) -> dict[str, Any]:
        """The gradient steps done: they time the target network's updates."""
        return {"gradient_steps_done": int(getattr(self, "gradient_steps_done", 0))}

    def load_resume_state(self, state: dict[str, Any]) -> None:
        self.gradient_steps_done = int(state.get("gradient_steps_done", 0))

    def build_replay(self, num_envs: int) -> ReplayBuffer:
        hp = self.hp
        return ReplayBuffer(
            hp.buffer_size, num_envs=num_envs, n_step=hp.n_step, gamma=hp.gamma, prioritized=hp.prioritized,
            alpha=hp.alpha, beta=hp.beta, beta_steps=max(1, self._update_budget()),
            frame_stack=replay_frame_stack(self, hp.frame_dedup), seed=self.config.seed,
        )

    def _update_budget(self) -> int:
        """Rough count of gradient steps in a learn call, for annealing beta (set in make_storage)."""
        return getattr(self, "_expected_gradient_steps", 100_000)

    def make_storage(self, num_envs: int, steps: int) -> ReplayBuffer:
        hp = self.hp
        per_iteration = hp.train_freq * num_envs
        self._expected_gradient_steps = max(1, (steps - (hp.learning_starts or 0)) // per_iteration * hp.gradient_steps)
        return super().make_storage(num_envs, steps)

    def q_values(self, out: torch.Tensor) -> torch.Tensor:
        """Expected Q-values ``[B, n]`` from the network's output: itself, the mean of the
        quantiles (QR-DQN) or the mean of the categorical distribution (C51)."""
        if self.hp.distributional == "qr":
            return out.mean(-1)
        if self.hp.distributional == "c51":
            return (torch.softmax(out, -1) * self.support).sum(-1)
        return out

    def act_batch(self, td: TensorDictBase, deterministic: bool = False) -> TensorDictBase:
        mask = td.get("action_mask", None)
        if self.hp.noisy and not deterministic:
            self.q.reset_noise(self.generator)  # fresh noise for every acting batch
        q = masked_max_q(self.q_values(self.q(td.get("observation"), noise=not deterministic)), mask)
        if deterministic:
            action = q.argmax(-1)
        elif self.hp.exploration == "boltzmann":
            action = sample_categorical(torch.log_softmax(q / self.hp.temperature, -1), self.generator)
        else:  # epsilon-greedy
            scores = torch.rand(q.shape, generator=self.generator, device=q.device)
            action = self.epsilon_greedy(q.argmax(-1), scores, mask)
        td.set("action", action)
        return td

    def action_values(self, obs: Any, mask: np.ndarray | None = None) -> ActionValues:
        """Q-values of every action for one observation (the terminal view of ``play``)."""
        with torch.inference_mode():
            q = self.q_values(self.q(to_batch(obs, self.device), noise=False))[0]
        return ActionValues(q.cpu().numpy(), "q")

    def update(self, replay: ReplayBuffer, progress: float) -> dict[str, float]:
        hp, gradient_steps = self.hp, self.hp.gradient_steps
        lr = hp.lr * (1.0 - progress) if hp.anneal_lr else hp.lr
        set_lr(self.optimizer, lr)
        # Uniform replay: one sample call for all gradient steps (same distribution, less overhead).
        whole = None if hp.prioritized else _unpack(replay.sample(gradient_steps * hp.batch_size, self.generator))
        losses, q_means = [], []
        for i in range(gradient_steps):
            if whole is None:
                batch = _unpack(replay.sample(hp.batch_size, self.generator))
            else:
                batch = [None if t is None else t[i * hp.batch_size : (i + 1) * hp.batch_size] for t in whole]
            obs, action, reward, next_obs, discount, next_mask, weight, index = batch

            if hp.noisy:  # independent noise for the online and the target network, every step
                self.q.reset_noise(self.generator)
                self.q_target.reset_noise(self.generator)
            self.params.zero_grad()
            if hp.distributional is not None:
                loss, td_error, q = self._distributional_loss(obs, action, reward, next_obs, discount, next_mask)
                loss = (loss * weight).mean() if hp.prioritized else loss.mean()
                loss.backward()
            else:
                # Target: r + gamma^k * Q_target(s', a*) (n-step reward and discount come from the replay;
                # the discount is 0 when the episode terminated inside the window, not when truncated).
                with torch.no_grad():
                    q_next = self.q_target(next_obs)
                    chooser = self.q(next_obs) if hp.double else q_next  # double DQN: online net picks a*
                    best = masked_max_q(chooser, next_mask).argmax(-1, keepdim=True)  # max over valid actions
                    target = reward + discount * q_next.gather(-1, best).squeeze(-1)
                # Squared error (or Huber), importance-weighted with prioritised replay, and its gradient.
                loss, td_error, q = self.q_gradient(obs, action, target, weight if hp.prioritized else None)
            if hp.max_grad_norm is not None:
                self.params.clip_grad_norm_(hp.max_grad_norm)
            adam_step(self.optimizer)
            if hp.prioritized:
                replay.update_priorities(index, td_error.detach())

            self.gradient_steps_done += 1
            if self.gradient_steps_done % hp.target_update_interval == 0:
                if hp.tau >= 1.0:
                    self.target_flat.copy_(self.params.param.detach())
                else:
                    self.target_flat.lerp_(self.params.param.detach(), hp.tau)
            losses.append(loss.detach())
            q_means.append(q.detach().mean())
        loss, q_mean = torch.stack(losses).mean().item(), torch.stack(q_means).mean().item()
        metrics = {"train/loss": loss, "train/q": q_mean, "train/lr": lr}
        if hp.exploration == "epsilon":
            metrics["train/epsilon"] = self.epsilon
        return metrics


    def distributional_target(self, reward: torch.Tensor, next_obs: Any, discount: torch.Tensor,
                              next_mask: torch.Tensor | None) -> torch.Tensor:
        """The target distribution ``[B, atoms]`` of QR-DQN (quantiles ``r + discount * theta'``)
        or C51 (probabilities, :func:`categorical_projection`), for the next action of highest
        mean among the valid ones (chosen by the online network with ``double``, the target
        network otherwise); ``discount`` is 0 where the episode terminated, so the target is the
        reward alone there."""
        hp = self.hp
        with torch.no_grad():
            next_out = self.q_target(next_obs)  # [B, n, atoms]
            chooser = self.q(next_obs) if hp.double else next_out  # double DQN: online net picks a*
            best = masked_max_q(self.q_values(chooser), next_mask).argmax(-1)  # the best valid action
            next_dist = next_out[torch.arange(best.shape[0], device=best.device), best]  # [B, atoms]
            if hp.distributional == "qr":
                return reward.unsqueeze(-1) + discount.unsqueeze(-1) * next_dist
            return categorical_projection(torch.softmax(next_dist, -1), reward, discount, self.support)

    def _distributional_loss(self, obs: Any, action: torch.Tensor, reward: torch.Tensor, next_obs: Any,
                             discount: torch.Tensor, next_mask: torch.Tensor | None
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(per-transition loss, priority error, expected Q of the taken action)`` of QR-DQN
        (quantile Huber loss) or C51 (cross-entropy to the projected target)."""
        target = self.distributional_target(reward, next_obs, discount, next_mask)
        out = self.q(obs)[torch.arange(action.shape[0], device=action.device), action.long()]  # [B, atoms]
        if self.hp.distributional == "qr":
            loss = quantile_huber_loss(out, target, self.hp.kappa)
            return loss, loss.detach(), out.detach().mean(-1)
        log_probs = torch.log_softmax(out, -1)
        loss = -(target * log_probs).sum(-1)  # cross-entropy (KL up to the target's entropy)
        return loss, loss.detach(), (log_probs.detach().exp() * self.support).sum(-1)


def _unpack(batch: TensorDictBase) -> list[Any]:
    """The sampled entries a gradient step reads, in a fixed order (None when absent)."""
    return [
        batch.get("observation"), batch.get("action"), batch.get(("next", "reward")),
        batch.get(("next", "observation")), batch.get(("next", "discount")),
        batch.get(("next", "action_mask"), None), batch.get("weight"), batch.get("index"),
    ]


# ----------------------------------------------------------------------------------------------
# Presets: the same agent with other defaults (settings passed explicitly still win)
# ----------------------------------------------------------------------------------------------


@dataclass
class QRDQNConfig(DQNConfig):
    """QR-DQN settings: :class:`DQNConfig` with ``distributional="qr"``."""

    distributional: str | None = "qr"


class QRDQN(DQN):
    """Quantile-regression DQN (Dabney et al. 2018): ``DQN(distributional="qr")``, on the DQN
    defaults for the env's kind, with ``quantiles`` quantiles per action (25 for vectors, 200
    for images). Settings: :class:`DQNConfig`."""

    Config: ClassVar[type[DQNConfig]] = QRDQNConfig
    search_space = staticmethod(qrdqn_search_space)


@dataclass
class C51Config(DQNConfig):
    """C51 settings: :class:`DQNConfig` with ``distributional="c51"``."""

    distributional: str | None = "c51"


class C51(DQN):
    """Categorical DQN (Bellemare et al. 2017): ``DQN(distributional="c51")``, 51 atoms over
    ``[v_min, v_max]`` (``[-100, 100]`` for vectors, ``[-10, 10]`` for images). Settings:
    :class:`DQNConfig`."""

    Config: ClassVar[type[DQNConfig]] = C51Config


@dataclass
class RainbowConfig(DQNConfig):
    """Rainbow settings (Hessel et al. 2018): :class:`DQNConfig` with C51 (51 atoms), a dueling
    head, noisy layers and no epsilon (the noise explores), 3-step returns, proportional
    prioritised replay (``alpha=0.6``, ``beta`` annealed from 0.4 to 1) and double DQN."""

    distributional: str | None = "c51"
    dueling: bool = True
    noisy: bool = True
    n_step: int | None = 3
    prioritized: str | None = "proportional"
    double: bool = True
    exploration_initial_eps: float = 0.0
    exploration_final_eps: float | None = 0.0


class Rainbow(DQN):
    """Rainbow: ``DQN(distributional="c51", dueling=True, noisy=True, n_step=3,
    prioritized="proportional", double=True, exploration_initial_eps=0, exploration_final_eps=0)``
    (:class:`RainbowConfig`); the other settings are DQN's per-kind defaults. Any of them can be
    set as for DQN (``Rainbow(noisy=False, exploration_initial_eps=1.0)``, ...)."""

    Config: ClassVar[type[DQNConfig]] = RainbowConfig
    search_space = staticmethod(rainbow_search_space)
