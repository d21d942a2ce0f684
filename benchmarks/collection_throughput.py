"""Collection throughput: env steps/s with policy inference, rladapt's worker processes side by side
with gymnasium's AsyncVectorEnv and Stable-Baselines3's SubprocVecEnv (policy in the main process)
and ale-py's C++ AtariVectorEnv.

Usage::

    python benchmarks/collection_throughput.py [--envs pong cartpole] [--seconds 6] [--rounds 3]
        [--processes 1 2] [--envs-per-worker 4]

Every contender steps the same adapted env (``AutoAdapt(env_id, PPO)``: for Pong the standard Atari
pipeline, 4 stacked grayscale 84x84 frames; for CartPole the raw 4-vector) with the same policy, a
PPO agent's ``act_batch`` (Nature CNN for Pong, the 64x64 MLPs for CartPole, action sampling
included), and no learning. What is compared, at ``P`` processes stepping envs:

- ``rladapt workers=P``: :class:`rladapt.collect.WorkerCollector`, what ``learn(..., workers=P)``
  uses. Each worker process runs its own copy of the policy (1 torch thread) on its envs and writes
  rollouts (``n_steps`` x envs) into shared memory; the learner process only waits. Measured with
  1 env per worker (as many envs as the baselines) and with ``--envs-per-worker`` envs per worker.
  For Pong the workers step ale-py's C++ vector env with the pipeline's semantics (the fast path,
  on by default); ``fast_atari=False`` rows show the same with gymnasium vector envs of the Python
  chain.
- ``gymnasium AsyncVectorEnv(P)``: P env processes (one env each, shared-memory observations), the
  policy in the main process (1 torch thread; ``--main-threads P`` gives it one per env process,
  which helps on an idle machine and collapses on a loaded one, where OpenMP threads spin).
- ``SB3 SubprocVecEnv(P)``: the same with Stable-Baselines3's subprocess vector env.
- ``ale-py AtariVectorEnv(P * K envs, P threads), no policy`` (Pong): the C++ vector env alone,
  random actions, no inference: the env's own limit on P cores, the yardstick of collection with
  inference (``K``: ``--envs-per-worker``).
- ``ale-py AtariVectorEnv(P)`` (Pong): P envs on P C++ threads with the same preprocessing, the
  policy in the main process.

Each contender is built once; then ``--rounds`` rounds time every contender for ``--seconds`` in
turn (wall clock: parallelism is the point), rotating the order each round. The table shows the
median over the rounds; ratios are medians of per-round ratios. The machine's load average is
printed with each round: on a shared machine other processes take cores from whoever runs (and
with the kernel's autogroup scheduling, a whole session gets one share however many processes it
runs). Two columns do not depend on that load:

- steps per CPU-second: steps/s divided by the CPU time of all of a contender's processes and
  threads (this one included): the cost of a step;
- cores wanted: (CPU time + time spent runnable in the run queue) of all those threads, per wall
  second: how many cores the contender keeps busy when it has them, i.e. how parallel it is (a
  worker waiting for the learner, or a main process waiting for its env processes, is not
  runnable and does not count; under heavy load, run-queue waits of processes that hand work to
  each other can overlap, which inflates it for the main-process designs).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import statistics
import time
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
from tensordict import TensorDict

from rladapt import AutoAdapt
from rladapt.agents import PPO
from rladapt.collect import EnvSource, WorkerCollector, Workers

ENVS = {"pong": "ALE/Pong-v5", "cartpole": "CartPole-v1"}
N_STEPS = {"pong": 128, "cartpole": 32}


def make_agent(env_id: str) -> tuple[PPO, AutoAdapt]:
    agent = PPO(seed=0)
    env = AutoAdapt(env_id, agent)
    agent.setup(env.observation_space, env.action_space)
    return agent, env


class Contender:
    """Something that collects; :meth:`measure` returns env steps/s over ``seconds``."""

    name: str

    def measure(self, seconds: float) -> float:
        raise NotImplementedError

    def pids(self) -> list[int]:
        """The contender's processes besides this one (their CPU time counts too)."""
        return []

    def close(self) -> None:
        pass


