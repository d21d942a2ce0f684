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

Agents of the copies that no slot holds (another group's) act through ``others``: a callable
that gets the copy's index and ``{agent: observation}`` and returns ``{agent: action}``, the way a group trained on
its own sees the other groups as part of its env (:mod:`rladapt.multiagent` trains them together).
"""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space, create_empty_array

from rladapt.wrappers.parallel import AdaptedParallelEnv

__all__ = ["AgentSlotsVectorEnv"]


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


class AgentSlotsVectorEnv(gym.vector.VectorEnv):
    """Copies of a parallel env, their agents ``agents`` as the slots of one vector env (module
    docstring).

    :param env_fns: zero-argument constructors of adapted parallel envs (one per copy).
    :param agents: the agents the slots hold, in order (default: every agent of the env; they
        must share adapted spaces).
    :param others: acts for the agents no slot holds: ``others(copy, {agent: observation}) -> {agent: action}``
        (needed when ``agents`` is not every agent).
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, env_fns: list[Callable[[], AdaptedParallelEnv]], agents: list[str] | None = None,
                 others: Callable[[int, dict[str, Any]], dict[str, Any]] | None = None) -> None:
        if not env_fns:
            raise ValueError("AgentSlotsVectorEnv needs at least one env constructor")
        self.envs = [fn() for fn in env_fns]
        first = self.envs[0]
        if not isinstance(first, AdaptedParallelEnv):
            raise TypeError(f"AgentSlotsVectorEnv steps adapted parallel envs (AutoAdapt(parallel_env, agent)), got {type(first).__name__}")
        self.agents = list(agents) if agents is not None else first.group_agents(None)
        unknown = sorted(set(self.agents) - set(first.possible_agents))
        if unknown:
            raise ValueError(f"agents {unknown} are not agents of this env ({first.possible_agents})")
        self.other_agents = [a for a in first.possible_agents if a not in self.agents]
        if self.other_agents and others is None:
            raise ValueError(f"the slots hold {self.agents}; the env's other agents {self.other_agents} need a policy: pass others=")
        self.others = others
        self.num_copies, self.agents_per_copy = len(self.envs), len(self.agents)
        self.num_envs = self.num_copies * self.agents_per_copy
        self.single_observation_space = first.observation_space(self.agents[0])
        self.single_action_space = first.action_space(self.agents[0])
        for agent in self.agents[1:]:
            if (first.observation_space(agent), first.action_space(agent)) != (self.single_observation_space, self.single_action_space):
                raise ValueError(f"the slots' agents must share adapted spaces: {self.agents[0]!r} and {agent!r} differ")
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.metadata = {**first.metadata, "autoreset_mode": AutoresetMode.NEXT_STEP}
        self.masks = bool(first.metadata.get("action_mask"))
        self.mask_size = None
        if self.masks:
            from rladapt.spaces import mask_size

            self.mask_size = mask_size(self.single_action_space)
        self._obs = create_empty_array(self.single_observation_space, self.num_envs)
        self._rewards = np.zeros(self.num_envs, dtype=np.float64)
        self._terminated = np.zeros(self.num_envs, dtype=bool)
        self._truncated = np.zeros(self.num_envs, dtype=bool)
        self._needs_reset = np.zeros(self.num_copies, dtype=bool)
        self._last_obs: list[dict[str, Any]] = [{} for _ in self.envs]  # the other agents' observations
        self._seed: int | None = None

    def slot(self, copy: int, agent: str) -> int:
        """The slot index of ``agent`` in copy ``copy``."""
        return copy * self.agents_per_copy + self.agents.index(agent)

    # -- filling slots -----------------------------------------------------------------------
    def _fill(self, copy: int, obs: dict[str, Any], rewards: dict[str, float], terminated: dict[str, bool],
              truncated: dict[str, bool], infos: dict[str, dict], out_info: dict[str, Any]) -> None:
        env = self.envs[copy]
        for i, agent in enumerate(self.agents):
            s = copy * self.agents_per_copy + i
            if agent in obs:
                _write(self.single_observation_space, self._obs, s, obs[agent])
                self._rewards[s] = rewards.get(agent, 0.0)
                self._terminated[s] = terminated.get(agent, False)
                self._truncated[s] = truncated.get(agent, False)
                info = infos.get(agent, {})
            else:  # not in the episode (left, or not joined yet): a dead slot
                _zero(self.single_observation_space, self._obs, s)
                self._rewards[s], self._terminated[s], self._truncated[s] = 0.0, True, False
                info = {}
            if self.masks and "action_mask" not in info:
                info = {**info, "action_mask": np.ones(self.mask_size, dtype=bool)}
            if info:
                out_info = self._add_info(out_info, info, s)
        self._last_obs[copy] = {a: o for a, o in obs.items() if a in self.other_agents}
        self._needs_reset[copy] = not env.agents

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset every copy (copy ``c`` gets ``seed + c``)."""
        if isinstance(seed, list):
            seed = seed[0]
        self._seed = seed
        info: dict[str, Any] = {}
        for copy, env in enumerate(self.envs):
            obs, infos = env.reset(seed=None if seed is None else seed + copy, options=options)
            self._fill(copy, obs, {}, {}, {}, infos, info)
        return self._obs, info

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One joint step of every copy; a copy whose agents are all done resets instead (NEXT_STEP)."""
        info: dict[str, Any] = {}
        for copy, env in enumerate(self.envs):
            if self._needs_reset[copy]:
                obs, infos = env.reset()
                self._fill(copy, obs, {}, {}, {}, infos, info)
                continue
            base = copy * self.agents_per_copy
            joint = {agent: actions[base + i] for i, agent in enumerate(self.agents) if agent in env.agents}
            if self.other_agents:
                live = {a: o for a, o in self._last_obs[copy].items() if a in env.agents}
                if live:
                    joint.update(self.others(copy, live))
            obs, rewards, terminated, truncated, infos = env.step(joint)
            self._fill(copy, obs, rewards, terminated, truncated, infos, info)
        return self._obs, self._rewards.copy(), self._terminated.copy(), self._truncated.copy(), info

    def render(self) -> Any:
        return self.envs[0].render()

    def close_extras(self, **kwargs: Any) -> None:
        for env in self.envs:
            env.close()
