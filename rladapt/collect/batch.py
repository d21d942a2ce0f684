"""The storage every collector fills: ``T`` vector steps of ``N`` envs, preallocated and written in
place (DESIGN.md principle 5), with TorchRL's key names::

    observation            obs_t (native dtype: uint8 images stay uint8)
    action_mask            bool mask for obs_t (when masks are on)
    is_init                True where obs_t is the first observation of an episode
    recurrent_state, ...   the agent's carried state entering step t (its ``state_specs``), zero
                           where ``is_init``; ``next/<key>``: the state after step t
    action, log_prob, ...  what the agent's acting wrote (its ``out_specs``)
    valid                  False on the reset step of gymnasium's NEXT_STEP autoreset
    next/observation       obs returned by ``env.step`` (the true final obs when an episode ended)
    next/action_mask       mask for next/observation (when masks are on)
    next/reward, next/terminated, next/truncated, next/done

``observation`` and ``next/observation`` are two views of one ``[T + 1, N]`` tensor (rows ``0..T-1``
and ``1..T``): the next observation of step ``t`` *is* the observation of step ``t + 1``, under
NEXT_STEP autoreset too (the step after a done starts from the final observation and is not a
transition: ``valid`` False). So the batch costs one observation row more than ``T``, not ``2T``,
and the last row is the bootstrap observation of an on-policy rollout. The same holds for the mask,
``is_init`` and an agent's carried state (a recurrent policy's hidden state, ``Agent.state_specs``):
row 0 is the state each env's first step of the batch started from, so an update replays sequences
from any row.

A :class:`BatchStorage` can live in shared memory and be split by env columns
(:meth:`BatchStorage.columns`): a worker process then writes its envs' columns of the learner's
batch directly. It pickles as its base tensors (the views are rebuilt), which torch.multiprocessing
sends as shared-memory handles.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Union

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from tensordict import TensorDict, TensorDictBase

from rladapt.spaces import mask_size, stored_action
from rladapt.protocols import CollectingAgent

NestedKey = Union[str, tuple[str, ...]]
#: What an agent's acting writes: key -> (shape of one env's entry, dtype).
OutSpecs = dict[NestedKey, tuple[tuple[int, ...], torch.dtype]]
#: Keys of the batch that the collector writes (an agent's outputs may not use them).
COLLECTOR_KEYS = frozenset({"observation", "action_mask", "is_init", "valid", "next"})
#: Keys of the first observation row that carry from one batch to the next.
CARRIED_KEYS = ("observation", "action_mask", "is_init")


def torch_dtype(dtype: np.dtype) -> torch.dtype:
    """The torch dtype of a numpy dtype."""
    return torch.from_numpy(np.zeros((), dtype=dtype)).dtype


def action_spec(action_space: gym.Space) -> tuple[tuple[int, ...], torch.dtype]:
    """``(shape, dtype)`` of one stored action (:func:`rladapt.spaces.stored_action`) for torch."""
    shape, dtype = stored_action(action_space)
    return shape, torch_dtype(dtype)


def observation_tensors(space: gym.Space, batch: tuple[int, ...], device: torch.device | str) -> torch.Tensor | TensorDict:
    """Zero storage for observations of ``space`` with leading ``batch`` dims, native dtype."""
    if isinstance(space, spaces.Dict):
        return TensorDict(
            {k: observation_tensors(s, batch, device) for k, s in space.spaces.items()},
            batch_size=batch, device=device,
        )
    if isinstance(space, spaces.Discrete):
        return torch.zeros(batch, dtype=torch.int64, device=device)
    if isinstance(space, (spaces.Box, spaces.MultiDiscrete, spaces.MultiBinary)):
        return torch.zeros(batch + tuple(space.shape), dtype=torch_dtype(space.dtype), device=device)
    raise TypeError(f"cannot store observations of {space}; adapt the env with AutoAdapt(env, agent)")


@dataclass(frozen=True)
class BatchLayout:
    """What one batch holds besides the collector's own keys: the observation space, the mask
    length (None: no masks) and the agent's outputs.

    :param observation_space: the adapted env's (single) observation space.
    :param mask_size: length of one action mask, or None when masks are off.
    :param outputs: what the agent's acting writes (``Agent.out_specs()``).
    :param states: what the agent carries from one step to the next (``Agent.state_specs()``:
        a recurrent policy's hidden state), stored per observation row like the observation.
    """

    observation_space: gym.Space
    mask_size: int | None
    outputs: OutSpecs
    states: OutSpecs = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, agent: CollectingAgent) -> "BatchLayout":
        """The layout for an agent set up for its env (``observation_space``, ``use_masks``,
        ``out_specs()``)."""
        outputs = dict(agent.out_specs())
        clash = [k for k in outputs if (k if isinstance(k, str) else k[0]) in COLLECTOR_KEYS]
        if clash:
            raise ValueError(f"{type(agent).__name__}.out_specs() declares {clash}, which the collector writes itself; "
                             f"name the agent's outputs otherwise")
        if "action" not in outputs:
            raise ValueError(f"{type(agent).__name__}.out_specs() must declare 'action'")
        masks = mask_size(agent.action_space) if agent.use_masks else None
        states = dict(agent.state_specs())
        taken = [k for k in states if (k if isinstance(k, str) else k[0]) in COLLECTOR_KEYS or k in outputs]
        if taken:
            raise ValueError(f"{type(agent).__name__}.state_specs() declares {taken}, which the collector or its "
                             f"out_specs() already use; name the carried state otherwise")
        return cls(agent.observation_space, masks, outputs, states)


class BatchStorage:
    """``T`` vector steps of ``N`` envs: base tensors ``plus`` (``[T + 1, N]``: observation, mask,
    is_init) and ``rows`` (``[T, N]``: valid, outputs, rewards and flags), and the ``[T, N]``
    TensorDict of views every consumer reads (:attr:`td`, see the module docstring).

    :param layout: what the batch holds.
    :param steps: ``T``, vector steps.
    :param num_envs: ``N``, envs.
    :param device: where the tensors live.
    :param share_memory: allocate them in shared memory (worker processes write into them).
    """

    td: TensorDictBase
    """The ``[T, N]`` batch every consumer reads (views of the base tensors ``plus`` and ``rows``)."""

    def __init__(self, layout: BatchLayout, steps: int, num_envs: int, device: torch.device | str = "cpu",
                 share_memory: bool = False) -> None:
        T, N = steps, num_envs
        plus = TensorDict({
            "observation": observation_tensors(layout.observation_space, (T + 1, N), device),
            "is_init": torch.zeros((T + 1, N), dtype=torch.bool, device=device),
        }, batch_size=[T + 1, N], device=device)
        if layout.mask_size is not None:
            plus.set("action_mask", torch.ones((T + 1, N, layout.mask_size), dtype=torch.bool, device=device))
        for key, (shape, dtype) in layout.states.items():
            plus.set(key, torch.zeros((T + 1, N, *shape), dtype=dtype, device=device))
        rows = TensorDict({
            "valid": torch.ones((T, N), dtype=torch.bool, device=device),
            "next": {
                "reward": torch.zeros((T, N), dtype=torch.float32, device=device),
                "terminated": torch.zeros((T, N), dtype=torch.bool, device=device),
                "truncated": torch.zeros((T, N), dtype=torch.bool, device=device),
                "done": torch.zeros((T, N), dtype=torch.bool, device=device),
            },
        }, batch_size=[T, N], device=device)
        for key, (shape, dtype) in layout.outputs.items():
            rows.set(key, torch.zeros((T, N, *shape), dtype=dtype, device=device))
        if share_memory:
            plus.share_memory_()
            rows.share_memory_()
        self._init(layout, plus, rows)

    @classmethod
    def _from_base(cls, layout: BatchLayout, plus: TensorDictBase, rows: TensorDictBase) -> "BatchStorage":
        storage = cls.__new__(cls)
        storage._init(layout, plus, rows)
        return storage

    def _init(self, layout: BatchLayout, plus: TensorDictBase, rows: TensorDictBase) -> None:
        self.layout, self.plus, self.rows = layout, plus, rows
        self.steps, self.num_envs = rows.batch_size[0], rows.batch_size[1]
        self.output_keys = list(layout.outputs)
        td = TensorDict({}, batch_size=rows.batch_size, device=rows.device)  # its own nesting, the same tensors
        for key in rows.keys(include_nested=True, leaves_only=True):
            td.set(key, rows.get(key))
        head, tail = plus[:-1], plus[1:]
        for key in (*CARRIED_KEYS, *layout.states):
            if key in plus.keys():
                td.set(key, head.get(key))
                if key != "is_init":
                    td.set(("next", key), tail.get(key))
        self.td = td

    @property
    def device(self) -> torch.device:
        return self.rows.device

    def columns(self, start: int, stop: int) -> "BatchStorage":
        """The envs ``start..stop-1`` of this batch (views: writes go to this batch)."""
        return BatchStorage._from_base(self.layout, self.plus[:, start:stop], self.rows[:, start:stop])

    def __getstate__(self) -> dict[str, Any]:
        return {"layout": self.layout, "plus": self.plus, "rows": self.rows}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._init(state["layout"], state["plus"], state["rows"])
