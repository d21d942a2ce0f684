"""Deep Q-Network (Mnih et al. 2015) with the Rainbow-era options that matter most.

Each option is named where it happens in :meth:`DQN.update`: n-step returns and prioritised
replay (the replay buffer computes both), double DQN (Van Hasselt et al. 2016: the online network
picks the next action, the target network values it), a dueling head (nets.py), Huber loss,
global gradient clipping, hard or Polyak target updates. Exploration is epsilon-greedy with a
linear schedule, or Boltzmann (softmax over Q / temperature). Invalid-action masks are respected
when acting greedily, when exploring, and in the bootstrap target (max over the valid next actions).

Example:
    >>> agent = DQN(seed=0)
    >>> env = AutoAdapt(gym.make("CartPole-v1"), agent)        # doctest: +SKIP
    >>> agent.learn(env, steps=50_000).evaluate(env).mean      # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from tensordict import TensorDictBase
from torch import nn

from rladapt.agents.base import to_batch
from rladapt.agents.masks import bootstrap_mask, masked_logits, sample_categorical
from rladapt.agents.nets import FlatParameters, NetworkFactory, QNetwork, frozen_copy
from rladapt.agents.off_policy import EpsilonGreedyAgent, OffPolicyConfig, replay_frame_stack
from rladapt.agents.optim import adam, adam_step, set_lr
from rladapt.buffers import ReplayBuffer
from rladapt.spec import AgentSpec
from rladapt.types import ActionValues

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


def masked_max_q(q: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Q-values with invalid actions pushed to ``MASKED_LOGIT`` (finite, so ``0 * q`` stays 0).
    A row with no valid action (a final observation) is left unmasked."""
    return masked_logits(q, bootstrap_mask(mask))


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


class DQN(EpsilonGreedyAgent):
    """Deep Q-learning for discrete actions, with double, dueling, n-step and prioritised options.

    Accepts vector, image and nested observations, ``Discrete`` actions (AutoAdapt discretises
    ``Box`` actions for it) and invalid-action masks. Settings are keyword arguments (:class:`DQNConfig`).
    """

    spec: ClassVar[AgentSpec] = AgentSpec(
        observations=frozenset({"vector", "image", "nested"}), actions=frozenset({"discrete"}), masks=True
    )
    Config: ClassVar[type[DQNConfig]] = DQNConfig

    def default_settings(self, observation_kind: str, action_kind: str) -> dict[str, Any]:
        return DQN_DEFAULTS["image" if observation_kind in ("image", "nested") else "vector"]

    def build(self) -> None:
        hp = self.hp
        if hp.exploration not in ("epsilon", "boltzmann"):
            raise ValueError(f"exploration must be 'epsilon' or 'boltzmann', got {hp.exploration!r}")
        if not isinstance(self.action_space, spaces.Discrete):
            raise TypeError(f"DQN needs Discrete actions, got {self.action_space}; adapt the env with AutoAdapt(env, agent)")
        network = hp.network
        if network is not None and not isinstance(network, nn.Module) and callable(network):
            network = network(self.observation_space, self.action_space)
        self.q = QNetwork(self.observation_space, int(self.action_space.n), tuple(hp.hidden), hp.dueling, network).to(self.device)
        self.q_target, self.target_flat = frozen_copy(self.q)
        self.params = FlatParameters(self.q)  # one op to zero, clip, step and copy all parameters
        self.optimizer = adam([self.params.param], hp.lr, self.device)
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

    def act_batch(self, td: TensorDictBase, deterministic: bool = False) -> TensorDictBase:
        mask = td.get("action_mask", None)
        q = masked_max_q(self.q(td.get("observation")), mask)
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
            q = self.q(to_batch(obs, self.device))[0]
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

            # Target: r + gamma^k * Q_target(s', a*) (n-step reward and discount come from the replay;
            # the discount is 0 when the episode terminated inside the window, not when truncated).
            with torch.no_grad():
                q_next = self.q_target(next_obs)
                chooser = self.q(next_obs) if hp.double else q_next  # double DQN: online net picks a*
                best = masked_max_q(chooser, next_mask).argmax(-1, keepdim=True)  # max over valid actions
                target = reward + discount * q_next.gather(-1, best).squeeze(-1)

            q = self.q(obs).gather(-1, action.long().unsqueeze(-1)).squeeze(-1)
            td_error = q - target
            if hp.huber:
                loss = F.smooth_l1_loss(q, target, reduction="none")
            else:
                loss = 0.5 * td_error.pow(2)
            loss = (loss * weight).mean() if hp.prioritized else loss.mean()  # importance weights

            self.params.zero_grad()
            loss.backward()
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


def _unpack(batch: TensorDictBase) -> list[Any]:
    """The sampled entries a gradient step reads, in a fixed order (None when absent)."""
    return [
        batch.get("observation"), batch.get("action"), batch.get(("next", "reward")),
        batch.get(("next", "observation")), batch.get(("next", "discount")),
        batch.get(("next", "action_mask"), None), batch.get("weight"), batch.get("index"),
    ]
