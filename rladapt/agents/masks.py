"""Invalid-action masks in acting and learning, for every agent (built-in or your own).

rladapt's collectors put a boolean ``action_mask`` in the TensorDict an agent acts on whenever the
env has masks and the agent's spec says it uses them (``AgentSpec(masks=True)``): ``[B, n]`` for
``Discrete(n)``, ``[B, sum(nvec)]`` (one mask per dimension, concatenated) for MultiDiscrete. Masks
may be absent (None here): every helper then treats every action as valid.

Example (an agent's ``act_batch``)::

    from rladapt.agents.masks import epsilon_greedy, masked_argmax

    def act_batch(self, td, deterministic=False):
        q, mask = self.q[td["observation"]], td.get("action_mask", None)
        td["action"] = masked_argmax(q, mask) if deterministic else epsilon_greedy(q, mask, self.hp.epsilon, self.generator)
        return td
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces

from rladapt.spaces import COMPOSITE_SPACES, DISCRETE_LEAVES, action_leaves, mask_size, nvec, stored_action

__all__ = [
    "MASKED_LOGIT", "bootstrap_mask", "epsilon_greedy", "epsilon_greedy_probs", "masked_argmax", "masked_log_probs",
    "masked_logits", "masked_sample", "random_actions", "sample_categorical", "valid_or_all",
]

#: Logit given to masked actions: small enough to get probability 0, finite so that
#: ``0 * log_prob`` stays 0 in an entropy (``-inf`` would give NaN).
MASKED_LOGIT = -1e8


def valid_or_all(mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """``mask``, or all True (shaped like ``like``, ``[B, n]``) when there is no mask."""
    return mask if mask is not None else torch.ones_like(like, dtype=torch.bool)


def bootstrap_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """The mask for a max or expectation over *next* actions: a row with no valid action (the
    final observation of a game, where nothing can be played) is left unmasked, so the max is
    finite; the transition's discount (0 on termination) then removes it from the target."""
    if mask is None:
        return None
    return mask | ~mask.any(-1, keepdim=True)


