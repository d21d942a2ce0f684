"""Proximal Policy Optimization (Schulman et al. 2017), with the known implementation details.

The details, each named where it happens (see "The 37 implementation details of PPO"):
orthogonal init (nets.py), GAE (buffers/rollout.py), advantage normalisation per minibatch,
clipped surrogate objective, optional clipped value loss, entropy bonus, global gradient clipping,
learning-rate (and optionally clip-range) annealing, shuffled minibatches over several epochs,
observation and reward normalisation for continuous control, approx_kl and clip fraction in the
metrics, optional early stop at ``target_kl``.

Speed: for the built-in vector network with a categorical head (classic control, one-hot
discrete observations), the loss gradient is written out by hand (:class:`FastCategoricalPPO`,
checked against autograd in the tests) and small acting batches run in numpy
(:class:`NumpyActing`); other networks and heads take the autograd/torch path. Same math either way.

Example:
    >>> agent = PPO(seed=0)
    >>> env = AutoAdapt(gym.make("CartPole-v1"), agent)        # doctest: +SKIP
    >>> agent.learn(env, steps=100_000).evaluate(env).mean     # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from tensordict import TensorDictBase
from torch import nn

from rladapt.agents.base import ACTOR_CRITIC_SPEC, OnPolicyAgent, OnPolicyConfig
from rladapt.agents.nets import (
    MASKED_LOGIT,
    ActorCritic,
    CategoricalHead,
    DualMLP,
    FlattenVector,
    NetworkFactory,
)
from rladapt.buffers.rollout import RolloutBuffer, minibatch_indices
from rladapt.spec import AgentSpec

#: Per-kind defaults for settings left at None. Classic control: rl-zoo's CartPole settings with
#: minibatches of 64 over 10 epochs (40 gradient steps per rollout instead of 20 full-batch ones:
#: on CartPole-v1, seeds 0-39, mean steps to 475 9,700 against 16,300, median time 0.64-0.70x; Acrobot-v1
#: no worse); images: CleanRL's Atari settings; continuous: CleanRL/SB3's MuJoCo settings, batched.
PPO_DEFAULTS: dict[str, dict[str, Any]] = {
    "vector": dict(num_envs=8, n_steps=32, batch_size=64, n_epochs=10, lr=1e-3, gamma=0.98, gae_lambda=0.8,
                   clip_range=0.2, anneal_clip=True, ent_coef=0.0, vf_coef=1.0, normalize_observations=False,
                   normalize_rewards=False),
    "image": dict(num_envs=8, n_steps=128, batch_size=256, n_epochs=4, lr=2.5e-4, gamma=0.99, gae_lambda=0.95,
                  clip_range=0.1, anneal_clip=False, ent_coef=0.01, vf_coef=0.5, normalize_observations=False,
                  normalize_rewards=False),
    "continuous": dict(num_envs=8, n_steps=256, batch_size=256, n_epochs=10, lr=1e-3, gamma=0.95, gae_lambda=0.95,
                       clip_range=0.2, anneal_clip=False, ent_coef=0.0, vf_coef=0.5, normalize_observations=True,
                       normalize_rewards=True),
}


def adam(params: Any, lr: float, device: torch.device) -> torch.optim.Adam:
    """Adam with eps 1e-5 (a PPO detail); the fused kernel (one op for all parameters) where torch
    has one, which matters for small networks on CPU."""
    try:
        return torch.optim.Adam(params, lr=lr, eps=1e-5, fused=device.type in ("cpu", "cuda"))
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr, eps=1e-5)


def adam_step(optimizer: torch.optim.Adam) -> None:
    """``optimizer.step()`` for a fused Adam over one flat parameter, calling the fused kernel
    directly once its state exists: the same update on the same state tensors (so checkpoints
    are unchanged), without ``Optimizer.step``'s ~25 us of Python bookkeeping per call."""
    group = optimizer.param_groups[0]
    param = group["params"][0]
    state = optimizer.state.get(param)
    if (not group.get("fused") or len(optimizer.param_groups) != 1 or len(group["params"]) != 1 or not state
            or group["amsgrad"] or group["maximize"] or param.grad is None):
        optimizer.step()
        return
    beta1, beta2 = group["betas"]
    with torch.no_grad():
        state["step"] += 1
        torch._fused_adam_([param], [param.grad], [state["exp_avg"]], [state["exp_avg_sq"]], [], [state["step"]],
                           amsgrad=False, lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"],
                           eps=group["eps"], maximize=False)


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


