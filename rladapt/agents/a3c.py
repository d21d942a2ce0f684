"""A3C (Mnih et al. 2016, asynchronous advantage actor-critic): every worker process learns.

The global actor-critic lives in shared memory (its one flat parameter tensor, ``share_memory_``),
and so do the statistics of its optimiser (shared Adam or RMSprop). Each of the ``N`` worker
processes of ``learn(env, steps, workers=N)`` steps its own share of the envs (the same worker
processes, :class:`~rladapt.collect.remote.EnvRunner` and restart logic as every collector,
:mod:`rladapt.collect.workers`) with a local copy of the network, and loops::

    local weights <- shared weights                      (pull; note the shared update count)
    collect n_steps (5) vector steps with the local copy
    advantages: n-step returns bootstrapped from V      (OnPolicyAgent.store, as A2C)
    loss = -(A * log pi) + vf_coef * (R - V)^2 / 2 - ent_coef * entropy  (A2C's actor_critic_loss)
    its gradient on the local copy (actor_critic_gradient), clipped
    if the shared weights moved more than max_update_lag updates since the pull: drop it (counted)
    else: shared optimiser step with that gradient       (Hogwild: no lock; lock=True: one at a time)

The learner process does what it does for every agent: counters, log rows, progress bar,
callbacks, evaluation and checkpoints of the shared weights (its agent's ``policy`` *is* the
shared network). Its ``update`` is never called: the updates happen in the workers. Each worker's
applied updates (``a3c/applied_updates_<i>``), the dropped stale gradients (``a3c/dropped_stale``),
the lag of the applied ones (``collect/policy_lag``) and the workers' losses are in the log rows.
A worker killed mid-run is restarted (``collect/worker_restarts``), with a lock it held released.
``agent.evaluate`` during a run (a callback's) first pauses the workers until the next collect
(:meth:`A3CCollector.pause`), so the policy it plays is the one a stopped run keeps.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from rladapt.agents.on_policy import (
    ACTOR_CRITIC_SPEC, ActorCriticConfig, OnPolicyAgent, actor_critic_gradient, actor_critic_optimizer, default_kind,
)
from rladapt import train
from rladapt.agents.optim import adam_step, set_lr, share_optimizer
from rladapt.collect import WorkerCollector, Workers
from rladapt.protocols import CollectingAgent
from rladapt.spec import AgentSpec

__all__ = ["A3C", "A3CConfig", "A3C_DEFAULTS"]

#: Per-kind defaults for settings left at None. Vector observations: 12-step returns and a shared
#: Adam at 1e-3 (CartPole-v1, 2 workers, tuning seeds 0-39: median time to 475 0.49 s against
#: 0.72 s for the paper's 5 steps at 7e-4, 40/40 solved against 39/40; a longer rollout is fewer
#: gradient pushes per env step, 1.4x the throughput; Acrobot-v1 at 100k steps, seeds 0-7: -185
#: against -347). Images: the paper's 5-step returns and shared RMSprop. ``num_envs`` is over all workers.
A3C_DEFAULTS: dict[str, dict[str, Any]] = {
    "vector": dict(num_envs=8, n_steps=12, lr=1e-3, gamma=0.99, gae_lambda=1.0, ent_coef=0.01,
                   normalize_rewards=False, rms_prop=False),
    "image": dict(num_envs=16, n_steps=5, lr=7e-4, gamma=0.99, gae_lambda=1.0, ent_coef=0.01,
                  normalize_rewards=False, rms_prop=True),
    "continuous": dict(num_envs=8, n_steps=8, lr=7e-4, gamma=0.95, gae_lambda=0.9, ent_coef=0.0,
                       normalize_rewards=True, rms_prop=False, noise_beta=0.0),
    "box2d": dict(num_envs=8, n_steps=5, lr=8.3e-4, gamma=0.995, gae_lambda=1.0, ent_coef=1e-5,
                  normalize_rewards=False, rms_prop=False),
}

#: Seconds between a worker's progress reports to the learner (steps, episodes, losses).
REPORT_INTERVAL = 0.02


@dataclass
class A3CConfig(ActorCriticConfig):
    """A3C settings: the actor-critics' (:class:`~rladapt.agents.on_policy.ActorCriticConfig`:
    ``lr`` (the shared optimiser's), ``ent_coef``, ``vf_coef`` (1.0 here: SB3's ``vf_coef=0.5`` on
    the plain MSE, its A2C default), ``max_grad_norm`` (of each worker's gradient), ``anneal_lr``,
    ``hidden``, ``network``) and A3C's own. None means "the default for this kind of env" (see
    ``A3C_DEFAULTS``). ``n_steps`` is the length of each worker's rollout between gradient pushes
    (the paper's t_max).

    :param normalize_advantage: standardise advantages over each worker's rollout.
    :param rms_prop: shared RMSprop (alpha 0.99, eps 1e-5, as in the paper); False: shared Adam.
    :param lock: apply the workers' gradients one at a time (a lock around the optimiser step);
        False: Hogwild, lock-free (the paper's default).
    :param max_update_lag: drop a worker's gradient when the shared weights took more than this
        many updates between the worker's pull and its push (counted in ``a3c/dropped_stale``);
        None: never drop.
    """

    vf_coef: float = 1.0
    normalize_advantage: bool = False
    rms_prop: bool | None = None
    lock: bool = False
    max_update_lag: int | None = 32


class A3CRole:
    """What every A3C worker process runs (the ``role`` of a :class:`~rladapt.collect.workers.WorkerCollector`):
    the shared parameters, the shared optimiser, the counters, and the worker loop.

    :param agent: the learner's agent, built (its parameters and optimiser state are moved to
        shared memory here).
    :param workers: worker processes.
    :param lock: a lock of the workers' start method, or None (Hogwild).
    """

    def __init__(self, agent: "A3C", workers: int, lock: Any = None) -> None:
        self.param = agent.params.param
        self.optimizer = share_optimizer(agent.optimizer)
        self.lock = lock
        self.max_update_lag = agent.hp.max_update_lag
        #: Shared counters: updates applied to the shared weights (all workers; Hogwild: approximate).
        self.version = torch.zeros(1, dtype=torch.int64).share_memory_()
        #: Per worker: gradients applied and dropped as stale (exact: one writer each).
        self.applied = torch.zeros(workers, dtype=torch.int64).share_memory_()
        self.dropped = torch.zeros(workers, dtype=torch.int64).share_memory_()
        #: The worker holding the lock (-1: none), so that a killed holder's lock can be released.
        self.holder = torch.full((1,), -1, dtype=torch.int64).share_memory_()
        #: The learner's ``[num_timesteps, progress]`` (schedules, as the workers' agents read them).
        self.meta = torch.zeros(2, dtype=torch.float64).share_memory_()
        #: 1 while the learner evaluates: each worker finishes its rollout and push, then waits.
        self.paused = torch.zeros(1, dtype=torch.int64).share_memory_()
        #: Per worker: 1 once it waits at the pause (it neither reads nor writes the shared weights).
        self.parked = torch.zeros(workers, dtype=torch.int64).share_memory_()

    def release_lock_of(self, index: int) -> None:
        """Release the lock if worker ``index`` (dead) held it."""
        if self.lock is not None and int(self.holder[0]) == index:
            self.holder[0] = -1
            self.lock.release()

    def run(self, index: int, runner: Any, batch: Any, conn: Any) -> bool:
        """The worker loop (module docstring) until the learner says ``"close"`` (True) or ``"stop"``."""
        agent = runner.agent
        agent.train()
        rollout = agent.make_storage(batch.num_envs, batch.steps)
        reported_steps, last_report = runner.collector.steps, time.monotonic()
        sums: dict[str, float] = {}
        updates = lag_sum = 0
        while True:
            if conn.poll():
                command = conn.recv()[0]
                if command in ("close", "stop"):
                    return command == "close"
            if self.paused[0]:
                self.parked[index] = 1
                time.sleep(0.002)
                continue
            with torch.no_grad():
                agent.params.param.copy_(self.param)  # pull
            seen = int(self.version[0])
            agent.num_timesteps, agent.progress = int(self.meta[0]), float(self.meta[1])
            runner.collect(batch)
            OnPolicyAgent.store(agent, rollout, batch.td)  # advantages with the local copy's values
            metrics = actor_critic_gradient(agent, rollout)
            agent.params.clip_grad_norm_(agent.hp.max_grad_norm)
            lag = self._push(index, agent, seen)
            if lag is not None:  # the losses and lags of the applied gradients
                updates += 1
                lag_sum += lag
                for key, value in metrics.items():
                    sums[key] = sums.get(key, 0.0) + value
            now = time.monotonic()
            if now - last_report >= REPORT_INTERVAL:
                steps = runner.collector.steps
                conn.send(("progress", steps - reported_steps, *runner.new_episodes(), sums, updates, lag_sum))
                reported_steps, last_report, sums, updates, lag_sum = steps, now, {}, 0, 0

    def _push(self, index: int, agent: "A3C", seen: int) -> int | None:
        """Apply the local gradient to the shared weights, unless they moved on too far; return
        the lag (shared updates since the pull), None when the gradient was dropped."""
        hp = agent.hp
        with self._locked(index):
            lag = int(self.version[0]) - seen
            if self.max_update_lag is not None and lag > self.max_update_lag:
                self.dropped[index] += 1
                return None
            set_lr(self.optimizer, hp.lr * (1.0 - agent.progress) if hp.anneal_lr else hp.lr)
            self.param.grad = agent.params.grad
            adam_step(self.optimizer)  # the fused kernel for Adam, optimizer.step() otherwise
            self.version += 1
            self.applied[index] += 1
        return lag

    @contextlib.contextmanager
    def _locked(self, index: int):
        if self.lock is None:
            yield
            return
        with self.lock:
            self.holder[0] = index
            try:
                yield
            finally:
                self.holder[0] = -1


class A3CCollector(WorkerCollector):
    """The learner's side of A3C: worker processes running :class:`A3CRole`; ``collect(agent, T)``
    returns once the workers stepped ``T * num_envs`` more env steps, with the shared batch holding
    each worker's latest rollout (what ``on_step`` callbacks see: A3C learns in the workers).

    :param agent: the learner's A3C agent, built.
    :param source: the run's env source.
    :param num_envs: envs over all workers.
    :param workers: worker processes and their fault-handling settings.
    """

    agent: "A3C"

    def __init__(self, agent: "A3C", source: Any, num_envs: int, workers: Workers) -> None:
        import multiprocessing

        lock = multiprocessing.get_context(workers.start_method).Lock() if agent.hp.lock else None
        role = A3CRole(agent, workers.count, lock)
        super().__init__(agent, source, num_envs, workers, role=role)
        self._sums: dict[str, float] = {}
        self._updates = self._lag_sum = 0

    def pause(self) -> None:
        """Hold the shared weights still: every live worker finishes its rollout and push, then
        waits until the next :meth:`collect` (waiting at most ``stall_timeout`` seconds for a
        worker to get there). What the learner evaluates meanwhile is the policy the run keeps
        if a callback stops it."""
        if not self.role_running or self.pool.closed:
            return
        self.role.paused[0] = 1
        deadline = time.monotonic() + self.pool.stall_timeout
        while time.monotonic() < deadline:
            if all(int(self.role.parked[m.index]) or m.process is None or not m.process.is_alive()
                   for m in self.pool.members):
                return
            time.sleep(0.001)

    def _unpause(self) -> None:
        if not int(self.role.paused[0]):
            return
        self.role.parked.zero_()  # before the flag: a worker parks only once it has seen the pause
        self.role.paused[0] = 0
        for member in self.pool.members:
            self.pool.mark_busy(member)  # idle at the pause, not hung

    def worker_stopped(self, worker: Any) -> None:
        """Release the optimiser lock if the stopped worker held it (killed inside its optimiser step)."""
        self.role.release_lock_of(worker.index)

    def collect(self, agent: CollectingAgent, vector_steps: int) -> Any:
        """Wait until the workers stepped ``vector_steps * num_envs`` more env steps (they learn
        as they go); the shared batch holds each worker's latest rollout.

        :param agent: the A3C agent the collector was built with (the learner's copy: its step
            counters go to the workers' schedules).
        :param vector_steps: vector steps of all envs to wait for.
        """
        if agent is not self.agent:
            raise ValueError("an A3CCollector collects for the agent it was built with")
        learner = self.agent
        self.role.meta[0], self.role.meta[1] = float(learner.num_timesteps), float(learner.progress)
        self._unpause()
        if not self.role_running:
            self.start_role(int(learner.hp.n_steps))
        target = self.steps + vector_steps * self.num_envs
        self._sums, self._updates, self._lag_sum = {}, 0, 0
        while self.steps < target:
            for worker, message in self.pool.poll():
                if message[0] == "progress":
                    _, steps, returns, lengths, sums, updates, lag_sum = message
                    self.steps += steps
                    self.record_episodes(returns, lengths)
                    for key, value in sums.items():
                        self._sums[key] = self._sums.get(key, 0.0) + value
                    self._updates += updates
                    self._lag_sum += lag_sum
                elif message[0] == "failed":
                    self.pool.restart(worker, *message[1:])
        return self.shared.td

    def metrics(self) -> dict[str, float]:
        """Worker restarts, each worker's applied updates, the dropped stale gradients, the mean
        lag of the gradients pushed since the last collect, and the workers' mean losses."""
        out = super().metrics()
        for i, count in enumerate(self.role.applied.tolist()):
            out[f"a3c/applied_updates_{i}"] = float(count)
        out["a3c/dropped_stale"] = float(self.role.dropped.sum())
        if self._updates:
            out["collect/policy_lag"] = self._lag_sum / self._updates
            out.update({key: value / self._updates for key, value in self._sums.items()})
        return out


class A3C(OnPolicyAgent):
    """Asynchronous advantage actor-critic: ``learn(env, steps, workers=N)`` (``N >= 1``). Same
    spaces and masks support as PPO (vector, image and nested observations; discrete,
    multi-discrete and continuous actions); ``normalize_observations`` is not offered (each
    worker would keep statistics of its own)."""

    spec: ClassVar[AgentSpec] = ACTOR_CRITIC_SPEC
    Config: ClassVar[type[A3CConfig]] = A3CConfig

    def default_settings(self, observation_kind: str, action_kind: str) -> dict[str, Any]:
        return {"normalize_observations": False,
                **A3C_DEFAULTS[default_kind(observation_kind, action_kind, self.env_family, A3C_DEFAULTS)]}

    def build(self) -> None:
        if self.hp.normalize_observations:
            raise ValueError("A3C(normalize_observations=True) is not offered: every worker process would "
                             "keep observation statistics of its own; use PPO, A2C or IMPALA for it")
        super().build()
        self.build_actor_critic(self.hp.network, self.hp.hidden)
        self.optimizer = actor_critic_optimizer(self)

    def make_collector(self, source: Any, num_envs: int, workers: Any) -> A3CCollector:
        """The collector of every A3C run: worker processes that learn (``workers`` >= 1)."""
        if workers == "distributed":
            raise ValueError("A3C shares its network through one machine's memory: use workers=N, or IMPALA for "
                             "torchrun ranks (workers='distributed')")
        settings = workers if isinstance(workers, Workers) else Workers(int(workers)) if workers else None
        if settings is None:
            raise ValueError("A3C learns in worker processes: pass workers=N (N >= 1), e.g. "
                             "agent.learn(env, steps, workers=2)")
        if self.device.type != "cpu":
            raise ValueError(f"A3C keeps its network in shared host memory: use device='cpu', not {self.device}")
        collector = A3CCollector(self, source, num_envs, settings)
        self._run_collector = weakref.ref(collector)
        return collector

    def evaluate(self, env: Any, *args: Any, **kwargs: Any) -> Any:
        """:func:`rladapt.train.evaluate` (same arguments). Called during a run (by a callback),
        it first pauses the workers (:meth:`A3CCollector.pause`) until the run's next collect:
        they would otherwise change the shared weights while it plays, and a callback that stops
        the run on a good evaluation would keep a policy that moved on since."""
        collector = self.__dict__.get("_run_collector", lambda: None)()
        if collector is not None:
            collector.pause()
        return train.evaluate(self, env, *args, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_run_collector"}  # a weak reference does not pickle

    def ready(self, storage: Any) -> bool:
        """Never: the workers apply every update to the shared weights themselves."""
        return False

    def store(self, storage: Any, batch: Any) -> Any:
        """The learner keeps the batch as it is (the workers compute their own advantages)."""
        return batch