class RladaptWorkers(Contender):
    def __init__(self, env_id: str, workers: int, envs_per_worker: int, n_steps: int, fast_atari: bool = True) -> None:
        agent, env = make_agent(env_id)
        self.agent, self.n_steps, self.num_envs = agent, n_steps, workers * envs_per_worker
        self.collector = WorkerCollector(agent, EnvSource(env, agent), self.num_envs, Workers(workers, fast_atari=fast_atari))
        self.collector.reset(seed=0)
        self.collector.collect(agent, n_steps)  # warm up
        path = "" if "ALE" not in env_id else ", C++ envs" if self.collector.fast_atari else ", gymnasium envs"
        self.name = f"rladapt workers={workers} ({envs_per_worker} env{'s' if envs_per_worker > 1 else ''} each{path})"

    def pids(self) -> list[int]:
        return [w.process.pid for w in self.collector.workers]

    def measure(self, seconds: float) -> float:
        start, steps = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            self.collector.collect(self.agent, self.n_steps)
            steps += self.n_steps * self.num_envs
        return steps / (time.perf_counter() - start)

    def close(self) -> None:
        self.collector.close()


class MainProcessPolicy(Contender):
    """A vector env stepped from this process, with the policy run here between steps."""

    def __init__(self, name: str, agent: PPO, envs: Any, num_envs: int, threads: int, sb3: bool = False) -> None:
        self.name, self.agent, self.envs, self.num_envs = name, agent, envs, num_envs
        self.threads, self.sb3 = threads, sb3
        self.obs = envs.reset() if sb3 else envs.reset(seed=0)[0]
        self.to_env = agent.env_action
        self.measure(0.5)  # warm up

    def measure(self, seconds: float) -> float:
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            start, steps = time.perf_counter(), 0
            obs, agent, envs, n = self.obs, self.agent, self.envs, self.num_envs
            with torch.inference_mode():
                while time.perf_counter() - start < seconds:
                    td = TensorDict({"observation": torch.from_numpy(np.asarray(obs))}, batch_size=[n])
                    agent.act_batch(td)
                    actions = self.to_env(td.get("action").numpy())
                    obs = envs.step(actions)[0]
                    steps += n
            self.obs = obs
            return steps / (time.perf_counter() - start)
        finally:
            torch.set_num_threads(previous)

    def pids(self) -> list[int]:
        processes = getattr(self.envs, "processes", [])  # gymnasium AsyncVectorEnv and SB3 SubprocVecEnv
        return [p.pid for p in processes]

    def close(self) -> None:
        self.envs.close()


class RawAtariVectorEnv(Contender):
    """ale-py's C++ vector env alone, stepped with random actions and no policy: the env's own
    limit on these cores, what collection with inference is held against."""

    def __init__(self, env_id: str, num_envs: int, threads: int) -> None:
        from rladapt.collect.atari import AtariPipelineVectorEnv, atari_fast_path

        _, env = make_agent(env_id)
        self.envs = AtariPipelineVectorEnv(num_envs, num_threads=threads, **atari_fast_path(env))
        self.envs.reset(seed=0)
        self.num_envs, self.actions = num_envs, np.random.default_rng(0)
        self.num_actions = int(env.action_space.n)
        self.name = f"ale-py AtariVectorEnv({num_envs} envs, {threads} threads), no policy (the env's limit)"
        self.measure(0.5)  # warm up

    def measure(self, seconds: float) -> float:
        start, steps = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            self.envs.step(self.actions.integers(self.num_actions, size=self.num_envs))
            steps += self.num_envs
        return steps / (time.perf_counter() - start)

    def close(self) -> None:
        self.envs.close()


