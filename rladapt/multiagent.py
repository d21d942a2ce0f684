"""One policy per group of a PettingZoo parallel env, trained together:
``learn_groups(env, policies={"adversary": PPO(), "agent": PPO()}, steps)``.

Every group's agent runs the ordinary loop (``agent.learn``: its own storage, updates, run
directory, checkpoints, callbacks) on a :class:`GroupView`, a vector env of that group's agent
slots over the same copies of the env. The loops run in threads, one per group, that meet at each
joint step: the step happens when every group still learning has given its actions (a
:class:`JointStepper`). A group whose ``steps`` are done keeps playing with its final policy until
the others are done, so the env the others learn on does not change under them. An exception in
any loop stops the others with an error that names the group.

A group is the name of its agents up to the last ``_`` (``adversary_0`` -> ``adversary``), see
:func:`rladapt.wrappers.parallel.group_of`; agents of a group share adapted spaces.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from rladapt.adapt import AutoAdapt
from rladapt.collect.slots import JointSlots
from rladapt.types import EvalResult
from rladapt.wrappers.parallel import AdaptedParallelEnv, is_parallel_env

__all__ = ["GroupView", "JointStepper", "evaluate_groups", "learn_groups"]


class GroupAborted(RuntimeError):
    """Another group's loop failed, so this one stops (the other group's error is the cause)."""


class JointStepper:
    """The copies of a parallel env, stepped when every attached group has given its actions.

    :param copies: adapted parallel envs (copies of one env).
    :param groups: ``{group: agents}``: the slots of each group's view.
    :param timeout: seconds a group waits for the others before it raises (a loop that hangs).
    """

    def __init__(self, copies: list[AdaptedParallelEnv], groups: dict[str, list[str]], timeout: float = 600.0) -> None:
        self.joint = JointSlots(copies, groups)
        self.attached = set(groups)
        self.policies: dict[str, Any] = {}  # a detached group's final policy
        self.timeout = timeout
        self._condition = threading.Condition()
        self._pending: dict[str, Any] = {}
        self._reset_seeds: dict[str, int | None] = {}
        self._phase = 0
        self._result: dict[str, tuple[Any, ...]] = {}
        self._failure: tuple[str, BaseException] | None = None

    def _meet(self, group: str, request: Any) -> tuple[Any, ...]:
        with self._condition:
            self._raise_failure()
            phase = self._phase
            self._pending[group] = request
            if self.attached <= set(self._pending):
                self._run()
            elif not self._condition.wait_for(lambda: self._phase != phase or self._failure is not None, self.timeout):
                self.fail(group, TimeoutError(f"group {group!r} waited {self.timeout:.0f} s for the other groups' actions"))
            self._raise_failure()
            return self._result[group]

    def _run(self) -> None:
        requests, self._pending = self._pending, {}
        if any(request is None for request in requests.values()):  # a reset round
            seeds = [seed for seed in self._reset_seeds.values() if seed is not None]
            self._result, self._reset_seeds = self.joint.reset(min(seeds) if seeds else None), {}
        else:
            for group in set(self.joint.slots) - self.attached:  # groups done learning play their final policy
                requests[group] = self._act(group)
            self._result = self.joint.step(requests)
        self._phase += 1
        self._condition.notify_all()

    def reset(self, group: str, seed: int | None) -> tuple[Any, ...]:
        """``(obs, info)`` of ``group``'s slots, once every attached group has asked (the smallest seed given wins)."""
        with self._condition:
            self._reset_seeds[group] = seed
        return self._meet(group, None)

    def step(self, group: str, actions: np.ndarray) -> tuple[Any, ...]:
        """``group``'s share of one joint step, once every attached group has given its actions."""
        return self._meet(group, np.asarray(actions))

    def detach(self, group: str, policy: Any) -> None:
        """``group`` is done learning: from now on ``policy`` acts for it."""
        with self._condition:
            self.attached.discard(group)
            self.policies[group] = policy
            if self._pending and self.attached <= set(self._pending):
                self._run()

    def _act(self, group: str) -> np.ndarray:
        """The final policy's actions for every slot of ``group`` (dead slots' are ignored)."""
        obs, *_, info = self._result[group]
        policy = self.policies[group]
        masks = info.get("action_mask") if getattr(policy, "use_masks", False) else None
        count = self.joint.slots[group].num_envs
        rows = ([{k: v[i] for k, v in obs.items()} for i in range(count)] if isinstance(obs, dict)
                else [obs[i] for i in range(count)])
        return np.stack([np.asarray(policy.act(row, None if masks is None else masks[i], False)) for i, row in enumerate(rows)])

    def fail(self, group: str, error: BaseException) -> None:
        """Stop every loop: ``group`` failed with ``error``."""
        with self._condition:
            if self._failure is None:
                self._failure = (group, error)
            self._condition.notify_all()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            group, error = self._failure
            raise GroupAborted(f"group {group!r} stopped: {type(error).__name__}: {error}") from error


