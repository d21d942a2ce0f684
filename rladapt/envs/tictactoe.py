"""Tic-tac-toe against a built-in opponent, or for two players (``opponent=None``), with action
masks (sb3-contrib convention)."""

from __future__ import annotations

from typing import Any, Callable, Union

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = ["TicTacToeEnv", "random_opponent", "heuristic_opponent", "winner", "LINES"]

AGENT, OPPONENT, EMPTY = 1, -1, 0

LINES: tuple[tuple[int, int, int], ...] = (
    (0, 1, 2), (3, 4, 5), (6, 7, 8),  # rows
    (0, 3, 6), (1, 4, 7), (2, 5, 8),  # columns
    (0, 4, 8), (2, 4, 6),  # diagonals
)
"""The eight winning lines, as cell indices (``3 * row + column``, row 0 at the top)."""

Opponent = Callable[[np.ndarray, np.random.Generator], int]
"""An opponent policy: ``(board, rng) -> cell``. ``board`` is a copy of the (9,) int8 board with
+1 for the agent's X, -1 for the opponent's O, 0 for empty; it must return an empty cell."""


def winner(board: np.ndarray) -> int:
    """+1 if the agent (X) has three in a row, -1 if the opponent (O) has, else 0."""
    for a, b, c in LINES:
        total = int(board[a]) + int(board[b]) + int(board[c])
        if total == 3 * AGENT:
            return AGENT
        if total == 3 * OPPONENT:
            return OPPONENT
    return 0


def random_opponent(board: np.ndarray, rng: np.random.Generator) -> int:
    """Play a uniformly random empty cell."""
    return int(rng.choice(np.flatnonzero(board == EMPTY)))


def _completing_cells(board: np.ndarray, player: int) -> list[int]:
    """Empty cells that would give ``player`` three in a row."""
    cells = []
    for line in LINES:
        values = [int(board[i]) for i in line]
        if values.count(player) == 2 and values.count(EMPTY) == 1:
            cells.append(line[values.index(EMPTY)])
    return sorted(set(cells))


def heuristic_opponent(board: np.ndarray, rng: np.random.Generator) -> int:
    """Win if possible, else block the agent's immediate win, else play a random empty cell.

    Ties (two winning or two blocking cells) are broken at random with ``rng``.
    """
    for player in (OPPONENT, AGENT):  # first our own win, then the agent's threat
        cells = _completing_cells(board, player)
        if cells:
            return int(rng.choice(cells))
    return random_opponent(board, rng)


_OPPONENTS: dict[str, Opponent] = {"random": random_opponent, "heuristic": heuristic_opponent}