def cpu_and_demand(pids: list[int]) -> tuple[float, float]:
    """``(seconds on a CPU, seconds on a CPU or waiting in the run queue)`` of every thread of this
    process and of ``pids`` (``/proc/<pid>/task/<tid>/schedstat``). The second, per wall second,
    is how many cores the contender would keep busy if it had them: load from other processes
    lengthens the run-queue wait, not the total."""
    cpu = demand = 0.0
    for pid in [os.getpid(), *pids]:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    on_cpu, waiting, _ = (int(x) for x in f.read().split())
                cpu += on_cpu / 1e9
                demand += (on_cpu + waiting) / 1e9
    return cpu, demand


def _make_adapted(env_id: str) -> gym.Env:
    return AutoAdapt(env_id, PPO)


def contenders(env: str, processes: list[int], envs_per_worker: int, threads: str) -> list[Callable[[], Contender]]:
    """Factories of every contender for ``env``. ``threads``: torch threads of the policy in the
    main process, ``"1"`` or ``"P"`` (as many as env processes)."""
    env_id, n_steps = ENVS[env], N_STEPS[env]

    def main_threads(p: int) -> int:
        return p if threads == "P" else 1

    out: list[Callable[[], Contender]] = []
    for p in processes:
        out.append(functools.partial(RladaptWorkers, env_id, p, 1, n_steps))
        if envs_per_worker > 1:
            out.append(functools.partial(RladaptWorkers, env_id, p, envs_per_worker, n_steps))
        if env == "pong":
            out.append(functools.partial(RladaptWorkers, env_id, p, envs_per_worker, n_steps, False))
    for p in processes:
        def async_vec(p: int = p) -> Contender:
            agent, env_ = make_agent(env_id)
            fns = [functools.partial(gym.make, env_.spec)] * p
            envs = gym.vector.AsyncVectorEnv(fns, shared_memory=True)
            return MainProcessPolicy(f"gymnasium AsyncVectorEnv({p}), policy in main", agent, envs, p, threads=main_threads(p))

        def subproc(p: int = p) -> Contender:
            from stable_baselines3.common.vec_env import SubprocVecEnv

            agent, env_ = make_agent(env_id)
            envs = SubprocVecEnv([functools.partial(gym.make, env_.spec)] * p, start_method="forkserver")
            return MainProcessPolicy(f"SB3 SubprocVecEnv({p}), policy in main", agent, envs, p, threads=main_threads(p), sb3=True)

        out += [async_vec, subproc]
        if env == "pong":
            def ale_vec(p: int = p) -> Contender:
                from rladapt.collect.atari import AtariPipelineVectorEnv, atari_fast_path

                agent, env_ = make_agent(env_id)
                envs = AtariPipelineVectorEnv(p, num_threads=p, **atari_fast_path(env_))
                return MainProcessPolicy(f"ale-py AtariVectorEnv({p} threads), policy in main", agent, envs, p,
                                         threads=main_threads(p))

            out.append(ale_vec)
            out.append(functools.partial(RawAtariVectorEnv, env_id, p * envs_per_worker, p))
    return out


def run(env: str, processes: list[int], envs_per_worker: int, seconds: float, rounds: int,
        threads: str) -> tuple[dict[str, list[float]], ...]:
    """Build every contender, then time them in rotating order; per contender and round: steps/s,
    steps per CPU-second, and the cores it kept busy or waiting for a core."""
    built = []
    for factory in contenders(env, processes, envs_per_worker, threads):
        contender = factory()
        print(f"  built: {contender.name}", flush=True)
        built.append(contender)
    results: dict[str, list[float]] = {c.name: [] for c in built}
    efficiency: dict[str, list[float]] = {c.name: [] for c in built}
    cores: dict[str, list[float]] = {c.name: [] for c in built}
    try:
        for r in range(rounds):
            order = built[r % len(built):] + built[: r % len(built)]
            for contender in order:
                pids = contender.pids()
                (cpu, demand), wall = cpu_and_demand(pids), time.perf_counter()
                rate = contender.measure(seconds)
                (cpu_end, demand_end), wall = cpu_and_demand(pids), time.perf_counter() - wall
                results[contender.name].append(rate)
                efficiency[contender.name].append(rate * wall / max(cpu_end - cpu, 1e-9))
                cores[contender.name].append((demand_end - demand) / wall)
            load = os.getloadavg()[0]
            print(f"  round {r + 1}/{rounds} (load average {load:.1f}): "
                  + ", ".join(f"{c.name.split(' (')[0].split(',')[0]}={results[c.name][-1]:,.0f}" for c in built), flush=True)
    finally:
        for contender in built:
            contender.close()
    return results, efficiency, cores


