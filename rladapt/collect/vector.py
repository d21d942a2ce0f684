"""In-process collection over a gymnasium vector env: ``collect(agent, T)`` steps the envs ``T``
times and writes every step straight into a preallocated ``[T, num_envs]`` batch
(:mod:`rladapt.collect.batch`).

Gymnasium 1.x vector envs autoreset on the step *after* a done (``AutoresetMode.NEXT_STEP``): that
step ignores the action, returns the reset observation, reward 0 and no done. It is not a
transition, so it is marked ``valid=False``; consumers drop it (on-policy: excluded from the loss;
off-policy: not written to the replay buffer). The final observation of a truncated episode is the
``next/observation`` of the done step, and is also the ``observation`` of the invalid step after it,
so an on-policy value estimate for it comes for free. ``is_init`` marks the first observation of
every episode (after ``reset`` and after each autoreset).

The agent acts on one ``[num_envs]`` TensorDict per row of the batch, whose ``observation``,
``action_mask`` and ``is_init`` are views of that row (no copy); what it writes (its
``out_specs``: ``action``, ``log_prob`` ...) is copied into the row. The same loop serves worker
processes and collector ranks, which collect into their columns of a shared batch
(``collect(agent, T, out=...)``).
"""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from tensordict import TensorDict, TensorDictBase

from rladapt.protocols import CollectingAgent
from rladapt.collect.base import EpisodeStats
from rladapt.collect.batch import CARRIED_KEYS, BatchLayout, BatchStorage, observation_tensors
from rladapt.errors import ActionMaskError, NonFiniteError
from rladapt.opponents import bind_learner
from rladapt.spaces import path_str
from rladapt.wrappers.observations import VectorObservation

__all__ = ["VectorCollector"]


def _writers(dst: np.ndarray | dict) -> Callable[[Any], None]:
    """A function copying a (possibly nested dict of) numpy batch into the numpy view(s) ``dst``."""
    if isinstance(dst, dict):
        subs = [(k, _writers(d)) for k, d in dst.items()]

        def write_dict(obs: dict) -> None:
            for k, write in subs:
                write(obs[k])

        return write_dict

    def write(obs: np.ndarray) -> None:
        dst[...] = obs

    return write


def _views(value: torch.Tensor | TensorDictBase) -> np.ndarray | dict:
    """Numpy view(s) of a CPU tensor, or of a nested TensorDict of tensors."""
    if isinstance(value, TensorDictBase):
        return {k: _views(value.get(k)) for k in value.keys()}
    return value.numpy()


def _index(views: np.ndarray | dict, t: int) -> np.ndarray | dict:
    """Row ``t`` of numpy view(s)."""
    if isinstance(views, dict):
        return {k: _index(v, t) for k, v in views.items()}
    return views[t]


def copy_tensors(dst: list[torch.Tensor], src: list[torch.Tensor]) -> None:
    """``d.copy_(s)`` for each pair, in one call where torch has ``_foreach_copy_`` (a private
    API: the public per-tensor loop otherwise)."""
    foreach = getattr(torch, "_foreach_copy_", None)
    if foreach is not None:
        foreach(dst, src)
    else:
        for d, s in zip(dst, src):
            d.copy_(s)