class GroupView(gym.vector.VectorEnv):
    """One group's agent slots of a :class:`JointStepper`'s copies, as a vector env that its
    group's ``agent.learn`` steps like any other (NEXT_STEP autoreset, dead slots as in
    :class:`~rladapt.collect.slots.AgentSlotsVectorEnv`).

    :param stepper: the joint stepper.
    :param group: the group whose slots this view holds.
    """

    def __init__(self, stepper: JointStepper, group: str) -> None:
        self.stepper, self.group = stepper, group
        slots = stepper.joint.slots[group]
        self.envs = stepper.joint.envs
        self.num_envs = slots.num_envs
        self.single_observation_space, self.single_action_space = slots.observation_space, slots.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.metadata = {**self.envs[0].metadata, "autoreset_mode": AutoresetMode.NEXT_STEP}

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        return self.stepper.reset(self.group, seed[0] if isinstance(seed, list) else seed)  # type: ignore[return-value]

    def step(self, actions: Any) -> tuple[Any, ...]:
        return self.stepper.step(self.group, actions)


def _adapted(env: Any, policies: dict[str, Any]) -> AdaptedParallelEnv:
    if isinstance(env, AdaptedParallelEnv):
        return env
    if isinstance(env, str) or is_parallel_env(env):
        return AutoAdapt(env, policies)
    raise TypeError(f"learn_groups trains on a PettingZoo parallel env (or its id), got {type(env).__name__}")


def learn_groups(env: Any, policies: dict[str, Any], steps: int, *, num_envs: int = 8, progress: bool = False,
                 run_dir: Any = None, timeout: float = 600.0, **learn_kwargs: Any) -> dict[str, Any]:
    """Train one agent per group of a parallel env, together (module docstring).

    Example:
        >>> from mpe2 import simple_adversary_v3
        >>> from rladapt.agents import PPO
        >>> policies = learn_groups(simple_adversary_v3.parallel_env(max_cycles=5),
        ...                         {"adversary": PPO(seed=0), "agent": PPO(seed=1)}, steps=200, num_envs=2)
        >>> sorted(policies)
        ['adversary', 'agent']

    :param env: a PettingZoo parallel env, its id, or the env adapted with
        ``AutoAdapt(env, policies)`` (which adapts each group's agents for its own agent).
    :param policies: ``{group: agent}`` for every group of the env (any rladapt agent; each learns
        on its group's slots with its own settings).
    :param steps: env steps each group learns for (its agents' steps).
    :param num_envs: copies of the env stepped together.
    :param progress: show each group's progress bar.
    :param run_dir: a directory: each group's run goes to ``run_dir/<group>``; None: each agent's
        default run directory; False: none.
    :param timeout: seconds a group's loop waits at a joint step before it raises.
    :param learn_kwargs: more ``learn`` arguments for every group (``callbacks``, ``log_every``, ...).
    :return: ``policies``, trained.
    :raises ValueError: a group without a policy (or a policy for no group).
    """
    adapted = _adapted(env, policies)
    missing, unknown = sorted(set(adapted.groups) - set(policies)), sorted(set(policies) - set(adapted.groups))
    if missing or unknown:
        raise ValueError(f"policies must name every group of the env, {sorted(adapted.groups)}: "
                         f"missing {missing}, unknown {unknown}")
    if learn_kwargs.get("workers"):
        raise ValueError("learn_groups steps the copies of the env in this process; workers= does not apply")
    copies = [copy.deepcopy(adapted) for _ in range(num_envs)]
    stepper = JointStepper(copies, adapted.groups, timeout)
    views = {group: GroupView(stepper, group) for group in adapted.groups}
    errors: dict[str, BaseException] = {}

    def train(group: str) -> None:
        agent = policies[group]
        where = False if run_dir is False else (None if run_dir is None else f"{run_dir}/{group}")
        try:
            agent.learn(views[group], steps=steps, progress=progress, run_dir=where, **learn_kwargs)
        except BaseException as error:  # noqa: BLE001 - every failure stops the other groups, and is raised below
            errors[group] = error
            stepper.fail(group, error)
        else:
            stepper.detach(group, agent)

    threads = [threading.Thread(target=train, args=(group,), name=f"learn-{group}", daemon=True) for group in adapted.groups]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for env_copy in copies:
        env_copy.close()
    first = next((e for e in errors.values() if not isinstance(e, GroupAborted)), None) or next(iter(errors.values()), None)
    if first is not None:
        group = next(g for g, e in errors.items() if e is first)
        raise RuntimeError(f"learn_groups: group {group!r} failed: {type(first).__name__}: {first}") from first
    return policies


def evaluate_groups(env: Any, policies: dict[str, Any], episodes: int = 10, deterministic: bool = True,
                    seed: int | None = None, max_episode_steps: int | None = None) -> EvalResult:
    """Play ``episodes`` episodes with each group acting through its policy; every agent's and
    group's raw returns (:func:`rladapt.train.evaluate.evaluate_parallel`).

    :param env: a parallel env, its id, or the env adapted with ``AutoAdapt(env, policies)``.
    :param policies: ``{group: agent}``, trained on this env.
    :param episodes: number of episodes.
    :param deterministic: take the most likely action.
    :param seed: seed of the first reset.
    :param max_episode_steps: end an episode once it has run this many steps (None: 100,000, with
        a warning when an episode reaches it).
    """
    from rladapt.train.evaluate import evaluate_parallel

    return evaluate_parallel(policies, _adapted(env, policies), episodes, deterministic, seed, max_episode_steps)