def masked_logits(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Logits (or Q-values) with invalid actions set to :data:`MASKED_LOGIT`."""
    return logits if mask is None else logits.masked_fill(~mask, MASKED_LOGIT)


def masked_log_probs(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Log-probabilities of a categorical over the valid actions (``log_softmax`` of the masked logits)."""
    return torch.log_softmax(masked_logits(logits, mask), -1)


def sample_categorical(log_probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One sample per row of ``log_probs`` ``[..., n]`` by inverse CDF (several times faster than
    ``torch.multinomial`` on small batches). ``u`` is drawn below the last CDF entry, so an action
    of probability 0 (masked) is never returned."""
    cdf = log_probs.exp().cumsum(-1)
    u = torch.rand(cdf.shape[:-1] + (1,), generator=generator, dtype=cdf.dtype, device=cdf.device) * cdf[..., -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(-1)


def masked_sample(logits: torch.Tensor, mask: torch.Tensor | None, deterministic: bool,
                  generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(action, log_prob)`` from a categorical over the valid actions: the most likely one when
    ``deterministic``, else a sample.

    :param logits: ``[B, n]`` unnormalised log-probabilities.
    :param mask: ``[B, n]`` valid actions, or None.
    :param deterministic: take the argmax instead of sampling.
    :param generator: the agent's generator (``self.generator``).
    """
    log_probs = masked_log_probs(logits, mask)
    action = log_probs.argmax(-1) if deterministic else sample_categorical(log_probs, generator)
    return action, log_probs.gather(-1, action.unsqueeze(-1)).squeeze(-1)


def masked_argmax(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The index of the largest value among the valid actions of each row ``[B, n]`` -> ``[B]``."""
    return masked_logits(values, mask).argmax(-1)


def _uniform_valid(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The valid action of highest uniform score: a uniform choice among the valid actions."""
    return (scores.masked_fill(~mask, -1.0) if mask is not None else scores).argmax(-1)


def epsilon_greedy(values: torch.Tensor, mask: torch.Tensor | None, epsilon: float, generator: torch.Generator | None,
                   greedy: torch.Tensor | None = None, scores: torch.Tensor | None = None) -> torch.Tensor:
    """The best valid action of each row of ``values``, replaced with probability ``epsilon`` by a
    uniformly random valid one.

    :param values: ``[B, n]`` action values (Q-values, preferences).
    :param mask: ``[B, n]`` valid actions, or None.
    :param epsilon: the probability of a random action.
    :param generator: the agent's generator.
    :param greedy: ``[B]`` greedy actions when the caller found them already (e.g. with ties
        broken at random); None: :func:`masked_argmax` of ``values``.
    :param scores: ``[B, n]`` uniform scores (``torch.rand``) choosing the random action, when the
        caller drew them already (e.g. to break greedy ties with the same draws); None: drawn here.
    """
    if greedy is None:
        greedy = masked_argmax(values, mask)
    if scores is None:
        scores = torch.rand(values.shape, generator=generator, device=values.device)
    random = _uniform_valid(scores, mask)
    explore = torch.rand(greedy.shape[0], generator=generator, device=scores.device) < epsilon
    return torch.where(explore, random, greedy)


def epsilon_greedy_probs(values: torch.Tensor, mask: torch.Tensor | None, epsilon: float) -> torch.Tensor:
    """The probabilities ``[B, n]`` of the epsilon-greedy policy over the valid actions: ``epsilon``
    spread uniformly over the valid actions, the rest on the greedy one (Expected SARSA's target)."""
    valid = valid_or_all(mask, values).float()
    probs = valid * (epsilon / valid.sum(-1, keepdim=True).clamp(min=1.0))
    greedy = masked_argmax(values, mask)
    return probs.scatter_add(-1, greedy.unsqueeze(-1), torch.full_like(probs[:, :1], 1.0 - epsilon))


def random_actions(space: spaces.Space, batch: int, generator: torch.Generator | None,
                   mask: torch.Tensor | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """``batch`` uniformly random actions of ``space`` in stored form (indices from 0, flattened
    boxes; see :func:`rladapt.spaces.stored_action`), valid under ``mask`` when it is given.

    :param space: the adapted env's action space (Discrete, MultiDiscrete, MultiBinary, a bounded Box,
        or a Dict/Tuple of those: the flat layout of :func:`rladapt.spaces.stored_action`).
    :param batch: how many actions.
    :param generator: the agent's generator.
    :param mask: ``[batch, mask_size]`` valid actions, or None.
    :param device: where the actions go.
    """
    if isinstance(space, COMPOSITE_SPACES):  # each leaf with its part of the mask, in the flat layout
        parts, offset = [], 0
        dtype = torch.float32 if stored_action(space)[1] == np.float32 else torch.int64
        for _, leaf in action_leaves(space):
            size = mask_size(leaf) if isinstance(leaf, DISCRETE_LEAVES) else 0
            leaf_mask = mask[:, offset : offset + size] if mask is not None and size else None
            offset += size
            parts.append(random_actions(leaf, batch, generator, leaf_mask, device).reshape(batch, -1).to(dtype))
        return torch.cat(parts, -1)
    if isinstance(space, spaces.Discrete):
        return _uniform_valid(torch.rand((batch, int(space.n)), generator=generator, device=device), mask)
    if isinstance(space, (spaces.MultiDiscrete, spaces.MultiBinary)):
        sizes = nvec(space).tolist()
        scores = torch.rand((batch, sum(sizes)), generator=generator, device=device)
        parts = scores.split(sizes, -1)
        masks = mask.split(sizes, -1) if mask is not None else [None] * len(sizes)
        return torch.stack([_uniform_valid(s, m) for s, m in zip(parts, masks)], -1)
    if isinstance(space, spaces.Box):
        low = torch.as_tensor(space.low.reshape(-1), device=device)
        high = torch.as_tensor(space.high.reshape(-1), device=device)
        return low + torch.rand((batch, low.numel()), generator=generator, device=device) * (high - low)
    raise TypeError(f"cannot sample random actions from {space}")