class _Prepared:
    """A batch storage made ready for one collector: numpy views of its host side, one acting
    TensorDict per row, and the copies to the device when the storage is not on the CPU."""

    def __init__(self, storage: BatchStorage, host: BatchStorage) -> None:
        self.storage, self.host = storage, host
        T = storage.steps
        plus, rows = host.plus, host.rows
        obs = _views(plus.get("observation"))
        self.write_obs = [_writers(_index(obs, t)) for t in range(T + 1)]
        self.obs = obs
        self.is_init = plus.get("is_init").numpy()
        self.mask = plus.get("action_mask").numpy() if "action_mask" in plus.keys() else None
        self.valid = rows.get("valid").numpy()
        self.reward, self.done = rows.get(("next", "reward")).numpy(), rows.get(("next", "done")).numpy()
        self.terminated, self.truncated = rows.get(("next", "terminated")).numpy(), rows.get(("next", "truncated")).numpy()
        # An agent's carried state (a recurrent policy's hidden state): row t is what step t starts
        # from; the agent writes ("next", key), copied into row t + 1 and zeroed where an episode starts.
        self.state_keys = list(storage.layout.states)
        self.states = [plus.get(key) for key in self.state_keys]
        self.state_views = [state.numpy() for state in self.states]
        # What the agent reads at row t: views of the (device) storage's row t.
        dev = storage.plus
        acting = [key for key in (*CARRIED_KEYS, *self.state_keys) if key in dev.keys()]
        self.acting = [TensorDict({key: dev.get(key)[t] for key in acting}, batch_size=dev.batch_size[1:], device=dev.device)
                       for t in range(T)]
        self.output_keys = storage.output_keys
        self.action_index = self.output_keys.index("action")
        self.outputs = [storage.rows.get(key) for key in self.output_keys]
        self.checked = False
        self.staged = host is not storage
        if self.staged:  # host row t+1 -> device after each env step; the rest once per batch
            leaves = [key for key in host.plus.keys(include_nested=True, leaves_only=True)]
            self.plus_pairs = [([storage.plus.get(k)[t] for k in leaves], [host.plus.get(k)[t] for k in leaves])
                               for t in range(T + 1)]
            rest = [k for k in host.rows.keys(include_nested=True, leaves_only=True) if k not in self.output_keys]
            self.rows_pair = ([storage.rows.get(k) for k in rest], [host.rows.get(k) for k in rest])

    def write_states(self, t: int, td: TensorDictBase) -> None:
        """Store the state the agent wrote at row ``t`` as row ``t + 1``'s, zero where it starts an episode."""
        if not self.state_keys:
            return
        copy_tensors([state[t + 1] for state in self.states], [td.get(("next", key)) for key in self.state_keys])
        starts = self.is_init[t + 1]
        if starts.any():
            for view in self.state_views:
                view[t + 1][starts] = 0

    def send_row(self, t: int) -> None:
        if self.staged:
            copy_tensors(*self.plus_pairs[t])

    def send_rows(self) -> None:
        if self.staged:
            copy_tensors(*self.rows_pair)


