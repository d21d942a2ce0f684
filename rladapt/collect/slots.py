"""The agents of parallel envs as the slots of one gymnasium vector env, so that any single-agent
agent learns on them with the usual loop: one policy shared by the agents of a group
(parameter-shared independent learners: IPPO with PPO, independent DQN, ...).

:class:`AgentSlotsVectorEnv` steps ``num_copies`` copies of an
:class:`~rladapt.wrappers.parallel.AdaptedParallelEnv`; slot ``copy * len(agents) + i`` is agent
``agents[i]`` of copy ``copy``. It keeps gymnasium 1.x vector semantics (``AutoresetMode.NEXT_STEP``)
slot by slot:

- an agent's last step of an episode says ``terminated``/``truncated`` like any env's done;
- an agent that has left while the others play on is a *dead slot*: every step it gives a zero
  observation, reward 0, ``terminated=True`` and (with masks) an all-true mask. Its actions are
  ignored; as the step after a done it is not a transition (the collector marks it
  ``valid=False``), so nothing of it reaches a loss or a replay buffer;
- an agent that joins mid-episode starts its episode on the step it appears (that step's
  observation is its first, like a reset);
- when every agent of a copy is done, the next step resets that copy: every slot gets its reset
  observation, reward 0 and no done (the autoreset step).

The joint step of every copy lives in :class:`JointSlots`, which fills the slots of several
groups at once (each group's agents share spaces; groups may differ): :class:`AgentSlotsVectorEnv`
is it with one group, and :mod:`rladapt.multiagent` gives each group's loop its own view of it.
"""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space, create_empty_array

from rladapt.wrappers.parallel import AdaptedParallelEnv

__all__ = ["AgentSlotsVectorEnv", "JointSlots"]


def _write(space: gym.Space, buffer: Any, index: int, value: Any) -> None:
    """Write one slot's observation into the batched buffer (dict observations key by key)."""
    if isinstance(space, gym.spaces.Dict):
        for key, sub in space.spaces.items():
            _write(sub, buffer[key], index, value[key])
    else:
        buffer[index] = value


def _zero(space: gym.Space, buffer: Any, index: int) -> None:
    if isinstance(space, gym.spaces.Dict):
        for key, sub in space.spaces.items():
            _zero(sub, buffer[key], index)
    else:
        buffer[index] = 0


class _Slots:
    """The batched step results of one group's agents over the copies (slot ``copy * len(agents) + i``)."""

    def __init__(self, env: AdaptedParallelEnv, agents: list[str], num_copies: int) -> None:
        self.agents = list(agents)
        self.num_envs = num_copies * len(self.agents)
        self.observation_space = env.observation_space(self.agents[0])
        self.action_space = env.action_space(self.agents[0])
        for agent in self.agents[1:]:
            if (env.observation_space(agent), env.action_space(agent)) != (self.observation_space, self.action_space):
                raise ValueError(f"the slots' agents must share adapted spaces: {self.agents[0]!r} and {agent!r} differ")
        self.mask_size = None
        if env.metadata.get("action_mask"):
            from rladapt.spaces import mask_size

            self.mask_size = mask_size(self.action_space)
        self.obs = create_empty_array(self.observation_space, self.num_envs)
        self.rewards = np.zeros(self.num_envs, dtype=np.float64)
        self.terminated = np.zeros(self.num_envs, dtype=bool)
        self.truncated = np.zeros(self.num_envs, dtype=bool)
        self.info: dict[str, Any] = {}

    def fill(self, copy: int, obs: dict[str, Any], rewards: dict[str, float], terminated: dict[str, bool],
             truncated: dict[str, bool], infos: dict[str, dict], add_info: Callable) -> None:
        for i, agent in enumerate(self.agents):
            s = copy * len(self.agents) + i
            if agent in obs:
                _write(self.observation_space, self.obs, s, obs[agent])
                self.rewards[s] = rewards.get(agent, 0.0)
                self.terminated[s] = terminated.get(agent, False)
                self.truncated[s] = truncated.get(agent, False)
                info = infos.get(agent, {})
            else:  # not in the episode (left, or not joined yet): a dead slot
                _zero(self.observation_space, self.obs, s)
                self.rewards[s], self.terminated[s], self.truncated[s] = 0.0, True, False
                info = {}
            if self.mask_size is not None and "action_mask" not in info:
                info = {**info, "action_mask": np.ones(self.mask_size, dtype=bool)}
            if info:
                self.info = add_info(self.info, info, s)

    def result(self) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        info, self.info = self.info, {}
        return self.obs, self.rewards.copy(), self.terminated.copy(), self.truncated.copy(), info