def ratio(results: dict[str, list[float]], a: str, b: str) -> float | None:
    if a not in results or b not in results:
        return None
    return statistics.median(x / y for x, y in zip(results[a], results[b]))


def report(env: str, results: dict[str, list[float]], efficiency: dict[str, list[float]], cores: dict[str, list[float]],
           processes: list[int], envs_per_worker: int) -> None:
    print(f"\n### {ENVS[env]}: env steps/s with policy inference (median of {len(next(iter(results.values())))} rounds)\n")
    print("| collector | steps/s | min-max | steps per CPU-second | cores wanted |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, values in results.items():
        per_cpu, wanted = statistics.median(efficiency[name]), statistics.median(cores[name])
        print(f"| {name} | {statistics.median(values):,.0f} | {min(values):,.0f}-{max(values):,.0f} "
              f"| {per_cpu:,.0f} | {wanted:.2f} |")
    print()
    path = ", C++ envs" if env == "pong" else ""

    def w(p: int, k: int, suffix: str = path) -> str:
        return f"rladapt workers={p} ({k} env{'s' if k > 1 else ''} each{suffix})"

    lines = []
    if 1 in processes and 2 in processes:
        for k in sorted({1, envs_per_worker}):
            lines.append((f"workers 2 vs 1 ({k} env{'s' if k > 1 else ''} each)", ratio(results, w(2, k), w(1, k))))
    for p in processes:
        for k in sorted({1, envs_per_worker}):
            for base in (f"gymnasium AsyncVectorEnv({p}), policy in main", f"SB3 SubprocVecEnv({p}), policy in main",
                         f"ale-py AtariVectorEnv({p} threads), policy in main"):
                value = ratio(results, w(p, k), base)
                if value is not None:
                    lines.append((f"{w(p, k)} / {base}", value))
    if env == "pong":  # collection with inference against the env alone on the same cores
        for p in processes:
            raw = f"ale-py AtariVectorEnv({p * envs_per_worker} envs, {p} threads), no policy (the env's limit)"
            lines.append((f"{w(p, envs_per_worker)} / {raw}", ratio(results, w(p, envs_per_worker), raw)))
    for label, value in lines:
        if value is not None:
            print(f"- {label}: **{value:.2f}x**")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", nargs="+", default=["pong", "cartpole"], choices=sorted(ENVS))
    parser.add_argument("--processes", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--envs-per-worker", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--main-threads", default="1", choices=["1", "P"],
                        help="torch threads of the policy in the main process: 1, or P (one per env process)")
    args = parser.parse_args()
    import ale_py

    gym.register_envs(ale_py)
    torch.set_num_threads(1)
    print(f"{os.cpu_count()} CPUs, torch {torch.__version__}, gymnasium {gym.__version__}, ale-py {ale_py.__version__}")
    for env in args.envs:
        print(f"\n## {ENVS[env]}")
        results, efficiency, cores = run(env, args.processes, args.envs_per_worker, args.seconds, args.rounds,
                                         args.main_threads)
        report(env, results, efficiency, cores, args.processes, args.envs_per_worker)


if __name__ == "__main__":
    main()