class VectorCollector(EpisodeStats):
    """Steps a gymnasium vector env with an agent, writing each step into a preallocated batch.

    :param envs: a gymnasium vector env in ``NEXT_STEP`` autoreset mode (the default), whose
        sub-envs are adapted envs with ``RecordEpisodeStatistics`` inside.
    :param masks: read ``info["action_mask"]`` at reset and every step into ``action_mask``.
    :param mask_size: length of one mask (:func:`rladapt.spaces.mask_size`).
    :param device: torch device of the batches.
    :param stats_window: how many recent episodes ``recent_return`` averages over.
    :param step_counter: a one-entry int64 tensor incremented at every vector step (worker
        processes share it with the learner, which sees a hung worker by it).
    :param first_index: the index of the first env over all envs of the run (a worker's share),
        for error messages.

    Each batch is checked for NaN and infinite observations, rewards and actions (one reduction
    per tensor per batch) unless the agent's setting ``check_finite`` is False.
    """

    def __init__(
        self,
        envs: gym.vector.VectorEnv,
        *,
        masks: bool = False,
        mask_size: int | None = None,
        device: torch.device | str = "cpu",
        stats_window: int = 100,
        step_counter: torch.Tensor | None = None,
        first_index: int = 0,
    ) -> None:
        mode = envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if mode != AutoresetMode.NEXT_STEP:
            raise ValueError(f"rladapt collects from vector envs in NEXT_STEP autoreset mode; this one uses {mode}")
        if masks and mask_size is None:
            raise ValueError("mask_size is needed when masks are on")
        super().__init__(stats_window)
        self.envs = envs
        self.num_envs = envs.num_envs
        self.observation_space = envs.single_observation_space
        self.action_space = envs.single_action_space
        self.masks, self.mask_size, self.device = masks, mask_size if masks else None, torch.device(device)
        self.step_counter = step_counter
        self.first_index = first_index
        # The first observation row of the next batch (after reset, or the last row of the previous batch).
        n = (self.num_envs,)
        self._carry = TensorDict({"observation": observation_tensors(self.observation_space, n, "cpu"),
                                  "is_init": torch.ones(n, dtype=torch.bool)}, batch_size=n)
        if masks:
            self._carry.set("action_mask", torch.ones(n + (mask_size,), dtype=torch.bool))
        self._carry_obs = _views(self._carry.get("observation"))
        self._write_carry_obs = _writers(self._carry_obs)
        self._carry_keys = list(self._carry.keys(include_nested=True, leaves_only=True))
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        self._carried_states: dict[str, np.ndarray] = {}  # the agent's state_specs, made at the first collect
        self._storages: dict[int, BatchStorage] = {}
        self._prepared: dict[int, _Prepared] = {}
        self._learner: Any = None

    # ---------------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> None:
        """Reset every env (env ``i`` gets ``seed + i``); the next batch starts from these observations."""
        obs, info = self.envs.reset(seed=seed)
        self._write_carry_obs(obs)
        if self.masks:
            self._carry.get("action_mask").numpy()[...] = self._read_mask(info, np.zeros(self.num_envs, dtype=bool))
        self._carry.get("is_init").fill_(True)
        self._autoreset[:] = False

    def storage(self, agent: CollectingAgent, vector_steps: int) -> BatchStorage:
        """This collector's batch of ``vector_steps`` rows for ``agent`` (made once, reused)."""
        storage = self._storages.get(vector_steps)
        if storage is None:
            layout = BatchLayout.of(agent)
            self._check_layout(layout)
            storage = self._storages[vector_steps] = BatchStorage(layout, vector_steps, self.num_envs, self.device)
        return storage

    def _check_layout(self, layout: BatchLayout) -> None:
        if layout.mask_size != self.mask_size:
            raise ActionMaskError(f"the agent expects masks of size {layout.mask_size}, the collector reads {self.mask_size}")

    def _prepare(self, storage: BatchStorage) -> _Prepared:
        prepared = self._prepared.get(id(storage))
        if prepared is None or prepared.storage is not storage:
            self._check_layout(storage.layout)
            host = self._host_storage(storage)
            prepared = self._prepared[id(storage)] = _Prepared(storage, host)
        return prepared

    def _host_storage(self, storage: BatchStorage) -> BatchStorage:
        """The CPU storage every write goes through: the batch itself on CPU, else a CPU twin
        (sent to the device row by row as the agent needs it)."""
        if storage.device.type == "cpu":
            return storage
        return BatchStorage(storage.layout, storage.steps, storage.num_envs, "cpu")

    def collect(self, agent: CollectingAgent, vector_steps: int, out: BatchStorage | None = None) -> TensorDictBase:
        """Step every env ``vector_steps`` times, the agent acting through ``agent.explore``.

        :param agent: the agent (``explore(td)`` writes ``action`` and its other ``out_specs``;
            ``env_action(actions)`` maps stored actions to the env's).
        :param vector_steps: rows ``T`` of the batch.
        :param out: the storage to write into (a worker's columns of a shared batch); None: this
            collector's own (reused: the batch is overwritten by the next ``collect``).
        :return: the ``[T, num_envs]`` batch.
        """
        storage = out if out is not None else self.storage(agent, vector_steps)
        if self._learner is not agent:  # opponents playing the learner's policy act with this process's agent
            bind_learner(self.envs, agent)
            self._learner = agent
        p = self._prepare(storage)
        T, n = storage.steps, self.num_envs
        # Row 0 is the first observation after the previous batch (or the reset).
        p.write_obs[0](self._carry_obs)
        p.is_init[0] = self._carry.get("is_init").numpy()
        self._write_carried_states(p)
        if p.mask is not None:
            p.mask[0] = self._carry.get("action_mask").numpy()
        p.send_row(0)
        explore, to_env, counter = agent.explore, agent.env_action, self.step_counter
        with torch.inference_mode():  # once around the loop: entering it costs per step
            for t in range(T):
                td = p.acting[t]
                np.logical_not(self._autoreset, out=p.valid[t])
                explore(td)
                if not p.checked:
                    self._check_outputs(agent, td, p)
                outputs = [td.get(key) for key in p.output_keys]
                copy_tensors([o[t] for o in p.outputs], outputs)
                action = outputs[p.action_index].cpu().numpy()
                obs, reward, terminated, truncated, info = self.envs.step(to_env(action))
                p.write_obs[t + 1](obs)
                p.reward[t] = reward
                p.terminated[t] = terminated
                p.truncated[t] = truncated
                done = np.logical_or(p.terminated[t], p.truncated[t], out=p.done[t])
                if p.mask is not None:
                    p.mask[t + 1] = self._read_mask(info, done)
                p.is_init[t + 1] = self._autoreset  # this step reset the envs that were done
                p.write_states(t, td)
                p.send_row(t + 1)
                self._autoreset[...] = done
                self.steps += n
                if "episode" in info:
                    ended = info["_episode"]
                    self.record_episodes(info["episode"]["r"][ended].tolist(), info["episode"]["l"][ended].tolist())
                if counter is not None:
                    counter += 1
        p.send_rows()
        if agent.config.check_finite:
            self._check_finite(storage)
        self._write_carry_obs(_index(p.obs, T))
        self._carry.get("is_init").numpy()[...] = p.is_init[T]
        for key, view in zip(p.state_keys, p.state_views):
            self._carried_states[key][...] = view[T]
        if p.mask is not None:
            self._carry.get("action_mask").numpy()[...] = p.mask[T]
        return storage.td

    def _write_carried_states(self, p: _Prepared) -> None:
        """Row 0 of the agent's carried state: where the previous batch left each env (zeros
        after a reset and for a new collector: the state lives with the envs)."""
        for key, view in zip(p.state_keys, p.state_views):
            carried = self._carried_states.get(key)
            if carried is None or carried.shape != view.shape[1:] or carried.dtype != view.dtype:
                carried = self._carried_states[key] = np.zeros(view.shape[1:], dtype=view.dtype)
            view[0] = carried
            view[0][p.is_init[0]] = 0

    def _check_outputs(self, agent: CollectingAgent, td: TensorDictBase, p: _Prepared) -> None:
        """Once per batch storage: the agent wrote exactly its declared outputs (and the next
        value of its carried state), in their shapes."""
        carried = {*CARRIED_KEYS, *p.state_keys}
        written = {k for k in td.keys(include_nested=True, leaves_only=True)
                   if (k if isinstance(k, str) else k[0]) not in carried}
        declared = set(p.output_keys) | {("next", key) for key in p.state_keys}
        missing, extra = sorted(map(str, declared - written)), sorted(map(str, written - declared))
        name = type(agent).__name__
        if missing or extra:
            raise ValueError(
                f"{name}.explore() wrote {sorted(map(str, written))}, but its out_specs() declare "
                f"{sorted(map(str, declared))}" + (f"; missing {missing}" if missing else "")
                + (f"; undeclared {extra} (declare them in out_specs(), so that every collector stores them)" if extra else "")
            )
        for key, (shape, _) in (*p.storage.layout.outputs.items(),
                                *((("next", k), spec) for k, spec in p.storage.layout.states.items())):
            got = tuple(td.get(key).shape)
            if got != (self.num_envs, *shape):
                raise ValueError(f"{name}.explore() wrote {key!r} of shape {got}; its out_specs() say "
                                 f"{(self.num_envs, *shape)} for {self.num_envs} envs")
        p.checked = True

    def _check_finite(self, storage: BatchStorage) -> None:
        """Raise :class:`NonFiniteError` at the first NaN or infinite value of the batch, naming
        the env, its step and the entry (one ``isfinite`` reduction per float tensor)."""
        T = storage.steps
        first_step = self.steps // self.num_envs - T  # vector steps before this batch
        checks: list[tuple[str, str, torch.Tensor, int]] = []  # (what, name, tensor, row offset)
        obs = storage.plus.get("observation")
        leaves = obs.items(include_nested=True, leaves_only=True) if isinstance(obs, TensorDictBase) else [((), obs)]
        for key, tensor in leaves:
            path = (key,) if isinstance(key, str) else tuple(key)
            checks.append(("observation", path_str(path), tensor, 0))
        checks.append(("reward", "reward", storage.rows.get(("next", "reward")), 1))
        action = storage.rows.get("action")
        if action.is_floating_point():
            checks.append(("action", "action", action, 1))
        for what, name, tensor, offset in checks:
            if not tensor.is_floating_point() or bool(torch.isfinite(tensor).all()):
                continue
            bad = ~torch.isfinite(tensor.reshape(tensor.shape[0], tensor.shape[1], -1))
            row, env = (int(i) for i in bad.any(-1).nonzero()[0])
            element = int(bad[row, env].nonzero()[0])
            value = tensor.reshape(tensor.shape[0], tensor.shape[1], -1)[row, env, element].item()
            step = first_step + row + offset  # the env's own step count since collection began
            index = self._entry_name(name, env, element) if tensor[0, 0].numel() > 1 else name
            when = "after its reset" if step == 0 else f"at its step {step} since collection began"
            env_name = f"env {self.first_index + env}"
            if what == "action":
                raise NonFiniteError(
                    f"the agent's action for {env_name} {when} has {index} = {value}: its network diverged "
                    f"(try a lower lr or max_grad_norm). Turn this check off with check_finite=False"
                )
            raise NonFiniteError(
                f"{env_name} returned {index} = {value} {when}. rladapt checks every batch for NaN and inf "
                f"(they would poison the networks); fix the env, or turn the check off with check_finite=False"
            )

    def _entry_name(self, name: str, env: int, element: int) -> str:
        """``observation[3]`` as the env's own observation names it (``observation['vel'][1]``)
        where AutoAdapt flattened a nested observation into the vector the agent sees."""
        chain = getattr(self.envs, "envs", [None] * (env + 1))[env]  # in-process vector envs hold their envs
        while name == "observation" and chain is not None:
            if isinstance(chain, VectorObservation):
                return chain.describe_index(element)
            chain = getattr(chain, "env", None)
        return f"{name}[{element}]"

    def _read_mask(self, info: dict, done: np.ndarray) -> np.ndarray:
        mask = info.get("action_mask")
        if mask is None:
            raise ActionMaskError(
                "masks are on but the env gave no info['action_mask']; adapt the env with "
                "AutoAdapt(env, agent) or turn masks off (AutoAdapt(..., mask=False))"
            )
        mask = np.asarray(mask)
        if mask.shape != (self.num_envs, self.mask_size):
            raise ActionMaskError(
                f"info['action_mask'] has shape {mask.shape[1:]} per env; expected ({self.mask_size},)"
            )
        if mask.dtype != np.bool_:
            mask = mask.astype(bool)
        empty = ~mask.any(-1) & ~done  # a final observation may legitimately have no valid action
        if empty.any():
            raise ActionMaskError(f"env {int(np.flatnonzero(empty)[0])} masks every action (info['action_mask'] all False)")
        return mask

    def close(self) -> None:
        self.envs.close()
