"""Replay storage for off-policy agents: uniform, prioritised (proportional or rank-based), n-step
returns, and frame-deduplicating storage for stacked image observations.

Layout. Storage is a preallocated TensorDict of batch size ``[num_envs, capacity // num_envs]``: one
circular stream per env, each with its own write cursor. The collector hands the buffer one vector-env
step at a time (batch ``[num_envs]``, or a subset of envs, since gymnasium's NEXT_STEP autoreset step
after a done is not a transition and is left out), so the transitions of one env stay consecutive in
its stream and n-step windows never mix envs.

Frame deduplication (``frame_stack=S``). A stacked observation ``(S, *frame)`` (gymnasium's
``FrameStackObservation``, newest frame last) shares ``S - 1`` frames with the previous one and the
next observation shares ``S - 1`` frames with the current one. Each env gets a ring of unique frames;
a transition stores only ``ptr`` (the absolute ring position of its observation's newest frame) and
``start`` (the ring position of the first frame of its episode, or of its segment, see below). Its observation is frames
``ptr - S + 1 .. ptr`` and its next observation frames ``ptr - S + 2 .. ptr + 1``, each position
clamped below at ``start``: clamping repeats the episode's first stored frame, which is exactly
gymnasium's default ``padding_type="reset"`` padding (the reset observation repeated). A transition
in mid-episode writes one frame (its next frame); the first transition of an episode also writes the
frames of its first observation that are not a leading run of repeats (1 frame for a reset
observation). An episode of ``L`` steps thus costs ``L + 1`` frames, the extra one being the true
final frame, which a truncated episode needs for bootstrapping. Any stack that does not match the
stream (a discontinuity, a different padding) simply starts a new segment, so reconstruction is
exact for every input; only the saving depends on the input being a frame stack.

The frame ring holds ``T * (1 + frame_slack) + S + 1`` frames per env (``T`` transitions per env):
with episodes longer than ``1 / frame_slack`` steps the transition ring is the limit; with shorter
ones the frame ring is, and the oldest transitions whose frames are overwritten are evicted early
(``len(buffer)`` then stays a little below ``capacity``).

Prioritisation. ``prioritized="proportional"``: ``p_i = (|delta_i| + epsilon) ** alpha`` kept in a
vectorised sum tree (:class:`~rladapt.buffers.sumtree.SumTree`). ``prioritized="rank"``: ``p_i =
rank_i ** -alpha`` with rank 1 the largest ``|delta|``. Ranks come from a full ``argsort`` of all
stored ``|delta|`` every ``rank_resort_interval`` calls to :meth:`ReplayBuffer.update_priorities`;
in between, an updated transition gets its rank by binary search in the last sorted snapshot (the
paper's "heap re-sorted periodically", done with numpy sorts instead of a heap). The rank priorities
live in the same sum tree, so sampling and importance weights are shared. In both modes a new
transition gets the current maximum priority, and importance weights are ``(N * P(i)) ** -beta``
divided by their maximum over the whole buffer, with ``beta`` annealed linearly from ``beta`` to 1
over ``beta_steps`` calls to :meth:`ReplayBuffer.sample`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Union

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase

from rladapt.buffers.sumtree import SumTree

NestedKey = Union[str, tuple[str, ...]]
Generator = Union[np.random.Generator, torch.Generator, None]

_REQUIRED = (("next", "reward"), ("next", "terminated"), ("next", "truncated"))
_VALID = ("valid",)  # the collector's "this row is a transition" flag
_INIT = ("is_init",)  # the collector's "this observation starts an episode" flag
#: Collector flags that steer writing and are not stored.
_FLAGS = (_VALID, _INIT)


def _as_key(key: NestedKey) -> tuple[str, ...]:
    return (key,) if isinstance(key, str) else tuple(key)


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _key_name(key: tuple[str, ...]) -> str:
    return "/".join(key)


def _np_view(t: torch.Tensor) -> np.ndarray | None:
    """A numpy view sharing ``t``'s memory, or None for dtypes numpy lacks (bfloat16, ...)."""
    try:
        return t.numpy()
    except TypeError:
        return None


def _np_src(t: torch.Tensor) -> np.ndarray:
    if t.device.type != "cpu" or t.requires_grad:
        t = t.detach().cpu()
    return t.numpy()


