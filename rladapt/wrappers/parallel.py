"""PettingZoo parallel envs (every agent acts at once) adapted agent by agent.

Each agent of a :class:`pettingzoo.ParallelEnv` gets the chain of wrappers AutoAdapt builds for a
single-agent env (spaces, masks, images, episode statistics), built over an :class:`AgentSeat`: a
gymnasium env with that agent's spaces that hands the chain the agent's share of the joint step.
A joint step runs in three phases, so that every wrapper of every chain sees an ordinary
``step``:

1. each agent's action goes down its chain through the action wrappers' ``action()`` (the only
   layers that change actions), giving the raw env's action;
2. the raw env steps once with all of them;
3. each live agent's chain steps with its action again; its seat returns the agent's share of
   the joint result, and the wrappers above transform it as usual (frame stacks, masks, episode
   statistics).

:class:`AdaptedParallelEnv` is itself a PettingZoo ``ParallelEnv`` with the adapted spaces
(PettingZoo's ``parallel_api_test`` passes on it). Gymnasium wrappers that step their env more
than once per step (frame skipping) cannot apply here and are refused by AutoAdapt.
"""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = ["AdaptedParallelEnv", "AgentSeat", "is_parallel_env"]


def is_parallel_env(env: Any) -> bool:
    """``env`` speaks PettingZoo's parallel API (``possible_agents``, ``step(actions: dict)``, no ``observe``)."""
    return hasattr(env, "possible_agents") and hasattr(env, "action_space") and callable(getattr(env, "action_space", None)) \
        and not hasattr(env, "observe") and not isinstance(env, gym.Env)


class AgentSeat(gym.Env):
    """One agent of a parallel env as a gymnasium env: its spaces, and its share of the joint
    ``reset``/``step`` that :class:`AdaptedParallelEnv` hands it before stepping its chain.

    :param agent: the agent's name in the parallel env.
    :param observation_space: its observation space.
    :param action_space: its action space.
    :param metadata: the parallel env's metadata.
    """

    def __init__(self, agent: str, observation_space: spaces.Space, action_space: spaces.Space,
                 metadata: dict[str, Any] | None = None) -> None:
        self.agent = agent
        self.observation_space, self.action_space = observation_space, action_space
        self.metadata = dict(metadata or {})
        self._result: tuple[Any, ...] | None = None

    def hand(self, *result: Any) -> None:
        """The agent's share of the joint step (obs, reward, terminated, truncated, info) or reset (obs, info)."""
        self._result = result

    def _take(self, call: str) -> tuple[Any, ...]:
        if self._result is None:
            raise RuntimeError(f"AgentSeat({self.agent!r}).{call}() was called outside its parallel env's joint {call}")
        result, self._result = self._result, None
        return result

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        return self._take("reset")  # type: ignore[return-value]

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        return self._take("step")  # type: ignore[return-value]


def raw_action(chain: gym.Env, action: Any) -> Any:
    """The base env's action for ``action`` of the adapted ``chain``: every action wrapper's ``action()``, outermost first."""
    layer = chain
    while isinstance(layer, gym.Wrapper):
        if isinstance(layer, gym.ActionWrapper):
            action = layer.action(action)
        layer = layer.env
    return action


def _concat_state_space(observation_spaces: list[spaces.Space]) -> spaces.Box | None:
    """Every agent's observation in one vector; None when some are not arrays (dicts, tuples)."""
    if not all(isinstance(space, spaces.Box) for space in observation_spaces):
        return None
    size = sum(int(np.prod(space.shape)) for space in observation_spaces)
    return spaces.Box(-np.inf, np.inf, (size,), np.float32)


