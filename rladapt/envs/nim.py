"""Nim for any number of players, as a PettingZoo AEC game: the example of a game of more than two
seats (PettingZoo's classic games all have two; OpenSpiel's many-player ones deal cards, and
shimmy counts those deals against the game's length).

Needs PettingZoo (``pip install 'rladapt[games]'``); ``rladapt.envs`` does not import this module.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import EzPickle
from pettingzoo import AECEnv
from pettingzoo.utils import AgentSelector

__all__ = ["NimEnv"]


class NimEnv(AECEnv, EzPickle):
    """Nim for ``num_players`` players: ``sticks`` sticks on the table, each player in turn takes
    1, 2 or 3 of them; whoever takes the last stick wins.

    ## Observation

    ``Dict(observation=Box(0, 1, (sticks + 1 + num_players,), float32), action_mask=Box(0, 1, (3,), int8))``:
    the number of sticks left (one-hot), then the seat of the player to move (one-hot); the mask
    allows taking no more sticks than are left (PettingZoo's classic convention).

    ## Actions

    ``Discrete(3)``: take ``action + 1`` sticks (names ``take 1``, ``take 2``, ``take 3``).

    ## Rewards

    At the end the winner gets +1 and every other player ``-1 / (num_players - 1)`` (zero-sum), 0 before.

    Example:
        >>> env = NimEnv(num_players=3)
        >>> env.reset(seed=0)
        >>> env.agent_selection, env.observe("player_0")["action_mask"].tolist()
        ('player_0', [1, 1, 1])
        >>> for _ in range(3):
        ...     env.step(2)          # three players take 3 sticks each: 7 -> 4 -> 1 -> 0
        Traceback (most recent call last):
        ...
        ValueError: player_2 cannot take 3 sticks: 1 left (legal moves: take 1)

    :param num_players: the players (at least 2).
    :param sticks: sticks on the table at the start (at least 1).
    :param render_mode: ``"ansi"`` (``render()`` returns the table as text) or None.
    """

    metadata = {"name": "nim_v0", "render_modes": ["ansi"], "is_parallelizable": False}
    action_names = ("take 1", "take 2", "take 3")

    def __init__(self, num_players: int = 3, sticks: int = 7, render_mode: str | None = None) -> None:
        EzPickle.__init__(self, num_players=num_players, sticks=sticks, render_mode=render_mode)
        super().__init__()
        if isinstance(num_players, bool) or not isinstance(num_players, (int, np.integer)) or num_players < 2:
            raise ValueError(f"Nim needs num_players >= 2, got {num_players!r}")
        if isinstance(sticks, bool) or not isinstance(sticks, (int, np.integer)) or sticks < 1:
            raise ValueError(f"Nim needs sticks >= 1, got {sticks!r}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"NimEnv renders 'ansi' or nothing, got render_mode={render_mode!r}")
        self.num_players, self.sticks, self.render_mode = int(num_players), int(sticks), render_mode
        self.possible_agents = [f"player_{i}" for i in range(self.num_players)]
        self._observation_space = spaces.Dict({
            "observation": spaces.Box(0.0, 1.0, (self.sticks + 1 + self.num_players,), np.float32),
            "action_mask": spaces.Box(0, 1, (3,), np.int8),
        })
        self._action_space = spaces.Discrete(3)
        self.left = self.sticks

    def observation_space(self, agent: str) -> spaces.Space:
        return self._observation_space

    def action_space(self, agent: str) -> spaces.Space:
        return self._action_space

    def observe(self, agent: str) -> dict[str, np.ndarray]:
        # The mover's seat is part of the observation: the same sticks with another player to
        # move is another position (and search agents look positions up by observation).
        observation = np.zeros(self.sticks + 1 + self.num_players, dtype=np.float32)
        observation[self.left] = 1.0
        observation[self.sticks + 1 + self.possible_agents.index(self.agent_selection)] = 1.0
        mask = np.array([take <= self.left for take in (1, 2, 3)], dtype=np.int8)
        return {"observation": observation, "action_mask": mask}

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> None:
        self.agents = list(self.possible_agents)
        self.left = self.sticks
        self.rewards = {agent: 0.0 for agent in self.agents}
        self._cumulative_rewards = {agent: 0.0 for agent in self.agents}
        self.terminations = {agent: False for agent in self.agents}
        self.truncations = {agent: False for agent in self.agents}
        self.infos: dict[str, dict[str, Any]] = {agent: {} for agent in self.agents}
        self._selector = AgentSelector(self.agents)
        self.agent_selection = self._selector.reset()

    def step(self, action: Any) -> None:
        mover = self.agent_selection
        if self.terminations[mover] or self.truncations[mover]:
            self._was_dead_step(action)
            return
        take = int(action) + 1
        if not 1 <= take <= min(3, self.left):
            legal = ", ".join(self.action_names[i] for i in range(min(3, self.left)))
            raise ValueError(f"{mover} cannot take {take} sticks: {self.left} left (legal moves: {legal})")
        self.left -= take
        self._cumulative_rewards[mover] = 0.0
        self.rewards = {agent: 0.0 for agent in self.agents}
        if self.left == 0:
            for agent in self.agents:
                self.rewards[agent] = 1.0 if agent == mover else -1.0 / (self.num_players - 1)
                self.terminations[agent] = True
        else:
            self.agent_selection = self._selector.next()
        self._accumulate_rewards()

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        return f"sticks left: {'|' * self.left} ({self.left}); {self.agent_selection} to move"

    def close(self) -> None:
        pass