class ReplayBuffer:
    """Circular replay storage over a preallocated TensorDict, one stream per env.

    A transition batch is a TensorDict with batch size ``[num_envs]`` and keys ``observation``,
    ``action``, ``("next", "observation")``, ``("next", "reward")``, ``("next", "terminated")``,
    ``("next", "truncated")``, optionally ``action_mask`` and ``("next", "action_mask")``; any other
    key is stored too unless ``keys`` says otherwise. Observations may be nested TensorDicts and
    keep their dtype. A bool ``valid`` entry (the collector's flag, False on the reset step of
    NEXT_STEP autoreset) selects the rows that are transitions, and a bool ``is_init`` entry (True
    where the observation starts an episode) ends a stream that broke without a done
    (:meth:`end_streams`); neither is stored.

    :meth:`sample` returns a TensorDict of batch size ``[batch_size]`` with every stored key, where
    the ``("next", ...)`` entries describe the end of the (n-step) window, plus:

    - ``("next", "reward")``: the n-step discounted reward sum ``sum_j gamma**j * r_{t+j}`` over the
      ``k <= n_step`` steps of the window (the window stops at the first terminated or truncated
      step, and at the newest stored transition of that env); in the stored reward dtype.
    - ``("next", "observation")`` (and every other ``("next", ...)`` key, e.g. ``action_mask``):
      those of the last step of the window, i.e. the observation ``k`` steps later; for a truncated
      episode this is the true final observation.
    - ``("next", "terminated")``, ``("next", "truncated")``: flags of the last step of the window.
    - ``("next", "done")``: ``terminated | truncated`` of the last step.
    - ``("next", "discount")``: float32, shaped like the reward: ``gamma**k``, or 0 when the window
      ends by termination. The learner's target is ``reward + discount * V(next observation)``
      (this is right for truncation, which bootstraps, and for ``n_step=1``).
    - ``"index"``: int64 transition id, to pass back to :meth:`update_priorities` (and to
      :meth:`get`). Ids are never reused (``id = n * num_envs + env`` for the env's ``n``-th
      transition), so an update for a transition overwritten since it was sampled is skipped.
    - ``"weight"``: float32 importance-sampling weight (all ones unless prioritised).

    Example (Atari, 8 envs, 3-step returns, prioritised, frames stored once)::

        rb = ReplayBuffer(1_000_000, n_step=3, gamma=0.99, prioritized="proportional",
                          frame_stack=4)
        rb.extend(step_td, env_ids=~autoreset)      # each vector-env step, autoreset rows left out
        batch = rb.sample(32, generator)            # uint8 (32, 4, 84, 84) stacks, rebuilt
        target = batch["next", "reward"] + batch["next", "discount"] * q_next
        rb.update_priorities(batch["index"], target - q)  # loss weighted by batch["weight"]

    :param capacity: maximum number of transitions over all envs; each env gets
        ``capacity // num_envs`` of them (allocated on the first :meth:`extend`).
    :param num_envs: number of envs writing into the buffer; ``None`` infers it from the batch size
        of the first :meth:`extend` call (pass it when that call writes only some envs).
    :param n_step: length of the multi-step return window (1: ordinary one-step transitions).
    :param gamma: discount factor used for n-step sums and ``("next", "discount")``.
    :param prioritized: ``None`` (uniform sampling), ``"proportional"`` (sum tree over
        ``(|td_error| + epsilon) ** alpha``) or ``"rank"`` (priority ``rank ** -alpha``).
    :param alpha: how much prioritisation is used (0: uniform).
    :param beta: initial importance-sampling exponent, annealed linearly to 1.
    :param beta_steps: number of :meth:`sample` calls over which ``beta`` reaches 1.
    :param epsilon: added to ``|td_error|`` so no transition gets zero priority (proportional).
    :param rank_resort_interval: with ``prioritized="rank"``, re-sort all priorities after this many
        :meth:`update_priorities` calls (ranks in between come from the last sorted snapshot).
    :param frame_stack: if set, deduplicate the frames of the stacked image observation at
        ``frame_key`` (shape ``(frame_stack, *frame)``, newest frame last, as gymnasium's
        ``FrameStackObservation`` makes it); stacks are rebuilt exactly at sampling time.
    :param frame_key: key of the stacked observation to deduplicate (nested key for a dict
        observation, e.g. ``("observation", "pixels")``); its ``("next", ...)`` twin is deduplicated
        with it.
    :param frame_slack: extra frame slots per transition slot for episode starts and ends (frame
        storage is ``capacity * (1 + frame_slack)`` frames); episodes shorter than ``1 / frame_slack``
        steps on average make the buffer evict its oldest transitions before it holds ``capacity``.
    :param check_frames: verify on each :meth:`extend` that a stacked observation continues its env's
        stream (and start a new segment when not), and that the next stack is the current one shifted
        by a frame. Keeps reconstruction exact whatever the input; costs a frame-stack compare. With
        ``False`` the stream must be continuous: within an episode each step's observation is the
        previous step's next observation (what a collector gives).
    :param keys: the keys to store (nested keys as tuples); ``None`` stores every key of the first
        :meth:`extend` but ``valid``. The reward/terminated/truncated keys are always stored.
    :param seed: seed of the buffer's own random generator, used when :meth:`sample` gets none.
    """

    def __init__(
        self,
        capacity: int,
        *,
        num_envs: int | None = None,
        n_step: int = 1,
        gamma: float = 0.99,
        prioritized: str | None = None,
        alpha: float = 0.6,
        beta: float = 0.4,
        beta_steps: int = 100_000,
        epsilon: float = 1e-6,
        rank_resort_interval: int = 1000,
        frame_stack: int | None = None,
        frame_key: NestedKey = "observation",
        frame_slack: float = 1 / 32,
        check_frames: bool = True,
        keys: Sequence[NestedKey] | None = None,
        seed: int | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if n_step < 1:
            raise ValueError(f"n_step must be >= 1, got {n_step}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma}")
        if prioritized not in (None, "proportional", "rank"):
            raise ValueError(
                f"prioritized must be None, 'proportional' or 'rank', got {prioritized!r}"
            )
        if frame_stack is not None and frame_stack < 1:
            raise ValueError(f"frame_stack must be >= 1 or None, got {frame_stack}")
        if frame_slack < 0:
            raise ValueError(f"frame_slack must be >= 0, got {frame_slack}")
        self.capacity = int(capacity)
        self.n_step = int(n_step)
        self.gamma = float(gamma)
        self.prioritized = prioritized
        self.alpha = float(alpha)
        self.beta0 = float(beta)
        self.beta_steps = int(beta_steps)
        self.epsilon = float(epsilon)
        self.rank_resort_interval = int(rank_resort_interval)
        self.frame_stack = None if frame_stack is None else int(frame_stack)
        self.frame_key = _as_key(frame_key)
        self.next_frame_key = ("next", *self.frame_key)
        self.frame_slack = float(frame_slack)
        self.check_frames = bool(check_frames)
        self.keys = None if keys is None else [_as_key(k) for k in keys]
        self._rng = np.random.default_rng(seed)
        self._num_envs = None if num_envs is None else int(num_envs)
        self._storage: TensorDictBase | None = None
        self._sample_calls = 0

    # ------------------------------------------------------------------ allocation

    @property
    def num_envs(self) -> int | None:
        """Number of env streams (``None`` until known)."""
        return self._num_envs

    @property
    def env_capacity(self) -> int:
        """Transitions kept per env stream."""
        if self._num_envs is None:
            raise RuntimeError("the buffer is not allocated yet (call extend first)")
        return self.capacity // self._num_envs

    @property
    def beta(self) -> float:
        """Current importance-sampling exponent (annealed over :meth:`sample` calls)."""
        progress = min(1.0, self._sample_calls / max(1, self.beta_steps))
        return self.beta0 + (1.0 - self.beta0) * progress

    def _allocate(self, td: TensorDictBase) -> None:
        given = [_as_key(k) for k in td.keys(include_nested=True, leaves_only=True)]
        if self.keys is None:
            keys = [k for k in given if k not in _FLAGS]
        else:
            absent = [_key_name(k) for k in self.keys if k not in given]
            if absent:
                raise ValueError(f"keys {absent} were asked for but are not in the transitions")
            keys = list(self.keys) + [k for k in _REQUIRED if k not in self.keys]
            if self.frame_stack is not None:
                keys += [k for k in (self.frame_key, self.next_frame_key) if k in given]
            keys = [k for k in given if k in keys]  # keep the batch's order
        missing = [k for k in _REQUIRED if k not in keys]
        if missing:
            raise ValueError(
                f"replay transitions need the keys {[_key_name(k) for k in _REQUIRED]}; "
                f"missing {[_key_name(k) for k in missing]} (got {[_key_name(k) for k in keys]})"
            )
        num_envs = self._num_envs
        if num_envs < 1 or self.capacity < num_envs:
            raise ValueError(f"capacity {self.capacity} is smaller than num_envs {num_envs}")
        E, T = num_envs, self.capacity // num_envs
        self._T = T
        if self.frame_stack is not None:
            for k in (self.frame_key, self.next_frame_key):
                if k not in keys:
                    raise ValueError(
                        f"frame_stack is set but the transitions have no {_key_name(k)!r} "
                        f"(frame_key={self.frame_key!r})"
                    )
            obs = td.get(self.frame_key)
            if obs.ndim < 2 or obs.shape[1] != self.frame_stack:
                raise ValueError(
                    f"frame_stack={self.frame_stack} expects {_key_name(self.frame_key)!r} of shape "
                    f"(num_envs, {self.frame_stack}, *frame) with the stack on axis 0 of each "
                    f"observation (gymnasium FrameStackObservation), got {tuple(obs.shape)}"
                )
            S = self.frame_stack
            self._F = T + math.ceil(T * self.frame_slack) + S + 1
            # torch.empty: pages are only committed as frames are written (a slot is never read
            # before it is written), so a large buffer costs memory as it fills, not up front.
            self._frames = torch.empty((E, self._F, *obs.shape[2:]), dtype=obs.dtype)
            self._frames_np = _np_view(self._frames)
            if self._frames_np is None:
                raise ValueError(f"frame_stack does not support {obs.dtype} observations")
            self._ptr = np.zeros((E, T), dtype=np.int64)
            self._start = np.zeros((E, T), dtype=np.int64)
            self._nf = np.zeros(E, dtype=np.int64)  # frames written per env (absolute)
            self._open = np.zeros(E, dtype=bool)  # the env's next transition continues an episode
            self._cur_start = np.zeros(E, dtype=np.int64)
            self._stack_offsets = np.arange(S, dtype=np.int64) - (S - 1)
            keys = [k for k in keys if k not in (self.frame_key, self.next_frame_key)]
        self._keys = keys
        self._storage = TensorDict(batch_size=[E, T])
        for k in keys:
            v = td.get(k)
            self._storage.set(k, torch.empty((E, T, *v.shape[1:]), dtype=v.dtype))
        self._set_views()
        self._nt = np.zeros(E, dtype=np.int64)  # transitions written per env (absolute)
        self._lo = np.zeros(E, dtype=np.int64)  # oldest live transition per env (absolute)
        if self.prioritized is not None:
            self._tree = SumTree(E * T)
            self._max_priority = 1.0  # priority given to new transitions (tree units)
            if self.prioritized == "rank":
                self._err = np.full(E * T, np.inf)  # |td error| per slot; inf = never updated
                self._sorted_err = np.empty(0)
                self._updates_since_sort = 0

    def _set_views(self) -> None:
        # Reads and writes go through numpy views of the storage: single-threaded copies of a few
        # kilobytes, where torch's intra-op thread pool costs milliseconds on a busy machine.
        self._leaves = {k: self._storage.get(k) for k in self._keys}
        self._arrays = {k: _np_view(v) for k, v in self._leaves.items()}

    # ------------------------------------------------------------------ writing

    def _resolve_envs(
        self, td: TensorDictBase, env_ids: Any
    ) -> tuple[np.ndarray | None, np.ndarray, bool]:
        B = td.batch_size[0]
        if env_ids is None:
            if self._num_envs is None:
                self._num_envs = B
            if B != self._num_envs:
                raise ValueError(
                    f"extend got a batch of {B} transitions for a buffer of {self._num_envs} envs; "
                    "pass env_ids to write only some envs"
                )
            return None, np.arange(B, dtype=np.int64), True
        ids = _to_numpy(env_ids)
        if ids.dtype == bool:
            if self._num_envs is None:
                self._num_envs = ids.shape[0]
            if ids.shape[0] != self._num_envs:
                raise ValueError(f"env_ids mask has {ids.shape[0]} entries, expected {self._num_envs}")
            rows = None
            if B == self._num_envs:
                rows = np.nonzero(ids)[0]
            elif B != int(ids.sum()):
                raise ValueError(
                    f"env_ids mask selects {int(ids.sum())} envs but the batch has {B} transitions"
                )
            ids = np.nonzero(ids)[0]
            if rows is not None and rows.size == B:
                rows = None
        else:
            rows = None
            ids = ids.astype(np.int64).reshape(-1)
            if self._num_envs is None:
                raise ValueError("pass num_envs to the constructor when extend gets integer env_ids")
            if ids.shape[0] != B:
                raise ValueError(f"env_ids has {ids.shape[0]} entries but the batch has {B}")
            if np.unique(ids).size != ids.size:
                raise ValueError(f"env_ids has duplicates: {ids.tolist()}")
            if ids.size and (ids.min() < 0 or ids.max() >= self._num_envs):
                raise ValueError(f"env_ids out of range [0, {self._num_envs}): {ids.tolist()}")
        everyone = ids.size == self._num_envs and bool(np.all(ids == np.arange(ids.size)))
        return rows, ids, everyone

    def extend(self, td: TensorDictBase, env_ids: Any = None) -> None:
        """Write one step of a vector env (one transition per env) in place.

        :param td: transitions, batch size ``[num_envs]`` (or ``[len(env_ids)]``; a batch size
            ``[]`` is taken as a single env).
        :param env_ids: which envs the rows belong to: ``None`` (row ``i`` is env ``i``; rows whose
            ``valid`` entry is False, if there is one, are left out), an int array of env indices,
            or a bool mask over all envs (then ``td`` may hold either all envs or only the selected
            rows). Use it to leave out envs whose step was an autoreset.
        """
        if td.batch_dims == 0:
            td = td.unsqueeze(0)
        if env_ids is None and "valid" in td.keys():
            env_ids = td.get("valid").reshape(-1)
        rows, envs, everyone = self._resolve_envs(td, env_ids)
        if envs.size == 0:
            return
        if self._storage is None:
            self._allocate(td)
        elif "is_init" in td.keys():  # a stream that restarts without a done (a restarted worker) ends first
            starts = _np_src(td.get("is_init")).reshape(-1)
            starts = starts if rows is None else starts[rows]
            if starts.any():
                self._end_open_streams(envs[starts])
        if self.frame_stack is not None:  # validate before anything is written
            obs, nxt = _np_src(td.get(self.frame_key)), _np_src(td.get(self.next_frame_key))
            if rows is not None:
                obs, nxt = obs[rows], nxt[rows]
            if self.check_frames and not np.array_equal(nxt[:, :-1], obs[:, 1:]):
                bad = np.nonzero((nxt[:, :-1] != obs[:, 1:]).reshape(len(envs), -1).any(1))[0]
                raise ValueError(
                    f"frame_stack={self.frame_stack}: the next observation of env(s) "
                    f"{envs[bad].tolist()} is not the current stack shifted by one frame, so "
                    f"{_key_name(self.frame_key)!r} is not a frame stack with the newest frame last "
                    "(use frame_stack=None for this env)"
                )
        T = self._T
        a = self._nt[envs]
        slot = a % T
        # A full stream drops its oldest transition, whose slot is the one being overwritten.
        self._lo[envs] = np.maximum(self._lo[envs], a + 1 - T)
        # Basic indexing (one slot for every env) when the envs advance together: a plain copy.
        same = everyone and bool(np.all(slot == slot[0]))
        at = (slice(None), int(slot[0])) if same else (envs, slot)
        for k in self._keys:
            dst, src = self._arrays[k], td.get(k)
            if dst is None:  # a dtype numpy lacks: torch indexing
                idx = at if same else (torch.from_numpy(envs), torch.from_numpy(slot))
                self._leaves[k][idx] = src if rows is None else src[torch.from_numpy(rows)]
                continue
            src = _np_src(src)
            dst[at] = src if rows is None else src[rows]
        done = self._done(td, rows)
        if self.frame_stack is not None:
            self._write_frames(obs, nxt, envs, slot, everyone, done)
        self._nt[envs] += 1
        evicted = self._evict_frames(envs) if self.frame_stack is not None else None
        if self.prioritized is not None:
            self._tree.update(envs * T + slot, self._max_priority)
            if self.prioritized == "rank":
                self._err[envs * T + slot] = np.inf
            if evicted is not None and evicted.size:
                self._tree.update(evicted, 0.0)

    def extend_steps(self, td: TensorDictBase) -> None:
        """Write several steps of a vector env at once: ``td`` has batch size ``[steps, num_envs]``
        (time first, as collectors give it), and the result is that of ``extend(td[t])`` for each
        ``t`` in order, rows with ``valid == False`` left out, in one copy per key. Falls back to
        those calls where one copy cannot say the same: frame deduplication, the first write
        (which allocates), a window longer than an env's capacity, a dtype numpy lacks, or a
        stream that restarts without a done in the middle of the window.

        :param td: transitions, batch size ``[steps, num_envs]``.
        """
        if td.batch_dims != 2:
            raise ValueError(f"extend_steps takes a batch of size [steps, num_envs], got {list(td.batch_size)}")
        if not self._write_window(td):
            for t in range(td.batch_size[0]):
                self.extend(td[t])

    def _write_window(self, td: TensorDictBase) -> bool:
        """:meth:`extend_steps` in one copy per key; False (nothing written) where that would not
        give the buffer ``extend`` per step gives."""
        steps, B = td.batch_size
        if (self.frame_stack is not None or self._storage is None or B != self._num_envs or steps > self._T
                or any(self._arrays[k] is None for k in self._keys)):
            return False
        valid = _np_src(td.get("valid")).reshape(steps, B) if "valid" in td.keys() else np.ones((steps, B), dtype=bool)
        t_idx, env_idx = np.nonzero(valid)  # time-major: each env's rows in time order
        if t_idx.size == 0:
            return True
        order = np.argsort(env_idx, kind="stable")  # grouped by env, in time order within each
        t_by_env, env_by_env = t_idx[order], env_idx[order]
        counts = np.bincount(env_by_env, minlength=B)
        first = np.cumsum(counts) - counts  # where each env's group starts
        k = np.arange(env_by_env.size) - first[env_by_env]  # rank of a row within its env
        if "is_init" in td.keys():  # a stream that restarts without a done ends first (a restarted worker)
            starts = _np_src(td.get("is_init")).reshape(steps, B)[t_by_env, env_by_env]
            done = np.zeros((steps, B), dtype=bool)
            for flag in (("next", "terminated"), ("next", "truncated")):
                done |= _np_src(td.get(flag)).reshape(steps, B, -1).any(-1)
            done = done[t_by_env, env_by_env]
            if np.any(starts[1:] & (k[1:] > 0) & ~done[:-1]):  # inside the window: one step at a time
                return False
            leading = starts & (k == 0)
            if leading.any():
                self._end_open_streams(env_by_env[leading])
        T = self._T
        slot = (self._nt[env_by_env] + k) % T
        written = np.nonzero(counts)[0]
        self._lo[written] = np.maximum(self._lo[written], self._nt[written] + counts[written] - T)
        for key in self._keys:
            self._arrays[key][env_by_env, slot] = _np_src(td.get(key))[t_by_env, env_by_env]
        self._nt += counts
        if self.prioritized is not None:
            self._tree.update(env_by_env * T + slot, self._max_priority)
            if self.prioritized == "rank":
                self._err[env_by_env * T + slot] = np.inf
        return True

    def end_streams(self, env_ids: Any) -> None:
        """End each env's stored stream at its newest transition, as a truncation: n-step windows
        stop there (the transition itself still bootstraps from its next observation) and the
        env's next transition starts a new episode, so a window never joins two unrelated
        episodes. :meth:`extend` calls it by itself when a row marked ``is_init`` (the first
        observation of an episode) follows a transition that did not end one: a collector whose
        envs were replaced in mid-episode (a restarted worker).

        :param env_ids: the env indices whose streams end.
        """
        if self._storage is None:
            return
        envs = _to_numpy(env_ids).astype(np.int64).reshape(-1)
        if envs.size and (envs.min() < 0 or envs.max() >= self._num_envs):
            raise ValueError(f"env_ids out of range [0, {self._num_envs}): {envs.tolist()}")
        envs = envs[self._nt[envs] > self._lo[envs]]  # envs with a stored transition
        slot = (self._nt[envs] - 1) % self._T
        truncated = self._arrays[("next", "truncated")]  # a numpy view, like every other write here
        truncated.reshape(truncated.shape[0], truncated.shape[1], -1)[envs, slot] = True
        if self.frame_stack is not None:
            self._open[envs] = False

    def _end_open_streams(self, envs: np.ndarray) -> None:
        """End the streams of ``envs`` whose newest stored transition is not done: their next
        transition starts an episode (``is_init``), so the stream broke in mid-episode."""
        envs = envs[self._nt[envs] > self._lo[envs]]
        if not envs.size:
            return
        slot = (self._nt[envs] - 1) % self._T
        done = np.zeros(envs.size, dtype=bool)
        for key in (("next", "terminated"), ("next", "truncated")):
            flags = self._arrays[key]
            done |= flags.reshape(flags.shape[0], flags.shape[1], -1)[envs, slot].any(-1)
        if not done.all():
            self.end_streams(envs[~done])

    @staticmethod
    def _done(td: TensorDictBase, rows: np.ndarray | None) -> np.ndarray:
        B = td.batch_size[0]
        term = _np_src(td.get(("next", "terminated"))).reshape(B, -1).any(-1)
        trunc = _np_src(td.get(("next", "truncated"))).reshape(B, -1).any(-1)
        done = term | trunc
        return done if rows is None else done[rows]

    def _write_frames(
        self,
        obs: np.ndarray,
        nxt: np.ndarray,
        envs: np.ndarray,
        slot: np.ndarray,
        everyone: bool,
        done: np.ndarray,
    ) -> None:
        """Store the new frames of one step's stacks ``obs``/``nxt`` (rows of ``envs``)."""
        S, F, frames = self.frame_stack, self._F, self._frames_np
        nf = self._nf[envs].copy()
        cont = self._open[envs].copy()
        if self.check_frames and cont.any():
            # The stack must equal what the stream would rebuild; else start a new segment here.
            ci = np.nonzero(cont)[0]
            ce = envs[ci]
            pos = np.maximum(nf[ci, None] - 1 + self._stack_offsets, self._cur_start[ce, None]) % F
            same = (frames[ce[:, None], pos] == obs[ci]).reshape(ci.size, -1).all(1)
            cont[ci[~same]] = False
        ptr = nf - 1
        start = self._cur_start[envs].copy()
        new = np.nonzero(~cont)[0]
        if new.size:
            o = obs[new]
            # Leading run of frames equal to the first one (the reset padding) is stored once:
            # clamping positions at ``start`` repeats a segment's first frame.
            run = np.ones(new.size, dtype=np.int64)
            if S > 1:
                eq = (o[:, 1:] == o[:, :1]).reshape(new.size, S - 1, -1).all(-1)
                run += np.cumprod(eq, axis=1).sum(1)
            count = S - run + 1
            for j in range(S):  # at most S vectorised copies, not one per env
                w = np.nonzero(count > j)[0]
                if w.size == 0:
                    break
                rows_w = new[w]
                frames[envs[rows_w], (nf[rows_w] + j) % F] = o[w, run[w] - 1 + j]
            start[new] = nf[new]
            ptr[new] = nf[new] + count - 1
            nf[new] += count
            self._cur_start[envs[new]] = start[new]
        # The next observation's newest frame: the only frame a mid-episode step adds.
        if everyone and np.all(nf == nf[0]):
            frames[:, int(nf[0] % F)] = nxt[:, -1]
        else:
            frames[envs, nf % F] = nxt[:, -1]
        self._nf[envs] = nf + 1
        self._ptr[envs, slot] = ptr
        self._start[envs, slot] = start
        self._open[envs] = ~done

    def _evict_frames(self, envs: np.ndarray) -> np.ndarray:
        """Drop the oldest transitions whose frames the frame ring has overwritten."""
        S, T = self.frame_stack, self._T
        evicted = []
        while True:
            lo = self._lo[envs]
            s = lo % T
            need = np.maximum(self._ptr[envs, s] - (S - 1), self._start[envs, s])
            bad = (need < self._nf[envs] - self._F) & (lo < self._nt[envs])
            if not bad.any():
                break
            ev = envs[bad]
            evicted.append(ev * T + self._lo[ev] % T)
            self._lo[ev] += 1
        return np.concatenate(evicted) if evicted else np.empty(0, dtype=np.int64)

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        if self._storage is None:
            return 0
        return int((self._nt - self._lo).sum())

    def _absolute(self, env: np.ndarray, slot: np.ndarray) -> np.ndarray:
        nt = self._nt[env]
        return nt - 1 - ((nt - 1 - slot) % self._T)

    def valid(self, index: Any) -> np.ndarray:
        """Whether each transition id still refers to a live transition.

        :param index: transition ids (the ``"index"`` entry of a sampled batch).
        """
        index = _to_numpy(index).astype(np.int64)
        if self._storage is None:
            return np.zeros(index.shape, dtype=bool)
        env, a = index % self._num_envs, index // self._num_envs
        return (index >= 0) & (a >= self._lo[env]) & (a < self._nt[env])

    def _uniform(self, n: int, generator: Generator) -> np.ndarray:
        if generator is None:
            return self._rng.random(n)
        if isinstance(generator, np.random.Generator):
            return generator.random(n)
        if isinstance(generator, torch.Generator):
            return torch.rand(n, generator=generator, dtype=torch.float64).numpy()
        raise TypeError(f"generator must be a numpy or torch Generator or None, got {type(generator)}")

    def sample(
        self, batch_size: int, generator: Generator = None, *, beta: float | None = None
    ) -> TensorDictBase:
        """Draw a batch of transitions (with replacement).

        :param batch_size: number of transitions.
        :param generator: ``numpy.random.Generator`` or ``torch.Generator`` to draw with; ``None``
            uses the buffer's own (seeded by ``seed``).
        :param beta: importance-sampling exponent for this batch; ``None`` uses the annealed
            :attr:`beta` (prioritised buffers only).
        :return: TensorDict of batch size ``[batch_size]``; see the class docstring for its keys.
        """
        n = len(self)
        if n == 0:
            raise RuntimeError("cannot sample from an empty ReplayBuffer")
        u = self._uniform(batch_size, generator)
        T = self._T
        if self.prioritized is None:
            counts = self._nt - self._lo
            cum = np.cumsum(counts)
            flat = np.minimum((u * n).astype(np.int64), n - 1)
            env = np.searchsorted(cum, flat, side="right")
            a = self._lo[env] + flat - (cum[env] - counts[env])
            weight = None
        else:
            total = self._tree.total
            leaf = self._tree.find(u * total)
            env, slot = leaf // T, leaf % T
            a = self._absolute(env, slot)
            b = self.beta if beta is None else float(beta)
            # w_i = (N P_i)^-beta / max_j (N P_j)^-beta; the max is at the smallest live priority.
            weight = (self._tree[leaf] / self._tree.min) ** (-b)
        self._sample_calls += 1
        out = self._gather(env, a)
        if weight is not None:
            out.set("weight", torch.as_tensor(weight, dtype=torch.float32))
        return out

    def get(self, index: Any) -> TensorDictBase:
        """The transitions with the given ids (as :meth:`sample` would return them).

        :param index: ids of live transitions (a sampled ``"index"``, or from :meth:`indices`).
        """
        index = _to_numpy(index).astype(np.int64).reshape(-1)
        ok = self.valid(index)
        if not ok.all():
            raise IndexError(f"transition ids {index[~ok].tolist()} are not in the buffer")
        return self._gather(index % self._num_envs, index // self._num_envs)

    def indices(self) -> np.ndarray:
        """Ids of every live transition: env 0 oldest to newest, then env 1, ..."""
        if self._storage is None:
            return np.empty(0, dtype=np.int64)
        parts = [
            np.arange(self._lo[e], self._nt[e]) * self._num_envs + e for e in range(self._num_envs)
        ]
        return np.concatenate(parts)

    def _read(self, key: tuple[str, ...], env: np.ndarray, slot: np.ndarray) -> torch.Tensor:
        arr = self._arrays[key]
        if arr is None:
            return self._leaves[key][torch.from_numpy(env), torch.from_numpy(slot)]
        return torch.from_numpy(arr[env, slot])

    def _gather(self, env: np.ndarray, a: np.ndarray) -> TensorDictBase:
        """Transitions number ``a`` (absolute) of envs ``env``, both int64 arrays."""
        T, B = self._T, env.shape[0]
        slot = a % T
        if self.n_step > 1:
            # Window j = 0..n-1 ends at the first done step or at the env's newest transition.
            js = np.arange(self.n_step)
            avail = self._nt[env] - a
            win = (slot[:, None] + js) % T
            e2 = env[:, None]
            done = self._arrays[("next", "terminated")][e2, win].reshape(B, self.n_step, -1).any(-1)
            done |= self._arrays[("next", "truncated")][e2, win].reshape(B, self.n_step, -1).any(-1)
            done_before = np.cumsum(done, axis=1) - done  # dones strictly before step j
            alive = (js[None] < avail[:, None]) & (done_before == 0)
            k = alive.sum(1)
            rewards = self._arrays[("next", "reward")][e2, win].astype(np.float64)
            shape = (B, self.n_step, *([1] * (rewards.ndim - 2)))
            # where, not a product: slots past the window may hold stale or unwritten (NaN) values.
            rewards = np.where(alive.reshape(shape), rewards, 0.0)
            coef = (self.gamma ** js.astype(np.float64)).reshape(1, *shape[1:])
            reward = (rewards * coef).sum(1)
            last = (slot + k - 1) % T
        else:
            k = np.ones(B, dtype=np.int64)
            last = slot
            reward = None
        out = TensorDict(batch_size=[B])
        for key in self._keys:
            out.set(key, self._read(key, env, last if key[0] == "next" else slot))
        reward_t = out.get(("next", "reward"))
        if reward is not None:
            reward_t = torch.from_numpy(reward).to(reward_t.dtype)
            out.set(("next", "reward"), reward_t)
        term = out.get(("next", "terminated"))
        ended = term.reshape(B, -1).any(-1).numpy()
        disc = np.where(ended, 0.0, self.gamma ** k.astype(np.float64)).astype(np.float32)
        disc = torch.from_numpy(disc).reshape(B, *([1] * (reward_t.ndim - 1)))
        out.set(("next", "discount"), disc.expand(reward_t.shape).clone())
        out.set(("next", "done"), term | out.get(("next", "truncated")))
        if self.frame_stack is not None:
            F, frames = self._F, self._frames_np
            e2 = env[:, None]
            p, s = self._ptr[env, slot], self._start[env, slot]
            pos = np.maximum(p[:, None] + self._stack_offsets, s[:, None]) % F
            out.set(self.frame_key, torch.from_numpy(frames[e2, pos]))
            p, s = self._ptr[env, last], self._start[env, last]
            pos = np.maximum(p[:, None] + 1 + self._stack_offsets, s[:, None]) % F
            out.set(self.next_frame_key, torch.from_numpy(frames[e2, pos]))
        out.set("index", torch.from_numpy(a * self._num_envs + env))
        out.set("weight", torch.ones(B, dtype=torch.float32))
        return out

    # ------------------------------------------------------------------ priorities

    def update_priorities(self, index: Any, td_errors: Any) -> None:
        """Set the priorities of sampled transitions from their TD errors.

        Ids of transitions no longer in the buffer (overwritten since sampling) are skipped.

        :param index: transition ids, the ``"index"`` entry of a sampled batch.
        :param td_errors: TD errors (any sign, tensor or array) of the same length; a tensor may
            require grad or live on another device.
        """
        if self.prioritized is None:
            raise RuntimeError("update_priorities needs a prioritized buffer (prioritized=...)")
        index = _to_numpy(index).astype(np.int64).reshape(-1)
        err = np.abs(_to_numpy(td_errors).astype(np.float64).reshape(-1))
        if err.shape != index.shape:
            raise ValueError(f"{index.size} indices but {err.size} td_errors")
        if not np.all(np.isfinite(err)):
            raise ValueError("td_errors contain NaN or inf")
        ok = self.valid(index)
        index, err = index[ok], err[ok]
        if index.size == 0:
            return
        index = (index % self._num_envs) * self._T + (index // self._num_envs) % self._T  # leaves
        if self.prioritized == "proportional":
            priority = (err + self.epsilon) ** self.alpha
            self._tree.update(index, priority)
            self._max_priority = max(self._max_priority, float(priority.max()))
            return
        self._err[index] = err
        self._updates_since_sort += 1
        if self._updates_since_sort >= self.rank_resort_interval or self._sorted_err.size == 0:
            self.resort()
        else:
            # Rank = 1 + number of snapshot errors strictly larger (binary search).
            larger = self._sorted_err.size - np.searchsorted(self._sorted_err, err, side="right")
            self._tree.update(index, (1.0 + larger) ** -self.alpha)

    def priorities(self, index: Any) -> np.ndarray:
        """Current sampling priorities (sum-tree units: ``(|delta| + epsilon) ** alpha`` or
        ``rank ** -alpha``) of live transitions.

        :param index: ids of live transitions.
        """
        if self.prioritized is None:
            raise RuntimeError("priorities needs a prioritized buffer (prioritized=...)")
        index = _to_numpy(index).astype(np.int64).reshape(-1)
        if not self.valid(index).all():
            raise IndexError("some transition ids are not in the buffer")
        return self._tree[(index % self._num_envs) * self._T + (index // self._num_envs) % self._T]

    def _live_mask(self) -> np.ndarray:
        nt, lo = self._nt[:, None], self._lo[:, None]
        a = nt - 1 - ((nt - 1 - np.arange(self._T)[None]) % self._T)
        return ((a >= lo) & (a >= 0)).reshape(-1)

    def resort(self) -> None:
        """Rank-based: recompute every live transition's rank from a full sort of ``|td_error|``.

        New transitions (never updated) rank first, as if they had the largest error.
        """
        if self.prioritized != "rank":
            raise RuntimeError("resort applies to prioritized='rank' buffers")
        if self._storage is None:
            return
        live = np.nonzero(self._live_mask())[0]
        err = self._err[live]
        order = np.argsort(-err, kind="stable")
        rank = np.empty(live.size, dtype=np.float64)
        rank[order] = np.arange(1, live.size + 1)
        priority = np.zeros(self._tree.capacity)
        priority[live] = rank**-self.alpha
        self._tree.set_all(priority)
        self._sorted_err = np.sort(err)
        self._updates_since_sort = 0

    # ------------------------------------------------------------------ size and checkpoints

    @property
    def nbytes(self) -> int:
        """Bytes held by the storage (transitions, frames, bookkeeping and priorities)."""
        if self._storage is None:
            return 0
        total = sum(t.numel() * t.element_size() for t in self._leaves.values())
        total += self._nt.nbytes + self._lo.nbytes
        if self.frame_stack is not None:
            total += self._frames.numel() * self._frames.element_size()
            total += self._ptr.nbytes + self._start.nbytes
            total += self._nf.nbytes + self._open.nbytes + self._cur_start.nbytes
        if self.prioritized is not None:
            total += self._tree.sum.nbytes + self._tree.min_.nbytes
            if self.prioritized == "rank":
                total += self._err.nbytes + self._sorted_err.nbytes
        return total

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume, as a nested dict of tensors (``torch.load(weights_only=True)``
        reads it back; nothing is pickled). Storage tensors are shared, not copied."""
        state: dict[str, Any] = {
            "config": torch.tensor(
                [self.capacity, self.n_step, self.frame_stack or 0, self._num_envs or 0],
                dtype=torch.int64,
            ),
            "sample_calls": torch.tensor(self._sample_calls, dtype=torch.int64),
            "beta_steps": torch.tensor(self.beta_steps, dtype=torch.int64),  # beta's schedule goes on
            "rng": torch.from_numpy(_pack_rng(self._rng)),
        }
        if self._storage is None:
            return state
        state["storage"] = {_key_name(k): v for k, v in self._leaves.items()}
        state["nt"] = torch.from_numpy(self._nt)
        state["lo"] = torch.from_numpy(self._lo)
        if self.frame_stack is not None:
            state["frames"] = self._frames
            for name in ("ptr", "start", "nf", "open", "cur_start"):
                state[name] = torch.from_numpy(getattr(self, "_" + name))
        if self.prioritized is not None:
            state["priority"] = torch.from_numpy(self._tree.state_dict()["priority"])
            state["max_priority"] = torch.tensor(self._max_priority, dtype=torch.float64)
            if self.prioritized == "rank":
                state["err"] = torch.from_numpy(self._err)
                state["updates_since_sort"] = torch.tensor(self._updates_since_sort)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` into a buffer built with the same settings.

        :param state: the dict :meth:`state_dict` returned (possibly after a save/load round trip).
        """
        cfg = [int(x) for x in state["config"].tolist()]
        mine = [self.capacity, self.n_step, self.frame_stack or 0]
        if cfg[:3] != mine:
            raise ValueError(
                f"replay state was saved with (capacity, n_step, frame_stack) = {tuple(cfg[:3])}, "
                f"this buffer has {tuple(mine)}"
            )
        self._sample_calls = int(state["sample_calls"])
        if "beta_steps" in state:
            self.beta_steps = int(state["beta_steps"])
        self._rng = _unpack_rng(state["rng"].numpy())
        if "storage" not in state:
            self._storage = None
            self._num_envs = cfg[3] or self._num_envs
            return
        self._num_envs = cfg[3]
        E, T = self._num_envs, self.capacity // self._num_envs
        self._T = T
        self._keys = [tuple(k.split("/")) for k in state["storage"]]
        self._storage = TensorDict(batch_size=[E, T])
        for k, name in zip(self._keys, state["storage"]):
            self._storage.set(k, state["storage"][name].clone())
        self._set_views()
        self._nt = state["nt"].numpy().copy()
        self._lo = state["lo"].numpy().copy()
        if self.frame_stack is not None:
            self._frames = state["frames"].clone()
            self._frames_np = _np_view(self._frames)
            self._F = self._frames.shape[1]
            for name in ("ptr", "start", "nf", "open", "cur_start"):
                setattr(self, "_" + name, state[name].numpy().copy())
            self._stack_offsets = np.arange(self.frame_stack, dtype=np.int64) - (self.frame_stack - 1)
        if self.prioritized is not None:
            self._tree = SumTree(E * T)
            self._tree.load_state_dict({"priority": state["priority"].numpy()})
            self._max_priority = float(state["max_priority"])
            if self.prioritized == "rank":
                self._err = state["err"].numpy().copy()
                self._sorted_err = np.sort(self._err[self._live_mask()])
                self._updates_since_sort = int(state["updates_since_sort"])

    def __repr__(self) -> str:
        parts = [f"capacity={self.capacity}", f"len={len(self)}", f"num_envs={self._num_envs}"]
        if self.n_step > 1:
            parts.append(f"n_step={self.n_step}, gamma={self.gamma}")
        if self.prioritized:
            parts.append(f"prioritized={self.prioritized!r}, alpha={self.alpha}, beta={self.beta:.3f}")
        if self.frame_stack:
            parts.append(f"frame_stack={self.frame_stack}, frame_key={self.frame_key!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


class PrioritizedReplayBuffer(ReplayBuffer):
    """:class:`ReplayBuffer` with ``prioritized="proportional"`` by default (same parameters)."""

    def __init__(self, capacity: int, *, prioritized: str = "proportional", **kwargs: Any) -> None:
        super().__init__(capacity, prioritized=prioritized, **kwargs)


_MASK64 = (1 << 64) - 1


def _pack_rng(rng: np.random.Generator) -> np.ndarray:
    """A PCG64 generator's state as 6 int64 (its 128-bit state and increment split in halves)."""
    st = rng.bit_generator.state
    if st["bit_generator"] != "PCG64":
        return np.zeros(0, dtype=np.int64)
    words = []
    for v in (st["state"]["state"], st["state"]["inc"]):
        words += [(v >> 64) & _MASK64, v & _MASK64]
    words += [st["has_uint32"], st["uinteger"]]
    return np.array(words, dtype=np.uint64).view(np.int64)


def _unpack_rng(words: np.ndarray) -> np.random.Generator:
    rng = np.random.default_rng()
    if words.size != 6:
        return rng
    w = [int(x) for x in words.astype(np.int64).view(np.uint64)]
    rng.bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {"state": (w[0] << 64) | w[1], "inc": (w[2] << 64) | w[3]},
        "has_uint32": w[4],
        "uinteger": w[5],
    }
    return rng


__all__: Sequence[str] = ["ReplayBuffer", "PrioritizedReplayBuffer"]