def tanh_(z: torch.Tensor) -> torch.Tensor:
    """``tanh`` in place, by numpy's (single-threaded, SIMD) tanh on CPU: torch's vectorised tanh
    is slow on this kind of CPU (84 us for 256x128 here; numpy 12 us, ``2 * sigmoid(2z) - 1`` 26 us)."""
    if z.device.type == "cpu" and z.dtype == torch.float32 and z.is_contiguous():
        array = z.numpy()
        np.tanh(array, out=array)
        return z
    return torch.sigmoid(z.mul_(2.0), out=z).mul_(2.0).sub_(1.0)  # the same function, to 2e-7


class FastCategoricalPPO:
    """The PPO loss and its gradient for the built-in vector :class:`ActorCritic` (tanh
    :class:`DualMLP` body, masked :class:`CategoricalHead`), written out by hand: the forward in
    preallocated-free eager ops without autograd, the backward as the chain rule layer by layer,
    each gradient written straight into the parameters' flat gradient buffer.

    It computes exactly what autograd computes for the same loss (``tests/test_ppo.py`` checks
    the gradients against autograd), in about a third of the time: for two 64x64 MLPs at batch
    256 on CPU the autograd engine's per-node bookkeeping costs more than the arithmetic.
    ``supports`` says whether a policy qualifies; otherwise PPO uses autograd.
    """

    def __init__(self, policy: nn.Module) -> None:
        body, head = policy.body, policy.head
        self.first, self.weights, self.biases = body.first, list(body.weights), list(body.biases)
        self.hidden = body.hidden
        self.head, self.critic, self.encoder = head.linear, policy.critic, policy.encoder

    @staticmethod
    def supports(policy: nn.Module, params: Any) -> bool:
        body = getattr(policy, "body", None)
        if not (isinstance(policy, ActorCritic) and isinstance(body, DualMLP) and isinstance(body.activation, nn.Tanh)
                and isinstance(policy.head, CategoricalHead) and isinstance(policy.encoder, FlattenVector)):
            return False
        owned = {id(p) for p in (body.first.weight, body.first.bias, *body.weights, *body.biases,
                                 policy.head.linear.weight, policy.head.linear.bias, policy.critic.weight, policy.critic.bias)}
        return owned == {id(p) for p in params.params}  # every gradient is written, none left stale

    @torch.no_grad()
    def loss_and_grad(self, obs: torch.Tensor, action: torch.Tensor, old_log_prob: torch.Tensor,
                      advantages: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor | None,
                      clip: float, vf_coef: float, ent_coef: float, track: bool) -> torch.Tensor | None:
        """Write d(loss)/d(parameters) into the parameters' ``.grad``; return the diagnostics
        ``[policy_loss, value_loss, entropy, approx_kl, clip_fraction]`` when ``track``."""
        b = obs.shape[0]
        x = self.encoder(obs)
        # Forward: first layer for both MLPs, then one batched matmul per deeper layer.
        a = tanh_(torch.addmm(self.first.bias, x, self.first.weight.t()))  # [B, 2h0]
        acts = [a.view(b, 2, self.hidden[0]).transpose(0, 1)]  # [2, B, h0]: actor, critic
        for weight, bias in zip(self.weights, self.biases):
            acts.append(tanh_(torch.baddbmm(bias, acts[-1], weight)))
        actor, critic = acts[-1][0], acts[-1][1]
        logits = torch.addmm(self.head.bias, actor, self.head.weight.t())
        if mask is not None:
            logits.masked_fill_(~mask, MASKED_LOGIT)
        logp = torch.log_softmax(logits, -1)
        probs = logp.exp()
        log_prob = logp.gather(-1, action.unsqueeze(-1)).squeeze(-1)
        value = torch.addmm(self.critic.bias, critic, self.critic.weight.t()).squeeze(-1)

        # d loss / d log_prob of the clipped surrogate: -A * ratio / B where the unclipped term is
        # the minimum (ties included: there the clipped term has the same gradient), else 0.
        log_ratio = log_prob - old_log_prob
        ratio = log_ratio.exp()
        surr1 = ratio * advantages
        surr2 = ratio.clamp(1 - clip, 1 + clip) * advantages
        unclipped = surr1 <= surr2
        g_log_prob = surr1.mul(unclipped).mul_(-1.0 / b)
        # d log_prob / d logits = onehot(action) - probs.
        g_logits = probs.mul(-g_log_prob.unsqueeze(-1))
        g_logits.scatter_add_(-1, action.unsqueeze(-1), g_log_prob.unsqueeze(-1))
        entropy = None
        if ent_coef or track:
            entropy = -(probs * logp).sum(-1)
        if ent_coef:  # d(-c * mean H)/d logits = c/B * p * (log p + H)
            g_logits.addcmul_(probs, logp + entropy.unsqueeze(-1), value=ent_coef / b)
        if mask is not None:
            g_logits.masked_fill_(~mask, 0.0)
        g_value = (value - returns).mul_(vf_coef / b)  # d(vf * 0.5 * mean((v - R)^2)) / dv

        # Backward: heads, then the layers of both MLPs at once.
        torch.mm(g_logits.t(), actor, out=self.head.weight.grad)
        torch.sum(g_logits, 0, out=self.head.bias.grad)
        torch.mm(g_value.unsqueeze(0), critic, out=self.critic.weight.grad)
        torch.sum(g_value, 0, keepdim=True, out=self.critic.bias.grad)
        grad = torch.stack([g_logits @ self.head.weight, g_value.unsqueeze(-1) * self.critic.weight])  # [2, B, h]
        for i in range(len(self.weights) - 1, -1, -1):
            grad = torch.ops.aten.tanh_backward(grad, acts[i + 1])
            torch.bmm(acts[i].transpose(1, 2), grad, out=self.weights[i].grad)
            torch.sum(grad, 1, keepdim=True, out=self.biases[i].grad)
            grad = torch.bmm(grad, self.weights[i].transpose(1, 2))
        grad = torch.ops.aten.tanh_backward(grad.transpose(0, 1).reshape(b, -1), a)  # [B, 2h0]
        self.first.weight.grad.copy_(torch.mm(x.t(), grad).t())  # 4x faster than grad.t() @ x for thin x
        torch.sum(grad, 0, out=self.first.bias.grad)

        if not track:
            return None
        policy_loss = -torch.min(surr1, surr2).mean()
        value_loss = 0.5 * (value - returns).pow(2).mean()
        approx_kl = ((ratio - 1) - log_ratio).mean()
        clip_fraction = ((ratio - 1).abs() > clip).float().mean()
        return torch.stack([policy_loss, value_loss, entropy.mean(), approx_kl, clip_fraction])


