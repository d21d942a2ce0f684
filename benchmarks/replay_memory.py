"""Replay memory for Atari-sized stacked frames: rladapt's frame-deduplicating ReplayBuffer against
Stable-Baselines3's ReplayBuffer with and without ``optimize_memory_usage``.

Each buffer is filled with the same synthetic stream of 8 envs: uint8 84x84 frames stacked by 4 with
gymnasium's ``FrameStackObservation`` semantics (the reset frame repeated at an episode start, newest
frame last), episodes of 500 to 1,500 steps (uniform), half ending by termination and half by
truncation. Frame contents do not change the byte counts. Then it reports:

- bytes per transition (the arrays each buffer allocates, divided by the transitions it holds) and
  the ratio to the bytes of the unique frames those transitions reference (each episode of L steps
  has L + 1 unique frames), measured at ``--size`` transitions and extrapolated linearly to 1M;
- resident memory growth while filling (``/proc/self/statm``), as a check on the array count;
- fill rate (transitions/s) and sampling throughput (batches of 32 per second, CPU tensors out).

Torch runs single-threaded here (``torch.set_num_threads(1)``) so that neither library's timing
depends on the thread pool of a shared machine.

Usage::

    python benchmarks/replay_memory.py                 # 100k transitions (needs ~6 GB free RAM)
    python benchmarks/replay_memory.py --size 20000    # smaller machines
"""

from __future__ import annotations

import argparse
import gc
import os
import time

import gymnasium as gym
import numpy as np
import torch
from tensordict import TensorDict

from rladapt.buffers import ReplayBuffer