class JointSlots:
    """Copies of an adapted parallel env stepped together, each group's agents filling its own
    slots (module docstring).

    :param copies: adapted parallel envs (copies of one env).
    :param groups: ``{name: agents}``; every agent of the env must be in one group.
    """

    def __init__(self, copies: list[AdaptedParallelEnv], groups: dict[str, list[str]]) -> None:
        if not copies:
            raise ValueError("JointSlots needs at least one env copy")
        first = copies[0]
        if not isinstance(first, AdaptedParallelEnv):
            raise TypeError(f"agent slots are made of adapted parallel envs (AutoAdapt(parallel_env, agent)), got {type(first).__name__}")
        held = [agent for members in groups.values() for agent in members]
        unknown = sorted(set(held) - set(first.possible_agents))
        if unknown:
            raise ValueError(f"agents {unknown} are not agents of this env ({first.possible_agents})")
        unheld = [agent for agent in first.possible_agents if agent not in held]
        if unheld:
            raise ValueError(f"every agent of the env needs a slot; {unheld} are in no group")
        self.envs = copies
        self.slots = {name: _Slots(first, members, len(copies)) for name, members in groups.items()}
        self._needs_reset = np.zeros(len(copies), dtype=bool)
        # gymnasium's own way of batching infos (``VectorEnv._add_info``, which reads only num_envs)
        self._adder = gym.vector.VectorEnv()

    def _add_info(self, name: str) -> Callable:
        slots = self.slots[name]
        self._adder.num_envs = slots.num_envs
        return self._adder._add_info

    def _fill(self, copy: int, *parts: dict) -> None:
        for name, slots in self.slots.items():
            slots.fill(copy, *parts, self._add_info(name))
        self._needs_reset[copy] = not self.envs[copy].agents

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> dict[str, tuple[Any, dict]]:
        """Reset every copy (copy ``c`` gets ``seed + c``): ``{group: (obs, info)}``."""
        for copy, env in enumerate(self.envs):
            obs, infos = env.reset(seed=None if seed is None else seed + copy, options=options)
            self._fill(copy, obs, {}, {}, {}, infos)
        out = {}
        for name, slots in self.slots.items():
            obs, _, _, _, info = slots.result()
            out[name] = (obs, info)
        return out

    def step(self, actions: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
        """One joint step of every copy with each group's slot actions; a copy whose agents are
        all done resets instead (NEXT_STEP): ``{group: (obs, rewards, terminated, truncated, info)}``."""
        for copy, env in enumerate(self.envs):
            if self._needs_reset[copy]:
                obs, infos = env.reset()
                self._fill(copy, obs, {}, {}, {}, infos)
                continue
            joint = {}
            for name, slots in self.slots.items():
                base = copy * len(slots.agents)
                joint.update({agent: actions[name][base + i] for i, agent in enumerate(slots.agents) if agent in env.agents})
            self._fill(copy, *env.step(joint))
        return {name: slots.result() for name, slots in self.slots.items()}

    def close(self) -> None:
        for env in self.envs:
            env.close()


class AgentSlotsVectorEnv(gym.vector.VectorEnv):
    """Copies of a parallel env, their agents as the slots of one vector env, all sharing spaces
    (module docstring).

    :param env_fns: zero-argument constructors of adapted parallel envs (one per copy).
    :param agents: the agents, in slot order (default: every agent of the env; they must share
        adapted spaces).
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, env_fns: list[Callable[[], AdaptedParallelEnv]], agents: list[str] | None = None) -> None:
        if not env_fns:
            raise ValueError("AgentSlotsVectorEnv needs at least one env constructor")
        copies = [fn() for fn in env_fns]
        if not isinstance(copies[0], AdaptedParallelEnv):
            raise TypeError(f"AgentSlotsVectorEnv steps adapted parallel envs (AutoAdapt(parallel_env, agent)), got {type(copies[0]).__name__}")
        self.agents = list(agents) if agents is not None else copies[0].group_agents(None)
        self.joint = JointSlots(copies, {"all": self.agents})
        self.envs = copies
        self._slots = self.joint.slots["all"]
        self.num_copies, self.agents_per_copy = len(copies), len(self.agents)
        self.num_envs = self._slots.num_envs
        self.single_observation_space, self.single_action_space = self._slots.observation_space, self._slots.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.metadata = {**copies[0].metadata, "autoreset_mode": AutoresetMode.NEXT_STEP}

    def slot(self, copy: int, agent: str) -> int:
        """The slot index of ``agent`` in copy ``copy``."""
        return copy * self.agents_per_copy + self.agents.index(agent)

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset every copy (copy ``c`` gets ``seed + c``)."""
        return self.joint.reset(seed[0] if isinstance(seed, list) else seed, options)["all"]

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One joint step of every copy; a copy whose agents are all done resets instead (NEXT_STEP)."""
        return self.joint.step({"all": actions})["all"]

    def render(self) -> Any:
        return self.envs[0].render()

    def close_extras(self, **kwargs: Any) -> None:
        self.joint.close()