class NumpyActing:
    """Acting of the built-in vector/discrete :class:`ActorCritic` in numpy, for small batches
    on CPU (one env step of 8 envs): the same function as ``ActorCritic.forward`` (tanh to within
    float32 rounding), with numpy's ~1 us per op instead of torch's ~5 us plus module calls.

    The arrays are views of the live parameters (Adam and ``load_state_dict`` write in place), so
    acting always uses the current weights; ``current`` detects a copied agent whose views went stale.
    """

    def __init__(self, policy: nn.Module) -> None:
        body, head = policy.body, policy.head
        view = lambda t: t.detach().numpy()  # noqa: E731 (shares memory with the parameter)
        self.policy, self.h0 = policy, body.hidden[0]
        self.w1, self.b1 = view(body.first.weight).T, view(body.first.bias)
        self.layers = [(view(w), view(b)) for w, b in zip(body.weights, body.biases)]
        self.wa, self.ba = view(head.linear.weight).T, view(head.linear.bias)
        self.wc, self.bc = view(policy.critic.weight).T, view(policy.critic.bias)
        #: Largest matmul work per batch row. numpy's BLAS goes multithreaded above 65536
        #: multiply-adds per call; acting stays single-threaded like torch (``num_threads``).
        self.work_per_row = max(self.w1.size, self.wa.size, *(w[0].size for w, _ in self.layers))
        self.max_batch = 65536 // self.work_per_row
        self._bias, self._bias_address = body.first.bias, body.first.bias.data_ptr()
        #: The output tensors this acting set last, by key, with their numpy views: when a step
        #: TensorDict still holds them (the collector's does), they are written in place.
        self._outputs: dict[str, tuple[torch.Tensor, np.ndarray]] = {}

    @staticmethod
    def supports(policy: nn.Module, params: Any) -> bool:
        return (FastCategoricalPPO.supports(policy, params) and policy.encoder.norm is None
                and params.param.device.type == "cpu" and params.param.dtype == torch.float32)

    def current(self) -> bool:
        """False for a copy of an agent: its parameters moved, and the numpy views were copied
        into arrays of their own (``base`` None) instead of following."""
        return self.b1.base is not None and self._bias.data_ptr() == self._bias_address

    def _write(self, td: TensorDictBase, key: str, value: np.ndarray) -> None:
        """``td[key] = value``: in place (a numpy copy) into the tensor this acting set there at
        the previous step, if the TensorDict still holds it and it fits; else a new tensor."""
        held = self._outputs.get(key)
        if held is not None and td.get(key, None) is held[0] and held[1].shape == value.shape:
            held[1][...] = value
            return
        tensor = torch.from_numpy(np.array(value, copy=True))
        td.set(key, tensor)
        self._outputs[key] = (td.get(key), tensor.numpy())

    def __call__(self, td: TensorDictBase, deterministic: bool, generator: torch.Generator) -> TensorDictBase:
        obs = td.get("observation")
        b = obs.shape[0]
        x = obs.numpy().reshape(b, -1)
        h = np.tanh(x @ self.w1 + self.b1).reshape(b, 2, self.h0).transpose(1, 0, 2)  # [2, B, h0]
        for w, bias in self.layers:
            h = np.tanh(np.matmul(h, w) + bias)
        logits = h[0] @ self.wa + self.ba
        mask = td.get("action_mask", None)
        if mask is not None:
            logits = np.where(mask.numpy(), logits, np.float32(MASKED_LOGIT))
        logits = logits - logits.max(-1, keepdims=True)
        probs = np.exp(logits)
        total = probs.sum(-1, keepdims=True)
        if deterministic:
            action = logits.argmax(-1)
        else:  # inverse CDF, as sample_categorical
            u = torch.rand(b, 1, generator=generator).numpy() * total
            action = np.minimum((probs.cumsum(-1) <= u).sum(-1), logits.shape[-1] - 1)
        rows = np.arange(b)
        log_prob = logits[rows, action] - np.log(total[:, 0])
        self._write(td, "action", action.astype(np.int64, copy=False))
        self._write(td, "log_prob", log_prob.astype(np.float32, copy=False))
        self._write(td, "value", (h[1] @ self.wc + self.bc)[:, 0].astype(np.float32, copy=False))
        return td



