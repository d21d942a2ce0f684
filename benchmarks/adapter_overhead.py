"""Adapter overhead: env steps/s of AutoAdapt's chains next to raw gymnasium and SB3's Atari pipeline.

Usage::

    python benchmarks/adapter_overhead.py [--steps N] [--atari-steps M] [--repeats R] [--clock cpu|wall] [--profile]

Random policy, one env, no learning: only the env and its wrappers are timed. Every comparison runs
its two sides in the same process, alternating (A, B, then B, A, ...) so that load from other
processes hits both alike; the table shows medians over the repeats and the ratio is the median of
the per-repeat ratios (adapted / reference). Runs are timed by this process's CPU time by default
(``--clock wall`` for wall time): on a shared machine, time spent in other processes then does not
count against whichever side happened to be running.

1. CartPole-v1: ``gym.make("CartPole-v1")`` vs ``AutoAdapt("CartPole-v1", PPO spec)``, the same
   pre-generated action sequence and seed, reset on done (target: >= 0.85x).
2. Taxi-v4 with masks: raw Taxi, choosing a random valid action from its own int8
   ``info["action_mask"]``, vs AutoAdapt for a tabular agent (Discrete index obs) and for a vector
   agent (one-hot obs), choosing from the normalised bool ``info["action_mask"]``; the same
   pre-generated uniforms pick among the valid actions, so both sides play the same episodes.
3. ALE/Pong-v5 (``frameskip=1``, the v5 default sticky actions in both): AutoAdapt's Atari pipeline
   (AtariPreprocessing, ClipReward, FrameStackObservation(4)) vs Stable-Baselines3's
   ``make_atari_env`` chain (Monitor + AtariWrapper, ``terminal_on_life_loss=False`` to match) with
   frame stack 4 (target: >= 1.0x). Agent steps are counted (each is 4 frames), in two forms:
   - ``vec(1)``: gymnasium ``SyncVectorEnv`` of one AutoAdapt env (``autoreset_mode=SAME_STEP``, as
     SB3 resets) vs SB3 ``DummyVecEnv`` of one env + ``VecFrameStack(4)``;
   - ``single``: the AutoAdapt env itself vs SB3's AtariWrapper + Monitor stacked with gymnasium's
     ``FrameStackObservation(4)`` (SB3 stacks frames only on vector envs).

When a target is missed (or with ``--profile``) the adapted chain is profiled: the approximate own
cost of each wrapper in microseconds per agent step (each layer's ``step`` timed, minus the layer
inside it), then the top functions of a cProfile run.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from rladapt import AgentSpec, AutoAdapt

#: What PPO will declare.
PPO_SPEC = AgentSpec(observations={"vector", "image", "nested"}, actions={"discrete", "multi_discrete", "continuous"}, masks=True)
#: A tabular agent using masks (one state index).
TABULAR_SPEC = AgentSpec(observations={"index"}, actions={"discrete"}, masks=True)
#: A vector agent using masks (Taxi's Discrete(500) becomes one-hot float32[500]).
VECTOR_SPEC = AgentSpec(observations={"vector"}, actions={"discrete"}, masks=True)
#: A pixel agent: Atari gets the standard pipeline with a stack of 4.
IMAGE_SPEC = AgentSpec(observations={"image"}, actions={"discrete"}, frame_stack=4)

SEED = 0

# --------------------------------------------------------------------------------------------
# Loops. Each returns (steps/s, checksum); both sides of a comparison run the same loop.

#: The clock the loops time with: ``time.process_time`` (this process's CPU time; the default, as
#: other processes on a shared machine then do not count) or ``time.perf_counter`` (wall time).
clock: Callable[[], float] = time.process_time


def loop_actions(env: gym.Env, actions: list[int]) -> tuple[float, tuple[int, float]]:
    """Step ``env`` through a fixed action sequence, resetting on done."""
    step, reset = env.step, env.reset
    reset(seed=SEED)
    episodes, total = 0, 0.0
    start = clock()
    for action in actions:
        _, reward, terminated, truncated, _ = step(action)
        total += reward
        if terminated or truncated:
            episodes += 1
            reset()
    elapsed = clock() - start
    return len(actions) / elapsed, (episodes, float(total))


def loop_masked(env: gym.Env, uniforms: list[float]) -> tuple[float, tuple[int, float]]:
    """Step ``env`` with a random valid action read from ``info["action_mask"]`` each step."""
    step, reset, flatnonzero = env.step, env.reset, np.flatnonzero
    _, info = reset(seed=SEED)
    episodes, total = 0, 0.0
    start = clock()
    for u in uniforms:
        valid = flatnonzero(info["action_mask"])
        _, reward, terminated, truncated, info = step(int(valid[int(u * len(valid))]))
        total += reward
        if terminated or truncated:
            episodes += 1
            _, info = reset()
    elapsed = clock() - start
    return len(uniforms) / elapsed, (episodes, float(total))


def loop_gym_vector(envs: gym.vector.VectorEnv, actions: np.ndarray) -> tuple[float, tuple[int, float]]:
    """A gymnasium vector env (it autoresets) through a fixed sequence of action batches."""
    step = envs.step
    envs.reset(seed=SEED)
    episodes, total = 0, 0.0
    start = clock()
    for batch in actions:
        _, reward, terminated, truncated, _ = step(batch)
        total += float(reward[0])
        episodes += int(terminated[0] or truncated[0])
    elapsed = clock() - start
    return len(actions) / elapsed, (episodes, total)


def loop_sb3_vector(venv: Any, actions: np.ndarray) -> tuple[float, tuple[int, float]]:
    """An SB3 VecEnv (it autoresets) through a fixed sequence of action batches."""
    step = venv.step
    venv.seed(SEED)
    venv.reset()
    episodes, total = 0, 0.0
    start = clock()
    for batch in actions:
        _, reward, done, _ = step(batch)
        total += float(reward[0])
        episodes += int(done[0])
    elapsed = clock() - start
    return len(actions) / elapsed, (episodes, total)


# --------------------------------------------------------------------------------------------
# Comparisons.


@dataclass
class Side:
    label: str
    make: Callable[[], Any]
    loop: Callable[[Any, Any], tuple[float, Any]]
    env: Any = None
    rates: list[float] = field(default_factory=list)
    checksum: Any = None


@dataclass
class Comparison:
    name: str
    reference: Side
    adapted: Side
    inputs: Any
    warmup: Any
    target: float | None
    same_trajectory: bool  # both sides play the same episodes: their checksums must agree
    ratios: list[float] = field(default_factory=list)

    def run(self, repeats: int) -> None:
        for side in (self.reference, self.adapted):
            side.env = side.make()
            side.loop(side.env, self.warmup)
        for i in range(repeats):
            order = (self.reference, self.adapted) if i % 2 == 0 else (self.adapted, self.reference)
            for side in order:
                rate, side.checksum = side.loop(side.env, self.inputs)
                side.rates.append(rate)
            self.ratios.append(self.adapted.rates[-1] / self.reference.rates[-1])
        if self.same_trajectory and self.reference.checksum != self.adapted.checksum:
            raise AssertionError(
                f"{self.name}: the two sides did not play the same episodes "
                f"(episodes, return: {self.reference.checksum} vs {self.adapted.checksum})"
            )

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def passed(self) -> bool | None:
        return None if self.target is None else self.ratio >= self.target

    def close(self) -> None:
        for side in (self.reference, self.adapted):
            if side.env is not None:
                side.env.close()


def build_comparisons(steps: int, atari_steps: int, only: set[str] | None) -> list[Comparison]:
    import ale_py
    from gymnasium.vector import AutoresetMode, SyncVectorEnv

    gym.register_envs(ale_py)
    rng = np.random.default_rng(SEED)
    cartpole_actions = rng.integers(2, size=steps).tolist()
    uniforms = rng.random(steps).tolist()
    pong_actions = rng.integers(6, size=atari_steps).tolist()
    pong_batches = np.asarray(pong_actions, dtype=np.int64).reshape(-1, 1)
    warm = max(steps // 20, 100)
    atari_warm = max(atari_steps // 20, 50)

    def sb3_atari_single() -> gym.Env:
        from stable_baselines3.common.atari_wrappers import AtariWrapper
        from stable_baselines3.common.monitor import Monitor

        env = AtariWrapper(Monitor(gym.make("ALE/Pong-v5", frameskip=1)), terminal_on_life_loss=False)
        return gym.wrappers.FrameStackObservation(env, stack_size=4)

    def sb3_atari_vec() -> Any:
        from stable_baselines3.common.env_util import make_atari_env
        from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack

        venv = make_atari_env(
            "ALE/Pong-v5", n_envs=1, seed=SEED, env_kwargs={"frameskip": 1},
            wrapper_kwargs={"terminal_on_life_loss": False}, vec_env_cls=DummyVecEnv,
        )
        return VecFrameStack(venv, n_stack=4)

    def rladapt_atari_vec() -> gym.vector.VectorEnv:
        return SyncVectorEnv([lambda: AutoAdapt("ALE/Pong-v5", IMAGE_SPEC)], autoreset_mode=AutoresetMode.SAME_STEP)

    comparisons = [
        Comparison(
            "CartPole-v1",
            Side("gym.make", lambda: gym.make("CartPole-v1"), loop_actions),
            Side("AutoAdapt(PPO spec)", lambda: AutoAdapt("CartPole-v1", PPO_SPEC), loop_actions),
            cartpole_actions, cartpole_actions[:warm], 0.85, True,
        ),
        Comparison(
            "Taxi-v4 masked, index obs",
            Side("gym.make", lambda: gym.make("Taxi-v4"), loop_masked),
            Side("AutoAdapt(tabular spec)", lambda: AutoAdapt("Taxi-v4", TABULAR_SPEC), loop_masked),
            uniforms, uniforms[:warm], None, True,
        ),
        Comparison(
            "Taxi-v4 masked, one-hot obs",
            Side("gym.make", lambda: gym.make("Taxi-v4"), loop_masked),
            Side("AutoAdapt(vector spec)", lambda: AutoAdapt("Taxi-v4", VECTOR_SPEC), loop_masked),
            uniforms, uniforms[:warm], None, True,
        ),
        Comparison(
            "ALE/Pong-v5 vec(1)",
            Side("SB3 AtariWrapper+VecFrameStack", sb3_atari_vec, loop_sb3_vector),
            Side("SyncVectorEnv(AutoAdapt)", rladapt_atari_vec, loop_gym_vector),
            pong_batches, pong_batches[:atari_warm], 1.0, False,
        ),
        Comparison(
            "ALE/Pong-v5 single",
            Side("SB3 AtariWrapper+FrameStackObs", sb3_atari_single, loop_actions),
            Side("AutoAdapt(image spec)", lambda: AutoAdapt("ALE/Pong-v5", IMAGE_SPEC), loop_actions),
            pong_actions, pong_actions[:atari_warm], 1.0, False,
        ),
    ]
    if only:
        comparisons = [c for c in comparisons if any(key.lower() in c.name.lower() for key in only)]
    return comparisons


# --------------------------------------------------------------------------------------------
# Profiling the adapted chain.


def _adapted_env(comparison: Comparison) -> gym.Env:
    env = comparison.adapted.env
    return env.envs[0] if isinstance(env, gym.vector.SyncVectorEnv) else env


def _describe_chain(env: Any) -> str:
    """A reference env as its chain of wrappers (an SB3 VecEnv: its wrappers, then its one env's)."""
    outer = []
    while hasattr(env, "venv"):
        outer.append(type(env).__name__)
        env = env.venv
    if hasattr(env, "envs"):
        return "<".join(outer + [type(env).__name__]) + f"[{env.envs[0]}]"
    return str(env)


def _layers(env: gym.Env) -> list[gym.Env]:
    """The chain, outermost first, without AutoAdapt's own object (it forwards step unchanged)."""
    if isinstance(env, AutoAdapt):
        env = env.env
    layers = [env]
    while isinstance(env, gym.Wrapper):
        env = env.env
        layers.append(env)
    return layers


def _timer_overhead() -> float:
    """Seconds a timed call adds around a trivial call, to subtract from the per-layer figures."""
    def noop(action: Any) -> Any:
        return action

    totals = [0.0]

    def timed(action: Any) -> Any:
        t = time.perf_counter()
        out = noop(action)
        totals[0] += time.perf_counter() - t
        return out

    n = 200_000
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for i in range(n):
            noop(i)
        plain = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(n):
            timed(i)
        best = min(best, (time.perf_counter() - start - plain) / n)
    return best


def layer_costs(make: Callable[[], Any], loop: Callable[[Any, Any], Any], inputs: Any, runs: int = 3) -> list[tuple[str, float, float]]:
    """(layer, own microseconds per agent step, calls per agent step), outermost first, medians of
    ``runs`` runs. A vector env's own cost (batching, autoreset, infos) shows as its first row,
    with the loop's. Wall time: the per-layer timers read ``perf_counter``."""
    global clock
    env = make()
    root = env.envs[0] if hasattr(env, "envs") else env  # gymnasium or SB3 vector env: its one env
    layers = _layers(root)
    inclusive = [0.0] * len(layers)
    calls = [0] * len(layers)
    for index, layer in enumerate(layers):
        original = layer.step

        def timed(action: Any, _original: Callable = original, _index: int = index) -> Any:
            calls[_index] += 1
            t = time.perf_counter()
            out = _original(action)
            inclusive[_index] += time.perf_counter() - t
            return out

        layer.step = timed  # instance attribute: the outer layer's ``self.env.step`` finds it
    if isinstance(root, AutoAdapt):
        root.step = layers[0].step  # AutoAdapt forwards to the (now timed) outermost layer
    overhead = _timer_overhead()
    n = len(inputs)
    per_run: list[list[float]] = []
    saved, clock = clock, time.perf_counter
    try:
        for _ in range(runs):
            inclusive[:] = [0.0] * len(layers)
            calls[:] = [0] * len(layers)
            rate, _ = loop(env, inputs)
            own = []
            if env is not root:
                own.append(n / rate - inclusive[0] - calls[0] * overhead)
            for index in range(len(layers)):
                inner = inclusive[index + 1] + calls[index + 1] * overhead if index + 1 < len(layers) else 0.0
                own.append(inclusive[index] - inner)
            per_run.append(own)
    finally:
        clock = saved
    env.close()
    names = [type(env).__name__ + " + loop"] if env is not root else []
    names += [type(layer).__name__ if isinstance(layer, gym.Wrapper) else f"{type(layer).__name__} (base env)" for layer in layers]
    counts = ([1.0] if env is not root else []) + [c / n for c in calls]
    return [
        (name, 1e6 * max(statistics.median(column), 0.0) / n, count)
        for name, column, count in zip(names, zip(*per_run), counts)
    ]


def cprofile_top(make: Callable[[], gym.Env], loop: Callable[[Any, Any], Any], inputs: Any, top: int = 14) -> str:
    env = make()
    profiler = cProfile.Profile()
    profiler.enable()
    loop(env, inputs)
    profiler.disable()
    env.close()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("tottime").print_stats(top)
    lines = out.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if "ncalls" in line)
    return "\n".join(lines[start:])


