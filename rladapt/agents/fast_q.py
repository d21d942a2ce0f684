"""The fast path of DQN's gradient step, behind the same names as the autograd path:
:func:`q_gradient_for` is the one switch point and :func:`q_exclusion` holds every condition under
which it does not apply.

For the built-in vector :class:`~rladapt.agents.nets.QNetwork` (a ReLU MLP over the flattened
vector observation and a linear head: no dueling, noisy or distributional head, no custom
network), the TD loss's gradient is written out by hand (:class:`FastQGradient`): one forward pass
keeping the activations, then the chain rule layer by layer, each gradient written straight into
the parameters' flat gradient buffer. It computes what autograd computes for the same loss
(``tests/test_dqn.py`` checks it against autograd) without the autograd engine's per-node
bookkeeping, which for a 256x256 MLP at batch 64 on CPU costs about as much as the matmuls.
Measured with ``benchmarks/dqn_time_to_solve.py --fast-ablation`` (benchmarks/README.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from rladapt.agents.nets import QNetwork

if TYPE_CHECKING:  # dqn imports this module
    from rladapt.agents.dqn import DQN

__all__ = ["AutogradQGradient", "FastQGradient", "QGradient", "q_exclusion", "q_gradient_for"]

#: ``(obs, action, target, weight) -> (loss, td_error, q_taken)``, the gradient left in the
#: parameters' ``.grad``: the TD loss of one gradient step (``weight``: importance weights or None).
QGradient = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, "torch.Tensor | None"],
                     tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def q_exclusion(agent: DQN) -> str | None:
    """Why the hand-written gradient does not apply to ``agent`` (None: it applies). Every
    exclusion of the DQN fast path is here."""
    hp, q = agent.hp, getattr(agent, "q", None)
    if hp.distributional is not None:
        return f"distributional={hp.distributional!r}: the fast path is the one-value-per-action TD loss"
    if not isinstance(q, QNetwork) or q._linears is None:
        return "it needs the built-in vector Q-network (a ReLU MLP over a vector observation, no custom network)"
    if q.noisy or q.dueling or q.atoms != 1:
        return "noisy and dueling heads take the autograd path"
    owned = {id(p) for layer in (*q._linears, q.head) for p in (layer.weight, layer.bias)}
    if owned != {id(p) for p in agent.params.params}:  # every gradient is written, none left stale
        return "the Q-network has parameters the hand-written gradient does not cover"
    return None


class FastQGradient:
    """The TD loss of the built-in vector :class:`QNetwork` and its gradient, written out by hand:
    the squared error ``0.5 * (Q(s, a) - y)^2`` (or Huber's smooth L1), averaged over the batch
    with optional importance weights. Call the instance like the autograd path
    (:data:`QGradient`); the parameters' ``.grad`` must be attached (``FlatParameters.zero_grad``)."""

    def __init__(self, q: QNetwork, huber: bool) -> None:
        self.layers: list[nn.Linear] = [*q._linears, q.head]
        self.huber = huber

    @torch.no_grad()
    def __call__(self, obs: torch.Tensor, action: torch.Tensor, target: torch.Tensor,
                 weight: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b = obs.shape[0]
        x = obs.reshape(b, -1)
        x = x if x.dtype == torch.float32 else x.float()
        inputs = [x]  # the input of every layer (after its ReLU): the backward reads them
        for layer in self.layers[:-1]:
            x = torch.addmm(layer.bias, x, layer.weight.t()).relu_()
            inputs.append(x)
        head = self.layers[-1]
        q = torch.addmm(head.bias, x, head.weight.t())
        taken = action.long().unsqueeze(-1)
        q_taken = q.gather(-1, taken).squeeze(-1)
        td_error = q_taken - target
        if self.huber:  # smooth L1 (beta 1): d/dq = clamp(td, -1, 1)
            loss = F.smooth_l1_loss(q_taken, target, reduction="none")
            g_q = td_error.clamp(-1.0, 1.0)
        else:
            loss = 0.5 * td_error.pow(2)
            g_q = td_error.clone()
        if weight is not None:
            loss, g_q = loss * weight, g_q.mul_(weight)
        g_q.mul_(1.0 / b)  # the batch mean
        grad = torch.zeros_like(q).scatter_(-1, taken, g_q.unsqueeze(-1))  # d loss / d Q(s, .)
        for i in range(len(self.layers) - 1, -1, -1):
            layer, h = self.layers[i], inputs[i]
            torch.mm(grad.t(), h, out=layer.weight.grad)
            torch.sum(grad, 0, out=layer.bias.grad)
            if i:  # back through the layer, then its input's ReLU
                grad = torch.ops.aten.threshold_backward(grad.mm(layer.weight), h, 0.0)
        return loss.mean(), td_error, q_taken


class AutogradQGradient:
    """The same TD loss through the agent's Q-network and autograd (what :class:`FastQGradient`
    writes out); an object, not a closure, so that a copied agent's gradient follows the copy."""

    def __init__(self, agent: DQN) -> None:
        self.agent = agent

    def __call__(self, obs: torch.Tensor, action: torch.Tensor, target: torch.Tensor,
                 weight: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q_taken = self.agent.q(obs).gather(-1, action.long().unsqueeze(-1)).squeeze(-1)
        if self.agent.hp.huber:
            loss = F.smooth_l1_loss(q_taken, target, reduction="none")
        else:
            loss = 0.5 * (q_taken - target).pow(2)
        loss = (loss * weight).mean() if weight is not None else loss.mean()
        loss.backward()
        return loss.detach(), q_taken.detach() - target, q_taken.detach()


def q_gradient_for(agent: DQN, fast: bool | None) -> QGradient:
    """The one switch point: the hand-written gradient where it applies, autograd otherwise.

    :param agent: a DQN with its Q-network and flat parameters built.
    :param fast: None: the hand-written gradient wherever it applies; True: required (a
        ``ValueError`` says why it does not apply); False: autograd always.
    """
    why = None if fast is False else q_exclusion(agent)
    if fast is True and why is not None:
        raise ValueError(f"{type(agent).__name__}(fast=True): the fast path does not apply ({why})")
    if fast is False or why is not None:
        return AutogradQGradient(agent)
    return FastQGradient(agent.q, bool(agent.hp.huber))