FRAME = (84, 84)
STACK = 4
FRAME_BYTES = FRAME[0] * FRAME[1]
ONE_MILLION = 1_000_000


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Stream:
    """Vectorised stacked-frame stream, as a collector sees it (autoreset steps left out)."""

    def __init__(self, num_envs: int, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.pool = self.rng.integers(0, 256, (4096, *FRAME), dtype=np.uint8)
        self.n = num_envs
        self.stack = np.empty((num_envs, STACK, *FRAME), dtype=np.uint8)
        self.left = np.zeros(num_envs, dtype=np.int64)
        self.episode = np.zeros(num_envs, dtype=np.int64)
        self.t = np.zeros(num_envs, dtype=np.int64)
        for e in range(num_envs):
            self._reset(e)
        self.episode[:] = 0

    def _frame(self) -> np.ndarray:
        return self.pool[self.rng.integers(len(self.pool))]

    def _reset(self, e: int) -> None:
        self.stack[e] = self._frame()  # FrameStackObservation(padding_type="reset")
        self.left[e] = self.rng.integers(500, 1501)
        self.episode[e] += 1
        self.t[e] = 0

    def step(self):
        obs = self.stack.copy()
        nxt = np.empty_like(obs)
        nxt[:, :-1] = obs[:, 1:]
        for e in range(self.n):
            nxt[e, -1] = self._frame()
        self.left -= 1
        end = self.left == 0
        term = end & (self.rng.random(self.n) < 0.5)
        trunc = end & ~term
        action = self.rng.integers(0, 6, self.n)
        reward = self.rng.standard_normal(self.n).astype(np.float32)
        ids = (self.episode.copy(), self.t.copy())
        self.stack = nxt.copy()
        self.t += 1
        for e in np.nonzero(end)[0]:
            self._reset(e)
        return obs, action, nxt, reward, term, trunc, ids


def unique_frames(envs, episodes, ts) -> int:
    """Frames the transitions reference, by identity (env, episode, frame number)."""
    seen = set()
    for e, ep, t in zip(envs, episodes, ts):
        for f in range(max(0, t - STACK + 1), t + 2):
            seen.add((e, ep, f))
    return len(seen)


def fill_rladapt(size: int, num_envs: int, **kw):
    rb = ReplayBuffer(size, frame_stack=kw.pop("frame_stack", None), seed=0, **kw)
    stream = Stream(num_envs)
    steps = size // num_envs
    before = rss()
    t0 = time.perf_counter()
    for _ in range(steps):
        obs, action, nxt, reward, term, trunc, (ep, t) = stream.step()
        td = TensorDict(
            {
                "observation": torch.from_numpy(obs),
                "action": torch.from_numpy(action),
                "episode": torch.from_numpy(ep),
                "t": torch.from_numpy(t),
                "next": {
                    "observation": torch.from_numpy(nxt),
                    "reward": torch.from_numpy(reward),
                    "terminated": torch.from_numpy(term),
                    "truncated": torch.from_numpy(trunc),
                },
            },
            batch_size=[num_envs],
        )
        rb.extend(td)
    fill_s = time.perf_counter() - t0
    grown = rss() - before
    live = rb.get(rb.indices())
    # the episode/t bookkeeping keys are benchmark-only: leave their bytes out
    extra = 2 * 8 * rb.capacity
    uniq = unique_frames(
        (live["index"] % num_envs).tolist(), live["episode"].tolist(), live["t"].tolist()
    )
    return rb, dict(
        held=len(rb), nbytes=rb.nbytes - extra, rss=grown, fill=len(rb) / fill_s, unique=uniq
    )


def fill_sb3(size: int, num_envs: int, optimize: bool):
    from stable_baselines3.common.buffers import ReplayBuffer as SB3ReplayBuffer

    obs_space = gym.spaces.Box(0, 255, (STACK, *FRAME), np.uint8)
    before = rss()
    rb = SB3ReplayBuffer(
        size, obs_space, gym.spaces.Discrete(6), device="cpu", n_envs=num_envs,
        optimize_memory_usage=optimize, handle_timeout_termination=not optimize,
    )
    stream = Stream(num_envs)
    steps = size // num_envs
    t0 = time.perf_counter()
    for _ in range(steps):
        obs, action, nxt, reward, term, trunc, _ = stream.step()
        infos = [{"TimeLimit.truncated": bool(x)} for x in trunc]
        rb.add(obs, nxt, action, reward, term | trunc, infos)
    fill_s = time.perf_counter() - t0
    grown = rss() - before
    arrays = [rb.observations, rb.actions, rb.rewards, rb.dones, rb.timeouts]
    if not optimize:
        arrays.append(rb.next_observations)
    held = rb.buffer_size * num_envs
    # SB3 keeps every frame of every stack; its unique frames are those of the same stream
    return rb, dict(held=held, nbytes=sum(a.nbytes for a in arrays), rss=grown, fill=held / fill_s)


def throughput(sample, seconds: float = 2.0) -> float:
    for _ in range(20):
        sample()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(50):
            sample()
        n += 50
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=100_000, help="transitions per buffer")
    parser.add_argument("--envs", type=int, default=8, help="envs writing interleaved")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per throughput figure")
    parser.add_argument("--skip-naive", action="store_true", help="skip the 8-frames-per-step buffers")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    unique_per_transition = None

    def report(name, rb, info, sample):
        nonlocal unique_per_transition
        if "unique" in info:
            unique_per_transition = info["unique"] * FRAME_BYTES / info["held"]
        bpt = info["nbytes"] / info["held"]
        rows.append((name, info["held"], bpt, info["rss"] / info["held"], info["fill"],
                     throughput(sample, args.seconds)))
        print(f"  done: {name}", flush=True)

    print(f"filling buffers of {args.size:,} transitions from {args.envs} envs ...", flush=True)
    rb, info = fill_rladapt(args.size, args.envs, frame_stack=STACK)
    report("rladapt frame_stack=4", rb, info, lambda: rb.sample(32))
    del rb
    gc.collect()
    rb, info = fill_rladapt(args.size, args.envs, frame_stack=STACK, prioritized="proportional")
    report("rladapt frame_stack=4, prioritized", rb, info, lambda: rb.sample(32))
    del rb
    gc.collect()
    rb, info = fill_sb3(args.size, args.envs, optimize=True)
    report("SB3 optimize_memory_usage=True", rb, info, lambda: rb.sample(32))
    del rb
    gc.collect()
    if not args.skip_naive:
        rb, info = fill_sb3(args.size, args.envs, optimize=False)
        report("SB3 optimize_memory_usage=False", rb, info, lambda: rb.sample(32))
        del rb
        gc.collect()
        rb, info = fill_rladapt(args.size, args.envs)
        report("rladapt (no dedup)", rb, info, lambda: rb.sample(32))
        del rb
        gc.collect()

    u = unique_per_transition
    print()
    print(f"unique frame bytes per transition: {u:,.0f} (84x84 uint8 = {FRAME_BYTES} per frame)")
    print(f"{'buffer':36} {'bytes/transition':>16} {'x unique':>9} {'RSS/transition':>15} "
          f"{'GB at 1M (linear)':>18} {'fill trans/s':>13} {'batches32/s':>12}")
    for name, held, bpt, rss_pt, fill, tput in rows:
        print(f"{name:36} {bpt:16,.0f} {bpt / u:9.2f} {rss_pt:15,.0f} {bpt * ONE_MILLION / 1e9:18.2f} "
              f"{fill:13,.0f} {tput:12,.0f}")
    # The dedup buffer's 1M allocation, computed exactly (pages are committed only when written).
    big = ReplayBuffer(ONE_MILLION, frame_stack=STACK)
    z = torch.zeros(1, STACK, *FRAME, dtype=torch.uint8)
    f = torch.zeros(1, dtype=torch.bool)
    big.extend(TensorDict({"observation": z, "action": torch.zeros(1, dtype=torch.int64),
                           "next": {"observation": z, "reward": torch.zeros(1), "terminated": f,
                                    "truncated": f}}, batch_size=[1]))
    print(f"\nrladapt frame_stack=4 at capacity 1M (1 env, exact allocation): {big.nbytes / 1e9:.2f} GB "
          f"= {big.nbytes / (ONE_MILLION * u):.3f} x the unique frames of 1M transitions of this stream")


if __name__ == "__main__":
    main()
