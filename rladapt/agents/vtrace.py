"""V-trace (Espeholt et al. 2018, "IMPALA", section 4.1): off-policy value targets and policy-gradient
advantages from trajectories a slightly older policy acted out, exact under gymnasium's NEXT_STEP
autoreset (the same row convention as :meth:`rladapt.buffers.rollout.RolloutBuffer.compute_advantages`).
"""

from __future__ import annotations

import torch

__all__ = ["vtrace"]


@torch.no_grad()
def vtrace(
    behaviour_log_prob: torch.Tensor,
    target_log_prob: torch.Tensor,
    rewards: torch.Tensor,
    values: torch.Tensor,
    bootstrap_value: torch.Tensor,
    terminated: torch.Tensor,
    done: torch.Tensor,
    gamma: float,
    rho_bar: float | None = 1.0,
    c_bar: float | None = 1.0,
    lambda_: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """V-trace value targets ``vs`` and policy-gradient advantages over ``[T, N]`` trajectories.

    With ``rho_t = min(rho_bar, pi(a_t|x_t) / mu(a_t|x_t))`` and ``c_t = lambda_ * min(c_bar, pi / mu)``::

        delta_t   = rho_t * (r_t + gamma * (1 - terminated_t) * V(x_{t+1}) - V(x_t))
        vs_t      = V(x_t) + delta_t + gamma * (1 - done_t) * c_t * (vs_{t+1} - V(x_{t+1}))
        adv_t     = rho_t * (r_t + gamma * (1 - terminated_t) * vs'_{t+1} - V(x_t))

    where ``vs'_{t+1}`` is ``vs_{t+1}``, except after a done (``vs'`` is then ``V`` of the final
    observation: the trajectory has no data past it) and after the last row (``bootstrap_value``).

    Termination and truncation differ as they must: a terminated step's return stops there (its
    next value is multiplied by 0); a truncated step bootstraps from ``V`` of its final observation;
    both stop the recursion, so no target reaches across an episode boundary. As in rladapt's
    batches, ``values[t + 1]`` after a done row ``t`` is ``V`` of the episode's final observation
    (the NEXT_STEP autoreset row ``t + 1`` carries it); that row is not a transition, and its own
    ``vs`` and advantage are meaningless: drop it from the loss (the batch's ``valid`` flag).

    With ``behaviour_log_prob == target_log_prob``, ``rho_bar, c_bar >= 1`` and ``lambda_ = 1``,
    ``vs_t`` is the n-step return bootstrapped at the end of the trajectory (or the episode's end).

    :param behaviour_log_prob: ``[T, N]`` log mu(a_t | x_t) of the acting (behaviour) policy.
    :param target_log_prob: ``[T, N]`` log pi(a_t | x_t) of the policy being learned.
    :param rewards: ``[T, N]`` rewards of the steps.
    :param values: ``[T, N]`` V(x_t) under the current value function.
    :param bootstrap_value: ``[N]`` V of the observation after the last row.
    :param terminated: ``[T, N]`` bool: the step ended its episode by termination.
    :param done: ``[T, N]`` bool: the step ended its episode (terminated or truncated).
    :param gamma: discount factor.
    :param rho_bar: clip of the importance weights in ``delta`` and the advantages (None: no clip).
    :param c_bar: clip of the trace-cutting weights ``c`` (None: no clip).
    :param lambda_: the paper's extra trace discount on ``c`` (1: none).
    :return: ``(vs, pg_advantages)``, both ``[T, N]`` float tensors (no gradient).
    """
    ratio = torch.exp(target_log_prob - behaviour_log_prob)
    rho = ratio if rho_bar is None else ratio.clamp(max=rho_bar)
    c = lambda_ * (ratio if c_bar is None else ratio.clamp(max=c_bar))
    continues = (~terminated).to(values.dtype)
    not_done = (~done).to(values.dtype)
    next_values = torch.cat([values[1:], bootstrap_value.reshape(1, -1).to(values)])
    deltas = rho * (rewards + gamma * continues * next_values - values)
    decay = gamma * not_done * c
    vs_minus_v = torch.empty_like(values)
    running = torch.zeros_like(bootstrap_value, dtype=values.dtype).reshape(-1)
    for t in reversed(range(values.shape[0])):
        running = deltas[t] + decay[t] * running
        vs_minus_v[t] = running
    vs = values + vs_minus_v
    # vs'_{t+1}: vs of the next row within an episode; V of the final observation after a done.
    next_vs = torch.cat([vs[1:], bootstrap_value.reshape(1, -1).to(values)])
    next_vs = torch.where(done, next_values, next_vs)
    advantages = rho * (rewards + gamma * continues * next_vs - values)
    return vs, advantages