def profile(comparison: Comparison, inputs: Any) -> None:
    print(f"\n--- profile: {comparison.name} ({len(inputs)} agent steps) ---")
    print("own cost of each layer in microseconds per agent step (approximate: each layer's step timed,")
    print("minus the layer inside it; '+' marks the adapted chain's layers that the reference lacks)")
    reference = layer_costs(comparison.reference.make, comparison.reference.loop, inputs)
    adapted = layer_costs(comparison.adapted.make, comparison.adapted.loop, inputs)
    names = {name for name, _, _ in reference}
    for label, rows in ((comparison.reference.label, reference), (comparison.adapted.label, adapted)):
        total = sum(micros for _, micros, _ in rows)
        print(f"  {label} (sum {total:.1f} us):")
        for name, micros, calls in rows:
            mark = "+" if rows is adapted and name not in names else " "
            print(f"    {mark} {name:<30} {micros:8.2f} us   ({calls:.2f} calls/step)")
    print(f"cProfile of {comparison.adapted.label}, top functions by own time:")
    print(cprofile_top(comparison.adapted.make, comparison.adapted.loop, inputs))


# --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20_000, help="env steps per timed run, CartPole and Taxi (default 20000)")
    parser.add_argument("--atari-steps", type=int, default=1_000, help="agent steps per timed run, Pong (default 1000)")
    parser.add_argument("--repeats", type=int, default=11, help="timed runs of each side, interleaved (default 11)")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="time with this process's CPU time (default; other processes do not count) or wall time")
    parser.add_argument("--profile", action="store_true", help="profile every adapted chain, not only those missing a target")
    parser.add_argument("--only", nargs="*", help="run only the comparisons whose name contains one of these")
    args = parser.parse_args()
    global clock
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    started = time.perf_counter()
    comparisons = build_comparisons(args.steps, args.atari_steps, set(args.only) if args.only else None)
    for comparison in comparisons:
        comparison.run(args.repeats)
        print(f"\n=== {comparison.name}: plan of {comparison.adapted.label} ===")
        print(_adapted_env(comparison).plan)
        print(f"reference chain: {_describe_chain(comparison.reference.env)}")

    header = f"{'env':<28} {'reference':<31} {'ref steps/s':>11} {'adapted steps/s':>15} {'ratio':>6} {'(min-max)':>11} {'target':>7}  result"
    print(
        f"\nsteps/s by {'CPU' if args.clock == 'cpu' else 'wall'} time, medians of {args.repeats} interleaved repeats; "
        f"ratio = median of the per-repeat ratios adapted/reference\n"
    )
    print(header)
    print("-" * len(header))
    for c in comparisons:
        target = "-" if c.target is None else f">={c.target:.2f}"
        result = {None: "-", True: "pass", False: "FAIL"}[c.passed]
        print(
            f"{c.name:<28} {c.reference.label:<31} {statistics.median(c.reference.rates):11,.0f} "
            f"{statistics.median(c.adapted.rates):15,.0f} {c.ratio:6.3f} {f'{min(c.ratios):.2f}-{max(c.ratios):.2f}':>11} {target:>7}  {result}"
        )

    for c in comparisons:
        if args.profile or c.passed is False:
            profile(c, c.inputs)
        c.close()
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
