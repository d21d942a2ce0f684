"""The fast path of the built-in vector actor-critic (PPO and A2C on classic control), behind the
same names as the torch path: :func:`fast_path_for` is the one switch point, and
:func:`exclusions` holds every condition under which it does not apply.

For the built-in vector network with a categorical head (a tanh :class:`~rladapt.agents.nets.DualMLP`
body, a :class:`~rladapt.agents.nets.CategoricalHead`, one-hot or float vector observations):

- acting on small batches runs in numpy (:class:`NumpyActing`): ~1 us per op instead of torch's
  ~5 us plus module calls, for one env step of 8 envs;
- PPO's loss gradient is written out by hand (:class:`FastCategoricalPPO`): the chain rule layer
  by layer, each gradient written straight into the parameters' flat gradient buffer.

Both compute the same function as the torch path (``tests/test_ppo.py`` checks acting and the
gradients against torch and autograd). Everything else (images, continuous actions, custom
networks, the clipped value loss, observation normalisation when acting) takes the torch path.
Measured with ``benchmarks/ppo_cartpole.py --fast-ablation`` (benchmarks/README.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tensordict import TensorDictBase
from torch import nn

from rladapt.agents.masks import MASKED_LOGIT
from rladapt.agents.nets import ActorCritic, CategoricalHead, DualMLP, FlattenVector

if TYPE_CHECKING:  # the agents import this module
    from rladapt.agents.on_policy import OnPolicyAgent

__all__ = ["FastActorCritic", "FastCategoricalPPO", "NumpyActing", "exclusions", "fast_path_for"]


def exclusions(agent: OnPolicyAgent) -> dict[str, str | None]:
    """Why each part of the fast path does not apply to ``agent`` (None: it applies):
    ``{"act": ..., "gradient": ...}``. Every exclusion of the fast path is here."""
    policy, params = getattr(agent, "policy", None), getattr(agent, "params", None)
    if getattr(agent.hp, "recurrent", None) is not None:
        reason = f"recurrent={agent.hp.recurrent!r}: the fast path is the feed-forward actor-critic only"
        return {"act": reason, "gradient": reason}
    body = getattr(policy, "body", None)
    if not (isinstance(policy, ActorCritic) and isinstance(body, DualMLP) and isinstance(body.activation, nn.Tanh)
            and isinstance(policy.head, CategoricalHead) and isinstance(policy.encoder, FlattenVector)):
        reason = "it needs the built-in vector actor-critic (tanh MLPs over a vector observation, Discrete actions)"
        return {"act": reason, "gradient": reason}
    owned = {id(p) for p in (body.first.weight, body.first.bias, *body.weights, *body.biases,
                             policy.head.linear.weight, policy.head.linear.bias, policy.critic.weight, policy.critic.bias)}
    if params is None or owned != {id(p) for p in params.params}:  # every gradient is written, none left stale
        reason = "the actor-critic has parameters the hand-written gradient does not cover"
        return {"act": reason, "gradient": reason}
    act = None
    if policy.encoder.norm is not None:
        act = "numpy acting does not normalise observations (normalize_observations=True)"
    elif params.param.device.type != "cpu" or params.param.dtype != torch.float32:
        act = "numpy acting needs float32 parameters on the CPU"
    gradient = "the hand-written gradient is PPO's loss without the clipped value loss (clip_value=True)" if getattr(
        agent.hp, "clip_value", False) else None
    return {"act": act, "gradient": gradient}


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
    """

    def __init__(self, policy: nn.Module) -> None:
        body, head = policy.body, policy.head
        self.first, self.weights, self.biases = body.first, list(body.weights), list(body.biases)
        self.hidden = body.hidden
        self.head, self.critic, self.encoder = head.linear, policy.critic, policy.encoder

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
        #: The output tensors this acting set last in each TensorDict, by (TensorDict id, key), with
        #: their numpy views: when that TensorDict still holds them (a collector's acting
        #: TensorDicts do, step after step), they are written in place.
        self._outputs: dict[tuple[int, str], tuple[torch.Tensor, np.ndarray]] = {}

    def current(self) -> bool:
        """False for a copy of an agent: its parameters moved, and the numpy views were copied
        into arrays of their own (``base`` None) instead of following."""
        return self.b1.base is not None and self._bias.data_ptr() == self._bias_address

    def _write(self, td: TensorDictBase, key: str, value: np.ndarray) -> None:
        """``td[key] = value``: in place (a numpy copy) into the tensor this acting set there at
        the previous step, if the TensorDict still holds it and it fits; else a new tensor."""
        slot = (id(td), key)
        held = self._outputs.get(slot)
        if held is not None and td.get(key, None) is held[0] and held[1].shape == value.shape:
            held[1][...] = value
            return
        tensor = torch.from_numpy(np.array(value, copy=True))
        td.set(key, tensor)
        if len(self._outputs) > 4096:  # TensorDicts come and go (act() makes one per call)
            self._outputs.clear()
        self._outputs[slot] = (td.get(key), tensor.numpy())

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

    def value(self, observation: torch.Tensor) -> torch.Tensor:
        """``V(observation)`` ``[B]``: the critic's half of the network only."""
        x = observation.numpy().reshape(observation.shape[0], -1)
        h = np.tanh(x @ self.w1[:, self.h0:] + self.b1[self.h0:])
        for w, bias in self.layers:
            h = np.tanh(h @ w[1] + bias[1])
        return torch.from_numpy((h @ self.wc + self.bc)[:, 0].astype(np.float32))



