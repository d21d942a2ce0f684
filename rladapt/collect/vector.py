"""In-process collection over a gymnasium vector env, one ``[num_envs]`` TensorDict per step.

The collector owns a preallocated step TensorDict (TorchRL key names)::

    observation            obs_t (native dtype: uint8 images stay uint8)
    action_mask            bool mask for obs_t (when masks are on)
    action, log_prob, ...  written by the policy
    next/observation       obs returned by ``env.step`` (the true final obs when an episode ended)
    next/action_mask       mask for next/observation (when masks are on)
    next/reward, next/terminated, next/truncated, next/done
    valid                  False on the reset step of gymnasium's NEXT_STEP autoreset

Gymnasium 1.x vector envs autoreset on the step *after* a done (``AutoresetMode.NEXT_STEP``): that
step ignores the action, returns the reset observation, reward 0 and no done. It is not a transition,
so it is marked ``valid=False``; consumers drop it (on-policy: excluded from the loss; off-policy:
not written to the replay buffer). The final observation of a truncated episode is the
``next/observation`` of the done step, and is also the ``observation`` of the invalid step after it,
so an on-policy value estimate for it comes for free.

Every ``step`` writes in place and returns the same TensorDict; read (or copy) it before the next
``step``. A multiprocess collector only has to provide the same ``reset``/``step``/``close``, the
spaces and the episode statistics (:class:`EpisodeStats`).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from tensordict import TensorDict, TensorDictBase

from rladapt.errors import ActionMaskError

#: A policy: takes the step TensorDict (``observation``, ``action_mask``) and writes ``action``
#: (plus whatever it wants stored, e.g. ``log_prob`` and ``value``).
Policy = Callable[[TensorDictBase], TensorDictBase]


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.zeros((), dtype=dtype)).dtype


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
        return torch.zeros(batch + tuple(space.shape), dtype=_torch_dtype(space.dtype), device=device)
    raise TypeError(f"cannot store observations of {space}; adapt the env with AutoAdapt(env, agent)")


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


def _views(td: TensorDictBase, key: Any) -> np.ndarray | dict:
    """Numpy view(s) of the CPU tensor, or nested TensorDict of tensors, at ``key``."""
    value = td.get(key)
    if isinstance(value, TensorDictBase):
        return {k: _views(value, k) for k in value.keys()}
    return value.numpy()


class EpisodeStats:
    """Statistics of the recent finished episodes, the same in every collector (in-process,
    worker processes, collector ranks): the loop logs them and shows them in the progress bar.

    :param stats_window: how many recent episodes ``recent_return`` averages over.
    """

    def __init__(self, stats_window: int = 100) -> None:
        #: Raw returns and lengths of the most recent finished episodes.
        self.episode_returns: deque[float] = deque(maxlen=stats_window)
        self.episode_lengths: deque[int] = deque(maxlen=stats_window)
        #: Episodes finished so far.
        self.episodes = 0

    def record_episodes(self, returns: list[float], lengths: list[int]) -> None:
        """Count finished episodes and keep their raw returns and lengths.

        :param returns: the raw return of each finished episode.
        :param lengths: the length of each, in the same order.
        """
        self.episode_returns.extend(returns)
        self.episode_lengths.extend(lengths)
        self.episodes += len(returns)

    @property
    def recent_return(self) -> float | None:
        """Mean raw return of the recent finished episodes (None before the first one)."""
        return float(np.mean(self.episode_returns)) if self.episode_returns else None

    @property
    def recent_length(self) -> float | None:
        """Mean length of the recent finished episodes (None before the first one)."""
        return float(np.mean(self.episode_lengths)) if self.episode_lengths else None


class VectorCollector(EpisodeStats):
    """Steps a gymnasium vector env with a policy, writing each step into a preallocated TensorDict.

    :param envs: a gymnasium vector env in ``NEXT_STEP`` autoreset mode (the default), whose
        sub-envs are adapted envs with ``RecordEpisodeStatistics`` inside.
    :param masks: read ``info["action_mask"]`` at reset and every step into ``action_mask``.
    :param mask_size: length of one mask (``n`` for ``Discrete(n)``, ``sum(nvec)`` for MultiDiscrete).
    :param device: torch device of the step TensorDict.
    :param stats_window: how many recent episodes ``recent_return`` averages over.
    """

    def __init__(
        self,
        envs: gym.vector.VectorEnv,
        *,
        masks: bool = False,
        mask_size: int | None = None,
        device: torch.device | str = "cpu",
        stats_window: int = 100,
    ) -> None:
        mode = envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if mode != AutoresetMode.NEXT_STEP:
            raise ValueError(f"rladapt collects from vector envs in NEXT_STEP autoreset mode; this one uses {mode}")
        self.envs = envs
        self.num_envs = envs.num_envs
        self.observation_space = envs.single_observation_space
        self.action_space = envs.single_action_space
        self.masks, self.mask_size, self.device = masks, mask_size, torch.device(device)
        n = (self.num_envs,)
        td = TensorDict(
            {
                "observation": observation_tensors(self.observation_space, n, device),
                "valid": torch.ones(n, dtype=torch.bool, device=device),
                "next": {
                    "observation": observation_tensors(self.observation_space, n, device),
                    "reward": torch.zeros(n, dtype=torch.float32, device=device),
                    "terminated": torch.zeros(n, dtype=torch.bool, device=device),
                    "truncated": torch.zeros(n, dtype=torch.bool, device=device),
                    "done": torch.zeros(n, dtype=torch.bool, device=device),
                },
            },
            batch_size=n, device=device,
        )
        if masks:
            if mask_size is None:
                raise ValueError("mask_size is needed when masks are on")
            td.set("action_mask", torch.ones(n + (mask_size,), dtype=torch.bool, device=device))
            td.set(("next", "action_mask"), torch.ones(n + (mask_size,), dtype=torch.bool, device=device))
        self.td = td
        # Every write of a step goes through numpy views of CPU storage: a numpy write costs about
        # 0.5 us, torch's copy_ 2-3 us, and a step makes a dozen. On CPU the views are the step
        # TensorDict's own tensors; on another device they are a CPU copy, sent over in one call
        # before the policy acts and one after the env step (``_send``).
        host = self._host_storage(td)
        self._obs, self._next_obs = _views(host, "observation"), _views(host, ("next", "observation"))
        self._write_obs, self._write_next_obs = _writers(self._obs), _writers(self._next_obs)
        self._valid, self._reward = host.get("valid").numpy(), host.get(("next", "reward")).numpy()
        self._terminated, self._truncated = host.get(("next", "terminated")).numpy(), host.get(("next", "truncated")).numpy()
        self._done = host.get(("next", "done")).numpy()
        self._mask = host.get("action_mask").numpy() if masks else None
        self._next_mask = host.get(("next", "action_mask")).numpy() if masks else None
        self._device_pairs: dict[str, tuple[list, list]] | None = None
        if host is not td:
            keys = list(host.keys(include_nested=True, leaves_only=True))
            parts = {"current": [k for k in keys if not (isinstance(k, tuple) and k[0] == "next")]}
            parts["next"] = [k for k in keys if k not in parts["current"]]
            self._device_pairs = {part: ([td.get(k) for k in ks], [host.get(k) for k in ks]) for part, ks in parts.items()}
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        self._pending_shift = False
        super().__init__(stats_window)
        self.steps = 0

    # ---------------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> TensorDict:
        """Reset every env (env ``i`` gets ``seed + i``) and write the first observations."""
        obs, info = self.envs.reset(seed=seed)
        self._write_obs(obs)
        if self.masks:
            self._mask[...] = self._read_mask(info, np.zeros(self.num_envs, dtype=bool))
        self._autoreset[:] = False
        self._valid[...] = True
        self._pending_shift = False
        self._send("current")
        return self.td

    def step(self, policy: Policy, to_env: Callable[[np.ndarray], Any] | None = None) -> TensorDict:
        """One vector step: the policy acts on ``observation``, the envs step, results are written.

        :param policy: writes ``action`` (and extras) into the step TensorDict.
        :param to_env: maps the stored action batch (numpy) to what the vector env takes
            (offsets, clipping to the bounds); identity when None.
        :return: the step TensorDict (overwritten by the next call).
        """
        td = self.td
        if self._pending_shift:  # the previous step's next/ becomes this step's current
            self._write_obs(self._next_obs)
            if self.masks:
                self._mask[...] = self._next_mask
        np.logical_not(self._autoreset, out=self._valid)
        self._send("current")
        policy(td)
        action = td.get("action").cpu().numpy()
        obs, reward, terminated, truncated, info = self.envs.step(to_env(action) if to_env else action)
        self._write_next_obs(obs)
        self._reward[...] = reward
        self._terminated[...] = terminated
        self._truncated[...] = truncated
        done = np.logical_or(self._terminated, self._truncated, out=self._done)
        if self.masks:
            self._next_mask[...] = self._read_mask(info, done)
        self._send("next")
        if "episode" in info:
            ended = info["_episode"]
            self.record_episodes(info["episode"]["r"][ended].tolist(), info["episode"]["l"][ended].tolist())
        self._autoreset[...] = done
        self._pending_shift = True
        self.steps += self.num_envs
        return td

    def _host_storage(self, td: TensorDict) -> TensorDict:
        """The CPU storage every write goes through: the step TensorDict itself on CPU, else a CPU twin."""
        return td if self.device.type == "cpu" else td.to("cpu")

    def _send(self, part: str) -> None:
        """Copy the host side of ``part`` ("current" or "next" keys) to the device; nothing on CPU."""
        if self._device_pairs is not None:
            device_leaves, host_leaves = self._device_pairs[part]
            torch._foreach_copy_(device_leaves, host_leaves)

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
