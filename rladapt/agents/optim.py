"""Optimiser helpers shared by the agents (agents import these, never each other's).

:func:`adam` builds Adam with the fused kernel where torch has one (one op for all parameters:
small networks on CPU are bound by per-op overhead). :func:`adam_step` steps a fused Adam over one
flat parameter (see :class:`~rladapt.agents.nets.FlatParameters`) by calling the fused kernel
directly, skipping ``Optimizer.step``'s ~25 us of Python bookkeeping; the kernel is a private
torch API (``torch._fused_adam_``), so every call falls back to the public ``optimizer.step()``
whenever it is missing or the optimiser is not the simple case. Both give the same update on the
same state tensors (checkpoints are unchanged; ``tests/test_ppo.py`` checks both paths).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["adam", "adam_step", "set_lr", "share_optimizer"]

#: The fused Adam kernel, a private torch API: None where this torch lacks it (then ``step()``).
FUSED_ADAM = getattr(torch, "_fused_adam_", None)


def adam(params: Any, lr: float, device: torch.device, eps: float = 1e-8) -> torch.optim.Adam:
    """Adam, with the fused kernel where torch has one for ``device``.

    :param params: the parameters (or parameter groups).
    :param lr: learning rate.
    :param device: the parameters' device (fused kernels exist for CPU and CUDA).
    :param eps: Adam's epsilon (PPO and A2C use 1e-5, an implementation detail of theirs).
    """
    try:
        return torch.optim.Adam(params, lr=lr, eps=eps, fused=device.type in ("cpu", "cuda"))
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr, eps=eps)


def adam_step(optimizer: torch.optim.Optimizer) -> None:
    """``optimizer.step()``, through the fused kernel directly when the optimiser is a fused Adam
    over one flat parameter whose state exists (after its first step); the public
    ``optimizer.step()`` otherwise, and wherever torch has no such kernel."""
    group = optimizer.param_groups[0]
    param = group["params"][0]
    state = optimizer.state.get(param)
    if (FUSED_ADAM is None or not isinstance(optimizer, torch.optim.Adam) or not group.get("fused")
            or len(optimizer.param_groups) != 1 or len(group["params"]) != 1 or not state
            or group["amsgrad"] or group["maximize"] or param.grad is None):
        optimizer.step()
        return
    beta1, beta2 = group["betas"]
    with torch.no_grad():
        state["step"] += 1
        FUSED_ADAM([param], [param.grad], [state["exp_avg"]], [state["exp_avg_sq"]], [], [state["step"]],
                   amsgrad=False, lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"],
                   eps=group["eps"], maximize=False)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group (for schedules)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def share_optimizer(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Put an optimiser's parameters and its statistics (Adam's moments, RMSprop's square
    average, the step counts) in shared memory, in place, so that worker processes given the
    optimiser step the same parameters with the same statistics (A3C's shared optimiser).

    The statistics are made by one step with zero gradients, which leaves the parameters as they
    are (Adam and RMSprop move a parameter by a function of its gradient, zero here) and counts
    one step (Adam's bias correction starts one step later: immaterial).

    :param optimizer: an optimiser over CPU parameters (Adam, RMSprop, ...; without weight decay).
    :return: the optimiser.
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if any(p.device.type != "cpu" for p in params):
        raise ValueError("share_optimizer needs CPU parameters (shared memory lives in host RAM)")
    if not optimizer.state:
        grads = [p.grad for p in params]
        for p in params:
            p.grad = torch.zeros_like(p)
        optimizer.step()
        for p, g in zip(params, grads):
            p.grad = g
    for p in params:
        p.data.share_memory_()
        for value in optimizer.state[p].values():
            if isinstance(value, torch.Tensor):
                value.share_memory_()
    return optimizer