class FastActorCritic:
    """How one on-policy agent's actor-critic acts and computes its gradients, bound once when the
    actor-critic is built (:func:`fast_path_for`): numpy acting where it applies to a batch
    (``acting``), the hand-written PPO gradient where it applies to the agent (``gradient``), the
    torch module and autograd otherwise. Callers call :meth:`act` and :meth:`ppo_gradient` (and
    :func:`rladapt.agents.on_policy.actor_critic_gradient` reads ``gradient``); none asks which path runs.

    :param agent: the agent, its actor-critic built (``policy``, ``params``).
    :param parts: :func:`exclusions` of the agent (None: the torch path only).
    """

    def __init__(self, agent: OnPolicyAgent, parts: dict[str, str | None] | None = None) -> None:
        self.agent = agent
        parts = parts or {"act": "torch path", "gradient": "torch path"}
        self.acting = NumpyActing(agent.policy) if parts["act"] is None else None
        self.gradient = FastCategoricalPPO(agent.policy) if parts["gradient"] is None else None

    def can_act(self, td: TensorDictBase) -> bool:
        """Numpy acting applies to this batch: small enough for single-threaded BLAS, no gradient."""
        return self._numpy_for(td.batch_size[0]) is not None

    def _numpy_for(self, rows: int) -> NumpyActing | None:
        """The numpy acting for a batch of ``rows`` (its views rebuilt for a copied agent), or None
        where it does not apply (the torch path, a batch too large, a gradient wanted)."""
        if self.acting is None or rows > self.acting.max_batch or torch.is_grad_enabled():
            return None
        if not self.acting.current():  # a copied agent: rebuild the views of its parameters
            self.acting = NumpyActing(self.agent.policy)
        return self.acting

    def act(self, td: TensorDictBase, deterministic: bool, generator: torch.Generator) -> TensorDictBase:
        """``agent.policy(td, deterministic, generator)``: in numpy when :meth:`can_act`."""
        acting = self._numpy_for(td.batch_size[0])
        if acting is None:
            return self.agent.policy(td, deterministic=deterministic, generator=generator)
        return acting(td, deterministic, generator)

    def value(self, observation: Any) -> torch.Tensor:
        """``agent.policy.get_value(observation)``: in numpy where acting is (A3C's and A2C's
        5-step rollouts bootstrap every few steps: the module call was 5% of a worker)."""
        acting = self._numpy_for(observation.shape[0]) if isinstance(observation, torch.Tensor) else None
        if acting is None:
            return self.agent.policy.get_value(observation)
        return acting.value(observation)

    def ppo_gradient(self, minibatch: tuple, clip: float, track: bool) -> torch.Tensor | None:
        """PPO's loss on ``minibatch`` (``(obs, action, old_log_prob, advantages, returns, mask,
        old_value)``) backpropagated into ``agent.params.grad``; its diagnostics ``[policy_loss,
        value_loss, entropy, approx_kl, clip_fraction]`` when ``track``."""
        hp = self.agent.hp
        if self.gradient is None:  # autograd on PPO's loss
            return self.agent.loss_backward(*minibatch, clip, track)
        return self.gradient.loss_and_grad(*minibatch[:6], clip, hp.vf_coef, hp.ent_coef or 0.0, track)


def fast_path_for(agent: OnPolicyAgent, fast: bool | None) -> FastActorCritic:
    """The one switch point: the agent's path, with the fast parts that apply (none: the torch path).

    :param agent: an on-policy agent with its actor-critic built.
    :param fast: None: each part (numpy acting, the hand-written gradient) wherever it applies; True:
        required whole (a ``ValueError`` names each part that does not apply, and why); False: never.
    """
    if fast is False:
        return FastActorCritic(agent)
    parts = exclusions(agent)
    if fast is True and any(parts.values()):
        missing = "; ".join(f"{part}: {why}" for part, why in parts.items() if why)
        raise ValueError(f"{type(agent).__name__}(fast=True): the fast path does not apply ({missing})")
    return FastActorCritic(agent, parts)
