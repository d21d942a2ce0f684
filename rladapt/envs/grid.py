"""The 4x3 grid world of Russell & Norvig (*AIMA*, ch. 17), as a gymnasium env."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = ["GridEnv"]

# Actions, in the order of ``action_names``: (dx, dy) on (column, row), row 0 at the bottom.
UP, RIGHT, DOWN, LEFT = 0, 1, 2, 3
_MOVES: tuple[tuple[int, int], ...] = ((0, 1), (1, 0), (0, -1), (-1, 0))

Transition = tuple[float, int, float, bool]
"""One outcome of the model ``P[state][action]``: (probability, next state, reward, terminated)."""


class GridEnv(gym.Env[int, np.int64]):
    """The classic stochastic 4x3 grid world of Russell & Norvig.

    The agent walks from the bottom-left corner to the goal at the top-right while avoiding the pit
    just below it. Moves are noisy: the intended direction happens with probability 0.8, each of the
    two perpendicular directions with probability 0.1. A move into the wall or off the board leaves
    the agent where it is. ::

        row 2   .  .  .  G        G goal (+1), P pit (-1), # wall, A agent
        row 1   .  #  .  P
        row 0   A  .  .  .
              col 0  1  2  3

    ## Action space

    ``Discrete(4)``: 0 up, 1 right, 2 down, 3 left (names in ``action_names``). With probability
    ``1 - slip`` the agent moves as intended; with ``slip / 2`` it moves 90° clockwise of the intended
    direction and with ``slip / 2`` 90° counter-clockwise.

    ## Observation space

    ``Discrete(12)``: the agent's cell, ``index = 4 * row + column`` with row 0 at the bottom::

        8  9 10 11
        4  5  6  7        5 is the wall (never observed), 7 the pit, 11 the goal
        0  1  2  3

    ## Rewards

    +1 for entering the goal, -1 for entering the pit, ``step_reward`` (-0.04) for every other step.
    With these rewards and no discount the optimal policy (the textbook's) is worth 0.745 from the
    start: the book's utility 0.705 also charges -0.04 for standing in the start cell, a per-step
    reward does not.

    ## Starting state

    Cell 0 (bottom-left). ``reset(options={"state": s})`` starts from any non-wall, non-terminal
    cell ``s`` instead (exploring starts, tests).

    ## Episode end

    Terminates on entering the goal or the pit. ``rladapt/Grid-v0`` truncates after 100 steps
    (``max_episode_steps=100``). Stepping a terminated env raises ``RuntimeError``: call ``reset()``.

    ## Model

    ``P[state][action]`` is the exact transition model as a list of
    ``(probability, next_state, reward, terminated)`` tuples (the layout of gymnasium's toy-text envs),
    for value iteration and tabular checks. Terminal and wall cells map to ``[(1.0, s, 0.0, True)]``.

    ## Arguments

    * ``render_mode``: ``None`` or ``"ansi"`` (the board as text).
    * ``slip``: total probability of slipping sideways, split evenly between the two sides (0.2).
    * ``step_reward``: reward of a step that does not end in the goal or pit (-0.04).

    ## Example

    >>> import gymnasium as gym
    >>> import rladapt.envs
    >>> env = gym.make("rladapt/Grid-v0", render_mode="ansi")
    >>> obs, info = env.reset(seed=0)
    >>> obs
    0
    >>> env.unwrapped.action_names
    ('up', 'right', 'down', 'left')
    >>> obs, reward, terminated, truncated, info = env.step(0)
    >>> print(env.render())  # doctest: +SKIP
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    width: int = 4
    height: int = 3
    start: tuple[int, int] = (0, 0)
    wall: tuple[int, int] = (1, 1)
    goal: tuple[int, int] = (3, 2)
    pit: tuple[int, int] = (3, 1)
    action_names: tuple[str, ...] = ("up", "right", "down", "left")

    def __init__(
        self,
        render_mode: str | None = None,
        slip: float = 0.2,
        step_reward: float = -0.04,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode={render_mode!r} is not supported; use one of {self.metadata['render_modes']} or None"
            )
        if not 0.0 <= slip <= 1.0:
            raise ValueError(f"slip must be a probability in [0, 1], got {slip}")
        self.render_mode = render_mode
        self.slip = float(slip)
        self.step_reward = float(step_reward)

        self.observation_space = spaces.Discrete(self.width * self.height)
        self.action_space = spaces.Discrete(len(_MOVES))

        self.P: dict[int, dict[int, list[Transition]]] = self._build_model()
        self._pos: tuple[int, int] = self.start
        self._done: bool = False
        self._last_action: int | None = None

    # ----------------------------------------------------------------- geometry
    def cell_index(self, col: int, row: int) -> int:
        """The observation for cell (``col``, ``row``): ``4 * row + col``, row 0 at the bottom."""
        return row * self.width + col

    def cell_of(self, index: int) -> tuple[int, int]:
        """The (column, row) of observation ``index``; the inverse of :meth:`cell_index`."""
        return index % self.width, index // self.width

    def _is_terminal(self, pos: tuple[int, int]) -> bool:
        return pos == self.goal or pos == self.pit

    def _moved(self, pos: tuple[int, int], direction: int) -> tuple[int, int]:
        """Where a move in ``direction`` from ``pos`` lands: bumping the wall or an edge stays put."""
        dx, dy = _MOVES[direction]
        nxt = (pos[0] + dx, pos[1] + dy)
        if not (0 <= nxt[0] < self.width and 0 <= nxt[1] < self.height) or nxt == self.wall:
            return pos
        return nxt

    def _reward(self, pos: tuple[int, int]) -> float:
        if pos == self.goal:
            return 1.0
        if pos == self.pit:
            return -1.0
        return self.step_reward

    def _directions(self, action: int) -> list[tuple[float, int]]:
        """(probability, actual direction) pairs for an intended ``action``."""
        side = self.slip / 2.0
        return [(1.0 - self.slip, action), (side, (action + 1) % 4), (side, (action + 3) % 4)]

    def _build_model(self) -> dict[int, dict[int, list[Transition]]]:
        model: dict[int, dict[int, list[Transition]]] = {}
        for s in range(self.observation_space.n):
            pos = self.cell_of(s)
            model[s] = {}
            for a in range(self.action_space.n):
                if pos == self.wall or self._is_terminal(pos):
                    model[s][a] = [(1.0, s, 0.0, True)]
                    continue
                outcomes: dict[int, float] = {}
                for p, direction in self._directions(a):
                    if p > 0.0:
                        nxt = self.cell_index(*self._moved(pos, direction))
                        outcomes[nxt] = outcomes.get(nxt, 0.0) + p
                model[s][a] = [
                    (p, nxt, self._reward(self.cell_of(nxt)), self._is_terminal(self.cell_of(nxt)))
                    for nxt, p in outcomes.items()
                ]
        return model

    # ---------------------------------------------------------------- gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """Start a new episode in the bottom-left cell, or in ``options["state"]`` when given."""
        super().reset(seed=seed)
        pos = self.start
        if options and options.get("state") is not None:
            state = int(options["state"])
            if not 0 <= state < self.observation_space.n:
                raise ValueError(f"options['state'] must be a cell index in [0, {self.observation_space.n}), got {state}")
            pos = self.cell_of(state)
            if pos == self.wall or self._is_terminal(pos):
                raise ValueError(f"options['state']={state} is the wall or a terminal cell; pick another start")
        self._pos = pos
        self._done = False
        self._last_action = None
        return self.cell_index(*self._pos), {}

    def step(self, action: np.int64 | int) -> tuple[int, float, bool, bool, dict[str, Any]]:
        """Move (noisily) in direction ``action``; see the class docstring for the dynamics."""
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an int in [0, 4) ({', '.join(self.action_names)}), got {action!r}")
        if self._done:
            raise RuntimeError("GridEnv.step() called after the episode terminated; call reset() first")
        a = int(action)
        u = self.np_random.random()
        side = self.slip / 2.0
        if u < 1.0 - self.slip:
            direction = a
        elif u < 1.0 - side:
            direction = (a + 1) % 4
        else:
            direction = (a + 3) % 4
        self._pos = self._moved(self._pos, direction)
        self._last_action = a
        reward = self._reward(self._pos)
        self._done = self._is_terminal(self._pos)
        return self.cell_index(*self._pos), reward, self._done, False, {}

    def render(self) -> str | None:
        """With ``render_mode="ansi"``: the board, top row first, after a line naming the last action.

        ``A`` agent, ``G`` goal, ``P`` pit, ``#`` wall, ``.`` empty; ``g`` or ``p`` when the agent
        stands on the goal or the pit.
        """
        if self.render_mode is None:
            gym.logger.warn(
                "You are calling render method without specifying any render mode. "
                'You can specify the render_mode at initialization, e.g. gym.make("rladapt/Grid-v0", render_mode="ansi")'
            )
            return None
        symbols = {self.goal: "G", self.pit: "P", self.wall: "#"}
        lines = []
        if self._last_action is not None:
            lines.append(f"({self.action_names[self._last_action]})")
        for row in reversed(range(self.height)):
            cells = []
            for col in range(self.width):
                char = symbols.get((col, row), ".")
                if (col, row) == self._pos:
                    char = "A" if char == "." else char.lower()  # lower-case: the agent is on G or P
                cells.append(char)
            lines.append(" ".join(cells))
        return "\n".join(lines) + "\n"