def act_numpy(agent: OnPolicyAgent, td: TensorDictBase, deterministic: bool) -> TensorDictBase | None:
    """Act with the agent's :class:`NumpyActing` (``agent._numpy_acting``, set in ``build``) when
    it has one, the batch is small (single-threaded BLAS) and needs no gradient; None otherwise
    (act with torch)."""
    fast = getattr(agent, "_numpy_acting", None)
    if fast is None or td.batch_size[0] > fast.max_batch or torch.is_grad_enabled():
        return None
    if not fast.current():  # a copied agent: rebuild the views
        fast = agent._numpy_acting = NumpyActing(agent.policy)
    return fast(td, deterministic, agent.generator)


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
    :param vf_coef: coefficient of the value loss ``0.5 * mean((V - R)^2)`` (CleanRL's form).
        Classic control defaults to 1.0, which is SB3/rl-zoo's ``vf_coef=0.5`` on the plain MSE
        (CartPole-v1 with the classic-control defaults, seeds 0-19: mean 10,240 steps to 475
        against 10,624 with 0.5). Images and continuous control: 0.5.
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
    vf_coef: float | None = None
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

    spec: ClassVar[AgentSpec] = ACTOR_CRITIC_SPEC
    Config: ClassVar[type[PPOConfig]] = PPOConfig

    def default_settings(self, observation_kind: str, action_kind: str) -> dict[str, Any]:
        return PPO_DEFAULTS[default_kind(observation_kind, action_kind)]

    def build(self) -> None:
        super().build()
        hp = self.hp
        self.build_actor_critic(hp.network, hp.hidden)
        self.optimizer = adam([self.params.param], hp.lr, self.device)
        # The hand-written loss gradient, for the built-in vector/discrete network.
        self._fast = FastCategoricalPPO(self.policy) if FastCategoricalPPO.supports(self.policy, self.params) else None
        self._numpy_acting = NumpyActing(self.policy) if NumpyActing.supports(self.policy, self.params) else None

    def act_batch(self, td: TensorDictBase, deterministic: bool = False) -> TensorDictBase:
        out = act_numpy(self, td, deterministic)
        return out if out is not None else super().act_batch(td, deterministic)

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
        if self._fast is not None and not hp.clip_value:
            return self._fast_update(batch, full_batch_advantages, lr, clip)
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

        return self._metrics(stats, batch, epoch, lr, clip)

    def _fast_update(self, batch: Any, full_batch_advantages: torch.Tensor, lr: float, clip: float) -> dict[str, float]:
        """The same update as the autograd loop, with :class:`FastCategoricalPPO`'s gradients."""
        hp, fast = self.hp, self._fast
        obs, action, old_log_prob = batch.get("observation"), batch.get("action"), batch.get("log_prob")
        advantage, returns, mask = batch.get("advantage"), batch.get("value_target"), batch.get("action_mask", None)
        ent_coef = hp.ent_coef or 0.0
        stats = []
        for epoch in range(hp.n_epochs):
            track = epoch == hp.n_epochs - 1 or hp.target_kl is not None
            for idx in minibatch_indices(batch.shape[0], hp.batch_size, self.generator):
                if idx is None:  # one minibatch holds the whole rollout
                    mb = (obs, action, old_log_prob, full_batch_advantages, returns, mask)
                else:
                    adv = advantage[idx]
                    mb = (obs[idx], action[idx], old_log_prob[idx], normalize(adv) if hp.normalize_advantage else adv,
                          returns[idx], None if mask is None else mask[idx])
                self.params.zero_grad()  # (re-attaches the gradient views; every entry is overwritten)
                diagnostics = fast.loss_and_grad(*mb, clip, hp.vf_coef, ent_coef, track)
                self.params.clip_grad_norm_(hp.max_grad_norm)
                adam_step(self.optimizer)
                if track:
                    stats.append(diagnostics)
            if hp.target_kl is not None and float(stats[-1][3]) > hp.target_kl:
                break
        return self._metrics(stats, batch, epoch, lr, clip)

    def _metrics(self, stats: list, batch: Any, epoch: int, lr: float, clip: float) -> dict[str, float]:
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