class TicTacToeEnv(gym.Env[np.ndarray, np.int64]):
    """Tic-tac-toe: the agent plays X and moves first, the env plays O.

    ## Action space

    ``Discrete(9)``: the cell to mark, ``3 * row + column`` with row 0 at the top (names in
    ``action_names``)::

        0 | 1 | 2
        3 | 4 | 5
        6 | 7 | 8

    ## Action masks

    ``env.unwrapped.action_masks()`` returns a bool array of shape (9,), ``True`` where the cell is
    empty (the sb3-contrib ``MaskablePPO`` convention). Through wrappers use
    ``env.get_wrapper_attr("action_masks")()``, for vector envs ``envs.call("action_masks")``. Once
    the game is over no move is legal, but the mask is then all ``True`` rather than all ``False``
    so that a masked sampler asked for the (ignored) action on the final observation still works.

    ## Observation space

    ``Box(-1, 1, (9,), float32)``: the board, +1 for X (the agent), -1 for O (the opponent), 0 empty.

    ## Rewards

    +1 win, -1 loss, 0 draw, 0 for a move that does not end the game. Marking an occupied cell ends
    the game with -1 and ``info["invalid_action"] = True`` (board unchanged).

    ## Info

    Every step: ``info["invalid_action"]`` (bool) and ``info["outcome"]``, one of ``"ongoing"``,
    ``"win"``, ``"loss"``, ``"draw"``, ``"invalid"``.

    ## Starting state

    The empty board; the agent moves first.

    ## Episode end

    Terminates on a win, a loss, a draw, or an invalid move; never truncates (at most 5 agent
    moves). Stepping a finished game raises ``RuntimeError``: call ``reset()``.

    ## Arguments

    * ``render_mode``: ``None`` or ``"ansi"`` (the board as text, empty cells show their index).
    * ``opponent``: ``"random"`` (a uniformly random empty cell), ``"heuristic"`` (win if it can,
      block the agent's immediate win, else random), or a callable ``(board, rng) -> cell``. The
      opponent draws from ``self.np_random``, so ``reset(seed=...)`` makes games reproducible.
      ``None``: a two-player game in rladapt's turn protocol (:mod:`rladapt.wrappers.multiplayer`):
      every ``step`` is one mark, X (seat 0) then O (seat 1); ``info["current_player"]`` is the
      seat to move, ``info["rewards"]`` both seats' rewards (+1/-1 for a win, -1 for the mover of
      an invalid move), the scalar reward the mover's, and the observation shows the board from
      the mover's side (+1 its own marks). ``AutoAdapt`` then gives the learner one seat and
      ``opponent=...`` plays the other (``"random"``, ``"self"``, an agent ...).

    ## Example

    >>> import gymnasium as gym
    >>> import rladapt.envs
    >>> env = gym.make("rladapt/TicTacToe-v0", opponent="heuristic")
    >>> obs, info = env.reset(seed=0)
    >>> bool(env.unwrapped.action_masks().all())
    True
    >>> obs, reward, terminated, truncated, info = env.step(4)   # take the centre
    >>> int((obs != 0).sum()), info["outcome"]                   # X and the opponent's O
    (2, 'ongoing')
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 1}

    action_names: tuple[str, ...] = (
        "top-left", "top", "top-right",
        "left", "centre", "right",
        "bottom-left", "bottom", "bottom-right",
    )

    def __init__(self, render_mode: str | None = None, opponent: Union[str, Opponent, None] = "random") -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode={render_mode!r} is not supported; use one of {self.metadata['render_modes']} or None"
            )
        if isinstance(opponent, str):
            if opponent not in _OPPONENTS:
                raise ValueError(f"opponent={opponent!r} is unknown; use one of {sorted(_OPPONENTS)} or a callable")
            self._opponent: Opponent = _OPPONENTS[opponent]
        elif callable(opponent):
            self._opponent = opponent
        elif opponent is None:
            self._opponent = None  # two players: both move through step
        else:
            raise TypeError(f"opponent must be a name, a callable (board, rng) -> cell or None (two players), got {type(opponent).__name__}")
        self.opponent = opponent
        self.render_mode = render_mode
        self.observation_space = spaces.Box(low=-1.0, high=1.0, shape=(9,), dtype=np.float32)
        self.action_space = spaces.Discrete(9)
        self._board = np.zeros(9, dtype=np.int8)
        self._done = False
        self._outcome = "ongoing"
        self._mover = AGENT  # whose mark the next step puts (two players: X, then O)
        self._rewards = np.zeros(2)

    @property
    def board(self) -> np.ndarray:
        """A copy of the board as (9,) int8: +1 X (agent), -1 O (opponent), 0 empty."""
        return self._board.copy()

    def action_masks(self) -> np.ndarray:
        """Legal moves as a (9,) bool array, ``True`` = empty cell; all ``True`` once the game is over."""
        if self._done:
            return np.ones(9, dtype=bool)
        return self._board == EMPTY

    def _obs(self) -> np.ndarray:
        if self._opponent is None:  # two players: the board from the mover's side
            return (self._board * self._mover).astype(np.float32)
        return self._board.astype(np.float32)

    def _info(self, invalid: bool = False) -> dict[str, Any]:
        info: dict[str, Any] = {"invalid_action": invalid, "outcome": self._outcome}
        if self._opponent is None:
            info.update(current_player=0 if self._mover == AGENT else 1, rewards=self._rewards.copy(), num_players=2)
        return info

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Clear the board; the agent moves first."""
        super().reset(seed=seed)
        self._board[:] = EMPTY
        self._done = False
        self._outcome = "ongoing"
        self._mover = AGENT
        self._rewards[:] = 0.0
        return self._obs(), self._info()

    def _finish(self, outcome: str, reward: float, invalid: bool = False) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self._done = True
        self._outcome = outcome
        return self._obs(), reward, True, False, self._info(invalid)

    def step(self, action: np.int64 | int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Mark cell ``action`` with X; unless that ends the game, the opponent answers with an O."""
        if not self.action_space.contains(action):
            raise ValueError(f"action must be a cell index in [0, 9), got {action!r}")
        if self._done:
            raise RuntimeError("TicTacToeEnv.step() called after the game ended; call reset() first")
        cell = int(action)
        if self._opponent is None:
            return self._two_player_step(cell)
        if self._board[cell] != EMPTY:
            return self._finish("invalid", -1.0, invalid=True)
        self._board[cell] = AGENT
        if winner(self._board) == AGENT:
            return self._finish("win", 1.0)
        if not (self._board == EMPTY).any():
            return self._finish("draw", 0.0)

        reply = int(self._opponent(self._board.copy(), self.np_random))
        if not (0 <= reply < 9 and self._board[reply] == EMPTY):
            raise ValueError(f"the opponent played cell {reply}, which is not an empty cell of the board {self._board.tolist()}")
        self._board[reply] = OPPONENT
        if winner(self._board) == OPPONENT:
            return self._finish("loss", -1.0)
        # X moves first, so the board has an odd number of empty cells after O: never full here.
        return self._obs(), 0.0, False, False, self._info()

    def _two_player_step(self, cell: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """One mark of the mover (two players); the outcome is X's (``"win"`` when X won)."""
        mover_seat = 0 if self._mover == AGENT else 1
        self._rewards[:] = 0.0
        if self._board[cell] != EMPTY:
            self._rewards[mover_seat] = -1.0
            self._done, self._outcome = True, "invalid"
            return self._obs(), -1.0, True, False, self._info(invalid=True)
        self._board[cell] = self._mover
        if winner(self._board) == self._mover:
            self._rewards[mover_seat], self._rewards[1 - mover_seat] = 1.0, -1.0
            self._done, self._outcome = True, "win" if self._mover == AGENT else "loss"
            return self._obs(), 1.0, True, False, self._info()
        if not (self._board == EMPTY).any():
            self._done, self._outcome = True, "draw"
            return self._obs(), 0.0, True, False, self._info()
        self._mover = -self._mover
        return self._obs(), 0.0, False, False, self._info()

    def render(self) -> str | None:
        """With ``render_mode="ansi"``: the board, X agent, O opponent, empty cells show their index."""
        if self.render_mode is None:
            gym.logger.warn(
                "You are calling render method without specifying any render mode. "
                'You can specify the render_mode at initialization, e.g. gym.make("rladapt/TicTacToe-v0", render_mode="ansi")'
            )
            return None
        marks = {AGENT: "X", OPPONENT: "O"}
        rows = []
        for r in range(3):
            cells = [marks.get(int(self._board[3 * r + c]), str(3 * r + c)) for c in range(3)]
            rows.append(" " + " | ".join(cells))
        text = "\n---+---+---\n".join(rows) + "\n"
        if self._outcome != "ongoing":
            text += f"game over: {self._outcome}\n"
        return text