class AdaptedParallelEnv:
    """A PettingZoo parallel env whose agents' observations and actions went through AutoAdapt's
    per-agent rules (module docstring). It is itself a parallel env: ``reset`` and ``step`` take and
    return dicts by agent; ``observation_space(agent)``/``action_space(agent)`` are the adapted ones.

    Agents of one group (the prefix of their name before the last ``_``: ``adversary_0`` is in
    ``adversary``) must share adapted spaces: one policy acts for all of them. An agent that
    leaves mid-episode gets its last step (``terminations[agent]``), and is gone from ``agents``
    from the next step on, as PettingZoo says.

    :param env: the parallel env.
    :param adapt_agent: builds the adapted chain of one :class:`AgentSeat` (AutoAdapt's rules).
    :param agent_ids: append a one-hot of the agent's index within its group to vector observations.
    :param family: the base env's family, for the agents' per-kind defaults.
    :param global_state: observations become ``{"observation": local, "state": global}`` for a
        centralised critic: the env's ``state()`` where it has one, else every agent's adapted
        observation concatenated (zeros for agents that left).
    """

    def __init__(self, env: Any, adapt_agent: Callable[[AgentSeat], gym.Env], agent_ids: bool = False,
                 global_state: bool = False, family: str = "other") -> None:
        self.env = env
        #: The base env's family (:func:`rladapt.adapt.env_family`): agents' per-kind defaults read it.
        self.family = family
        self.metadata = dict(getattr(env, "metadata", None) or {})
        self.possible_agents = list(env.possible_agents)
        self.groups: dict[str, list[str]] = {}
        for agent in self.possible_agents:
            self.groups.setdefault(group_of(agent), []).append(agent)
        self.seats = {agent: AgentSeat(agent, env.observation_space(agent), env.action_space(agent), self.metadata)
                      for agent in self.possible_agents}
        self._probe_reset()
        self.chains = {agent: adapt_agent(self.seats[agent]) for agent in self.possible_agents}
        self.agent_ids, self.global_state = agent_ids, global_state
        for name, members in list(self.groups.items()):
            if any(self._spaces_of(other) != self._spaces_of(members[0]) for other in members[1:]):
                # agents named alike but seeing or acting differently cannot share a policy: one group each
                del self.groups[name]
                self.groups.update({agent: [agent] for agent in members})
        self._index = {agent: members.index(agent) for members in self.groups.values() for agent in members}
        self.group_by_agent = {agent: name for name, members in self.groups.items() for agent in members}
        self._local_spaces = {agent: self._with_id_space(agent) for agent in self.possible_agents}
        # The global state: the env's own where it declares one, else every adapted observation concatenated.
        self._env_state = callable(getattr(env, "state", None)) and isinstance(getattr(env, "state_space", None), spaces.Box)
        self.state_space = (spaces.Box(-np.inf, np.inf, env.state_space.shape, np.float32) if self._env_state
                            else _concat_state_space([self.chains[a].observation_space for a in self.possible_agents]))
        if global_state and self.state_space is None:
            raise ValueError("global_state=True needs the env's state() or array observations to concatenate; "
                             f"this env has no state_space and its adapted observations are "
                             f"{sorted({str(c.observation_space) for c in self.chains.values()})}")
        self._observation_spaces = {agent: self._observation_space(agent) for agent in self.possible_agents}
        self.metadata["action_mask"] = any(bool(chain.metadata.get("action_mask")) for chain in self.chains.values())
        #: The plan of each group (the chain of its first agent; every member's is the same).
        self.plans = {name: getattr(self.chains[members[0]], "plan", None) for name, members in self.groups.items()}
        #: AutoAdapt's plan for this env (set by :func:`rladapt.adapt.adapt_parallel`).
        self.plan: Any = None
        #: The id the env was made from (``mpe2.simple_spread_v3``), None for an instance.
        self.env_id: str | None = None
        #: AutoAdapt's options for this env (set by AutoAdapt).
        self.options: Any = None
        self.agents: list[str] = []
        self._last_local: dict[str, np.ndarray] = {}

    def group_agents(self, group: str | None = None) -> list[str]:
        """The agents one policy acts for: the members of ``group``, or every agent when None
        (then all agents must share adapted spaces).

        :param group: a group name (:func:`group_of`), or None.
        :raises ValueError: the group does not exist, or None with groups of different spaces.
        """
        if group is not None:
            if group not in self.groups:
                raise ValueError(f"no group {group!r} in this env; its groups are {sorted(self.groups)}")
            return list(self.groups[group])
        firsts = [members[0] for members in self.groups.values()]
        for other in firsts[1:]:
            if (self._observation_spaces[other], self.action_space(other)) != (self._observation_spaces[firsts[0]], self.action_space(firsts[0])):
                raise ValueError(
                    f"the groups {sorted(self.groups)} of this env have different adapted spaces, so one policy cannot act "
                    f"for all of them: train one agent per group with rladapt.multiagent.learn_groups(env, "
                    f"policies={{{', '.join(repr(g) + ': ...' for g in self.groups)}}}, steps)"
                )
        return list(self.possible_agents)

    # -- spaces ------------------------------------------------------------------------------
    def _spaces_of(self, agent: str) -> tuple[spaces.Space, spaces.Space]:
        return self.chains[agent].observation_space, self.chains[agent].action_space

    def _probe_reset(self) -> None:
        """AutoAdapt resets each env once to find info-based masks: hand every seat a reset."""
        observations, infos = self.env.reset()
        for agent, seat in self.seats.items():
            seat.hand(observations.get(agent, seat.observation_space.sample()), dict(infos.get(agent, {})))

    def _with_id_space(self, agent: str) -> spaces.Space:
        space = self.chains[agent].observation_space
        if not self.agent_ids:
            return space
        if not (isinstance(space, spaces.Box) and len(space.shape) == 1):
            raise ValueError(f"agent_ids=True appends a one-hot to vector observations; {agent!r}'s adapted observation is {space}")
        n = len(self.groups[self.group_by_agent[agent]])
        return spaces.Box(np.concatenate([space.low, np.zeros(n, space.dtype)]),
                          np.concatenate([space.high, np.ones(n, space.dtype)]), dtype=space.dtype)

    def _observation_space(self, agent: str) -> spaces.Space:
        local = self._local_spaces[agent]
        return spaces.Dict({"observation": local, "state": self.state_space}) if self.global_state else local

    def observation_space(self, agent: str) -> spaces.Space:
        """The adapted observation space of ``agent``."""
        return self._observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space:
        """The adapted action space of ``agent``."""
        return self.chains[agent].action_space

    @property
    def observation_spaces(self) -> dict[str, spaces.Space]:
        return dict(self._observation_spaces)

    @property
    def action_spaces(self) -> dict[str, spaces.Space]:
        return {agent: chain.action_space for agent, chain in self.chains.items()}

    @property
    def num_agents(self) -> int:
        return len(self.agents)

    @property
    def max_num_agents(self) -> int:
        return len(self.possible_agents)

    @property
    def unwrapped(self) -> Any:
        return self.env.unwrapped if hasattr(self.env, "unwrapped") else self.env

    # -- observations ------------------------------------------------------------------------
    def _local(self, agent: str, obs: Any) -> Any:
        if self.agent_ids:
            one_hot = np.zeros(len(self.groups[self.group_by_agent[agent]]), dtype=obs.dtype)
            one_hot[self._index[agent]] = 1
            obs = np.concatenate([obs, one_hot])
        return obs

    def state(self) -> np.ndarray:
        """The global state: the env's ``state()``, or every agent's adapted observation concatenated."""
        if self.state_space is None:
            raise ValueError("this env has no state(): it declares no state_space and its adapted observations are not arrays")
        if self._env_state:
            return np.asarray(self.env.state(), dtype=np.float32)
        parts = []
        for agent in self.possible_agents:
            last = self._last_local.get(agent)
            space = self.chains[agent].observation_space
            parts.append(np.zeros(int(np.prod(space.shape)), np.float32) if last is None
                         else np.asarray(last, dtype=np.float32).reshape(-1))
        return np.concatenate(parts)

    def _observations(self, raw: dict[str, Any]) -> dict[str, Any]:
        self._last_local.update(raw)
        locals_ = {agent: self._local(agent, obs) for agent, obs in raw.items()}
        if not self.global_state:
            return locals_
        state = self.state()
        return {agent: {"observation": obs, "state": state.copy()} for agent, obs in locals_.items()}

    # -- the parallel API --------------------------------------------------------------------
    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        observations, infos = self.env.reset(seed=seed, options=options)
        self.agents = list(self.env.agents)
        self._last_local = {}
        out_obs, out_infos = {}, {}
        for agent in self.agents:
            self.seats[agent].hand(observations[agent], dict(infos.get(agent, {})))
            out_obs[agent], out_infos[agent] = self.chains[agent].reset(seed=None if seed is None else seed + self._order(agent))
        return self._observations(out_obs), out_infos

    def _order(self, agent: str) -> int:
        return self.possible_agents.index(agent)

    def step(self, actions: dict[str, Any]) -> tuple[dict[str, Any], ...]:
        unknown = sorted(set(actions) - set(self.agents))
        if unknown:
            raise ValueError(f"actions for agents {unknown} that are not in the episode (agents: {self.agents})")
        missing = [agent for agent in self.agents if agent not in actions]
        if missing:
            raise ValueError(f"no action for agents {missing}: a parallel step takes one action per live agent")
        raw = {agent: raw_action(self.chains[agent], action) for agent, action in actions.items()}
        observations, rewards, terminations, truncations, infos = self.env.step(raw)
        out: tuple[dict[str, Any], ...] = ({}, {}, {}, {}, {})
        for agent in self.agents:
            if agent not in observations:  # a parallel env that drops a leaving agent's last step
                continue
            self.seats[agent].hand(observations[agent], float(rewards.get(agent, 0.0)), bool(terminations.get(agent, False)),
                                   bool(truncations.get(agent, False)), dict(infos.get(agent, {})))
            result = self.chains[agent].step(actions[agent])
            for part, value in zip(out, result):
                part[agent] = value
        for agent in observations:  # an agent that joined the episode in this step starts its chain here
            if agent not in self.agents:
                self.seats[agent].hand(observations[agent], dict(infos.get(agent, {})))
                obs, info = self.chains[agent].reset()
                for part, value in zip(out, (obs, 0.0, bool(terminations.get(agent, False)),
                                             bool(truncations.get(agent, False)), info)):
                    part[agent] = value
        self.agents = list(self.env.agents)
        obs, rew, term, trunc, info = out
        return self._observations(obs), rew, term, trunc, info

    def render(self) -> Any:
        return self.env.render()

    def close(self) -> None:
        self.env.close()

    def __str__(self) -> str:
        return f"AdaptedParallelEnv<{self.env}>"


def group_of(agent: str) -> str:
    """The group an agent's name puts it in: the name up to its last ``_`` (``adversary_0`` ->
    ``adversary``), the whole name when it has none."""
    head, sep, tail = agent.rpartition("_")
    return head if sep and tail.isdigit() else agent
